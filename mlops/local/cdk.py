"""Runs the project's own CDK CLI against a target AWS: the embedded moto server, or a real account.

    cli = CdkCli(target=aws, stage="local", output_dir=Path(".mlops/local/cdk.out"), echo=print)
    cli.bootstrap()
    outputs = cli.deploy()          # {"mlops-local-storage": {"DataBucketName": ...}, ...}
    cli.destroy()

It calls `node_modules/.bin/cdk` (what `npx cdk` resolves to in this repo) directly: when the
CLI is missing, `npx` would download one from the registry, an unpinned network call.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from botocore.exceptions import ClientError

from mlops.buckets import empty_bucket
from mlops.errors import RunFailed, UsageError

REPO_ROOT = Path(__file__).resolve().parents[2]
CDK_BIN = REPO_ROOT / "node_modules" / ".bin" / "cdk"
STDERR_TAIL_LINES = 25
_QUIET_CLI = {
    "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    "CDK_DISABLE_CLI_TELEMETRY": "true",
    "CDK_DISABLE_VERSION_CHECK": "true",
}


class AwsTarget(Protocol):
    """Where the CLI deploys: its environment variables, and boto3 clients for the same place."""

    @property
    def env(self) -> dict[str, str]: ...

    @property
    def environment(self) -> str: ...

    def client(self, service: str) -> Any: ...


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

    def bootstrap(self) -> CdkRun:
        return self.run("bootstrap", self.target.environment)

    def deploy(self, stacks: Sequence[str] = ()) -> dict[str, dict[str, str]]:
        """Deploys `stacks` (default: all) and returns their outputs by stack name."""
        # --method=direct: change-set deploys fail on update in moto, and only direct deploys
        # report outputs there. It is a plain CreateStack/UpdateStack in a real account.
        with tempfile.TemporaryDirectory(prefix="cdk-outputs-") as scratch:
            outputs_file = Path(scratch) / "outputs.json"
            self.run("deploy", *(stacks or ["--all"]), "--require-approval", "never", "--method=direct",
                     "--progress", "events", "--outputs-file", str(outputs_file))
            return json.loads(outputs_file.read_text()) if outputs_file.exists() else {}

    def destroy(self, stacks: Sequence[str] = ()) -> CdkRun:
        """Empties the buckets that the stacks delete (CloudFormation cannot delete a non-empty
        bucket; retained buckets are left alone), then destroys `stacks` (default: all)."""
        for stack_name, bucket in self._deletable_buckets(stacks or self.stack_names()):
            empty_bucket(self.target.client("s3"), bucket)
            self._say(f"emptied s3://{bucket} of {stack_name}")
        return self.run("destroy", *(stacks or ["--all"]), "--force")

    def stack_names(self) -> list[str]:
        """The stacks of the app, from the cloud assembly (synthesized first if there is none)."""
        if not (self.output_dir / "manifest.json").exists():
            self.run("synth", "--quiet")
        manifest = json.loads((self.output_dir / "manifest.json").read_text())
        return [artifact["properties"].get("stackName", artifact_id)
                for artifact_id, artifact in manifest["artifacts"].items()
                if artifact["type"] == "aws:cloudformation:stack"]

    def run(self, command: str, *args: str) -> CdkRun:
        if not CDK_BIN.exists():
            raise UsageError(f"the CDK CLI is not installed ({CDK_BIN} is missing): run ./dev.sh, "
                             "which runs `npm ci`")
        self.output_dir.mkdir(parents=True, exist_ok=True)
        context = [item for key, value in self.context.items() for item in ("-c", f"{key}={value}")]
        argv = [str(CDK_BIN), command, *args, "-c", f"stage={self.stage}", *context,
                "--output", str(self.output_dir)]
        return _run(argv, self._env(), self.echo, f"cdk {command}")

    def _env(self) -> dict[str, str]:
        # The target's AWS_* variables only: a stray AWS_PROFILE must not redirect a local deploy.
        env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
        env.update(self.target.env)
        env.update(_QUIET_CLI)
        # cdk.json runs `python3 app.py`: it must be this interpreter's venv, with aws-cdk-lib.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        return env

    def _deletable_buckets(self, stacks: Sequence[str]) -> list[tuple[str, str]]:
        """(stack, bucket) for each bucket that deleting the stack deletes, judged from the template
        CloudFormation holds (what it will act on), not from a possibly newer local synth."""
        cloudformation = self.target.client("cloudformation")
        found = []
        for stack in stacks:
            try:
                body = cloudformation.get_template(StackName=stack)["TemplateBody"]
                pages = list(cloudformation.get_paginator("list_stack_resources").paginate(StackName=stack))
            except ClientError:
                continue  # not deployed: nothing to empty
            resources = (json.loads(body) if isinstance(body, str) else body).get("Resources", {})
            deletable = {logical_id for logical_id, resource in resources.items()
                         if resource["Type"] == "AWS::S3::Bucket" and resource.get("DeletionPolicy") == "Delete"}
            found += sorted((stack, summary["PhysicalResourceId"])
                            for page in pages for summary in page["StackResourceSummaries"]
                            if summary["LogicalResourceId"] in deletable and summary.get("PhysicalResourceId"))
        return found

    def _say(self, line: str) -> None:
        if self.echo:
            self.echo(line)


def _run(argv: list[str], env: dict[str, str], echo: Callable[[str], None] | None, what: str) -> CdkRun:
    # A session of its own: on Ctrl-C or failure here the whole CLI tree (npx, node, python
    # app.py) is stopped by process group, and the terminal's Ctrl-C reaches only us.
    process = subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, bufsize=1, start_new_session=True)
    stdout: list[str] = []
    stderr: list[str] = []
    try:
        readers = [threading.Thread(target=_pump, args=(stream, lines, echo), daemon=True)
                   for stream, lines in ((process.stdout, stdout), (process.stderr, stderr))]
        for reader in readers:
            reader.start()
        returncode = process.wait()
        for reader in readers:
            reader.join()
    except BaseException:  # Ctrl-C (or anything) at any point once the CLI runs
        _stop(process)
        raise
    if returncode != 0:
        tail = "\n".join(line.rstrip() for line in stderr[-STDERR_TAIL_LINES:])
        raise RunFailed(f"`{what}` exited with {returncode}:\n{tail}")
    return CdkRun(stdout="".join(stdout), stderr="".join(stderr))


def _pump(stream: IO[str] | None, lines: list[str], echo: Callable[[str], None] | None) -> None:
    assert stream is not None
    for line in stream:
        lines.append(line)
        if echo:
            echo(line.rstrip("\n"))


def _stop(process: subprocess.Popen[str]) -> None:
    """SIGTERM to the CLI's process group, 10 s to finish, then SIGKILL to whatever is left of it."""
    _signal_group(process, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    _signal_group(process, signal.SIGKILL)
    process.wait()


def _signal_group(process: subprocess.Popen[str], sig: signal.Signals) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass
