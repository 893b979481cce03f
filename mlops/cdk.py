"""Runs the project's own CDK CLI against a target AWS: the embedded moto server, or a real account.

    cli = CdkCli(target=aws, stage="local", output_dir=Path(".mlops/local/cdk.out"), echo=print)
    cli.bootstrap()
    outputs = cli.deploy()          # {"mlops-local-storage": {"DataBucketName": ...}, ...}
    cli.destroy()

Every command of a `CdkCli` synthesizes the app (`python3 app.py`, several seconds) unless it
was made by `synth()` or `synth_and_bootstrap()`: those synthesize once, and the CLI they
return deploys that cloud assembly as it is (`--app <assembly>`), the same templates.

How it deploys depends on the target. In AWS: CloudFormation change sets (the CLI's default
method) and `--require-approval broadening` unless `require_approval` says otherwise, with the CLI
attached to this terminal so that it can show an IAM or security group broadening and ask; without
a terminal the CLI refuses such a change itself. On moto (`target.is_moto`): `--method=direct`,
since change-set deploys fail on update there and only direct deploys report outputs, and no
approval unless asked, since nothing real is at stake.

It calls `node_modules/.bin/cdk` (what `npx cdk` resolves to in this repo) directly: when the
CLI is missing, `npx` would download one from the registry, an unpinned network call.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops import processes
from mlops.aws import AwsTarget
from mlops.buckets import empty_bucket
from mlops.errors import RunFailed, UsageError
from mlops.teardown import deployed, plan

REPO_ROOT = Path(__file__).resolve().parents[1]
CDK_BIN = REPO_ROOT / "node_modules" / ".bin" / "cdk"
STDERR_TAIL_LINES = 25
# Independent stacks (the monitoring stack, the storage stack) deploy at the same time; the CLI
# still waits for every stack a stack depends on.
DEPLOY_CONCURRENCY = 4
APPROVAL_LEVELS = ("never", "any-change", "broadening")
_QUIET_CLI = {
    "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    "CDK_DISABLE_CLI_TELEMETRY": "true",
    "CDK_DISABLE_VERSION_CHECK": "true",
    # The AWS SDK for JavaScript inside the CLI warns on every call under Node 20 that its releases
    # after January 2027 need Node 22; the README recommends 22 already, and the pinned CLI works on 20.
    "AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED": "true",
}


@dataclass(frozen=True)
class CdkRun:
    stdout: str
    stderr: str


@dataclass
class CdkCli:
    """One stage of the app, one cloud assembly folder, one target.

    `echo` receives every line the CLI prints, as it prints it (the `mlops` commands pass the
    console); without it the output is only captured, and on failure the tail of stderr
    becomes the `RunFailed` message.
    """

    target: AwsTarget
    stage: str
    output_dir: Path
    context: Mapping[str, str] = field(default_factory=dict)
    echo: Callable[[str], None] | None = None
    assembly: Path | None = None
    """A cloud assembly synthesized before: commands deploy it as it is, with no synth of their own."""
    require_approval: str | None = None
    """The CLI's --require-approval for deploys (APPROVAL_LEVELS); None: broadening in AWS, never on moto."""

    def synth(self) -> CdkCli:
        """Synthesizes the app once; returns a CLI on that assembly."""
        self.run("synth", "--quiet")
        return dataclasses.replace(self, assembly=self.output_dir)

    def bootstrap(self) -> CdkRun:
        """`cdk bootstrap` of the target's environment. In a folder with cdk.json the CLI
        synthesizes the app first (even when the environment is named, to look for more); in a
        folder without one it takes the environment as given, so it needs no app and can run
        while the app synthesizes."""
        with tempfile.TemporaryDirectory(prefix="cdk-bootstrap-") as folder:
            return _run(*self._bootstrap_call(), cwd=Path(folder))

    def synth_and_bootstrap(self) -> CdkCli:
        """`synth()` and `bootstrap()` at the same time; if either fails (or on Ctrl-C) both stop."""
        with tempfile.TemporaryDirectory(prefix="cdk-bootstrap-") as folder:
            runs = [_RunningCli(*self._call("synth", "--quiet", *self._app_options()))]
            try:
                runs.append(_RunningCli(*self._bootstrap_call(), cwd=Path(folder)))
                for run in runs:
                    run.wait()
            except BaseException:
                for run in runs:
                    run.stop()
                raise
        return dataclasses.replace(self, assembly=self.output_dir)

    def deploy(self, stacks: Sequence[str] = (), *, extra: Sequence[str] = ()) -> dict[str, dict[str, str]]:
        """Deploys `stacks` (default: all) with the target's way of deploying (see above) and the
        CLI options in `extra`; returns their outputs by stack name."""
        approval = self.require_approval or ("never" if self.target.is_moto else "broadening")
        method = ["--method=direct"] if self.target.is_moto else []
        with tempfile.TemporaryDirectory(prefix="cdk-outputs-") as scratch:
            outputs_file = Path(scratch) / "outputs.json"
            call = self._call(
                "deploy",
                *(stacks or ["--all"]),
                "--require-approval",
                approval,
                *method,
                # The CLI asks one stack at a time: it refuses to prompt while deploying several at once.
                "--concurrency",
                str(DEPLOY_CONCURRENCY if approval == "never" else 1),
                "--progress",
                "events",
                "--outputs-file",
                str(outputs_file),
                *extra,
                *self._app_options(),
            )
            _run(*call, attached=approval != "never")
            return json.loads(outputs_file.read_text()) if outputs_file.exists() else {}

    def destroy(self, stacks: Sequence[str] = ()) -> CdkRun:
        """Empties the buckets that the stacks delete (CloudFormation cannot delete a non-empty
        bucket; retained buckets are left alone), then destroys `stacks` (default: all)."""
        cloudformation = self.target.client("cloudformation")
        # Judged from the templates CloudFormation holds (what it will act on), not from a possibly newer synth.
        for bucket in plan(cloudformation, deployed(cloudformation, stacks or self.stack_names())).buckets:
            empty_bucket(self.target.client("s3"), bucket)
            self._say(f"emptied s3://{bucket}")
        return self.run("destroy", *(stacks or ["--all"]), "--force")

    def stack_names(self) -> list[str]:
        """The stacks of the app, from the cloud assembly (synthesized first if there is none)."""
        return list(self._stack_artifacts())

    def template(self, stack: str) -> dict[str, Any] | None:
        """The template of `stack` in the cloud assembly (synthesized first if there is none), or None."""
        artifact = self._stack_artifacts().get(stack)
        if artifact is None:
            return None
        return json.loads((self._assembly_dir / artifact["properties"]["templateFile"]).read_text())

    @property
    def _assembly_dir(self) -> Path:
        return self.assembly or self.output_dir

    def _stack_artifacts(self) -> dict[str, dict[str, Any]]:
        if not (self._assembly_dir / "manifest.json").exists():
            self.run("synth", "--quiet")
        manifest = json.loads((self._assembly_dir / "manifest.json").read_text())
        return {
            artifact["properties"].get("stackName", artifact_id): artifact
            for artifact_id, artifact in manifest["artifacts"].items()
            if artifact["type"] == "aws:cloudformation:stack"
        }

    def run(self, command: str, *args: str) -> CdkRun:
        return _run(*self._call(command, *args, *self._app_options()))

    def _app_options(self) -> list[str]:
        if self.assembly is not None:
            return ["--app", str(self.assembly)]
        self.output_dir.mkdir(parents=True, exist_ok=True)
        context = [item for key, value in self.context.items() for item in ("-c", f"{key}={value}")]
        return ["-c", f"stage={self.stage}", *context, "--output", str(self.output_dir)]

    def _call(self, command: str, *args: str) -> tuple[list[str], dict[str, str], Callable[[str], None] | None, str]:
        """argv, environment, echo and name of one CLI command."""
        if not CDK_BIN.exists():
            raise UsageError(f"the CDK CLI is not installed ({CDK_BIN} is missing): run ./dev.sh, which runs `npm ci`")
        return [str(CDK_BIN), command, *args], self._env(), self.echo, f"cdk {command}"

    def _bootstrap_call(self) -> tuple[list[str], dict[str, str], Callable[[str], None] | None, str]:
        # --no-notices: it runs where cdk.json, which turns them off, is not read.
        return self._call("bootstrap", self.target.environment, "--no-notices")

    def _env(self) -> dict[str, str]:
        # The target's AWS_* variables only: a stray AWS_PROFILE must not redirect a local deploy.
        env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
        env.update(self.target.env)
        env.update(_QUIET_CLI)
        # cdk.json runs `python3 app.py`: it must be this interpreter's venv, with aws-cdk-lib.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        return env

    def _say(self, line: str) -> None:
        if self.echo:
            self.echo(line)


class _RunningCli:
    """One CLI process: its output captured (and echoed as it comes); a failure is a RunFailed
    ending with the tail of its stderr."""

    def __init__(
        self, argv: list[str], env: dict[str, str], echo: Callable[[str], None] | None, what: str, cwd: Path = REPO_ROOT
    ) -> None:
        self.what = what
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.child = processes.start(
            argv, env=env, cwd=cwd, on_line=_capture(self.stdout, echo), on_stderr_line=_capture(self.stderr, echo)
        )

    def wait(self) -> CdkRun:
        returncode = self.child.wait()
        if returncode != 0:
            tail = "\n".join(line.rstrip() for line in self.stderr[-STDERR_TAIL_LINES:])
            raise RunFailed(f"`{self.what}` exited with {returncode}:\n{tail}")
        return CdkRun(stdout="".join(self.stdout), stderr="".join(self.stderr))

    def stop(self) -> None:
        self.child.stop()


def _capture(lines: list[str], echo: Callable[[str], None] | None) -> Callable[[str], None]:
    def take(line: str) -> None:
        lines.append(line)
        if echo:
            echo(line.rstrip("\n"))

    return take


def _run(
    argv: list[str],
    env: dict[str, str],
    echo: Callable[[str], None] | None,
    what: str,
    cwd: Path = REPO_ROOT,
    *,
    attached: bool = False,
) -> CdkRun:
    """Runs one CLI command to its end. `attached`: on this terminal (its output shown as it comes,
    its questions answered there), for a deploy that may ask for approval."""
    if attached:
        exit_code = processes.run_in_terminal(argv, env=env, cwd=cwd)
        if exit_code != 0:
            raise RunFailed(f"`{what}` exited with {exit_code} (its output is above)")
        return CdkRun(stdout="", stderr="")
    running: _RunningCli | None = None
    try:  # also a Ctrl-C that lands after the CLI started and before its wait began
        running = _RunningCli(argv, env, echo, what, cwd)
        return running.wait()
    except BaseException:
        if running is not None:
            running.stop()
        raise
