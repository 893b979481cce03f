"""`mlops up`, `mlops env`, `mlops down`: a local AWS that stays up until told to stop.

    mlops up cnn                # mlops local's phases, then everything stays up in the background
    eval "$(mlops env)"         # this shell's boto3, AWS CLI and mlops now talk to it
    mlops train cnn --wait      # the deployed pipeline, run here; the first model is its champion
    mlops down                  # everything stops

`up` checks its input, takes the lock that allows one environment per user of this machine
(`mlops.local.environment_state`), and starts the environment's process (`mlops.local.daemon`) in
a session of its own, which outlives this command. It shows that process's phases as `mlops local`
shows its own, and returns once the environment is up (or exits as `mlops local` would if a
phase fails, with everything stopped). Ctrl-C while it starts stops it all.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from mlops.cdk import REPO_ROOT
from mlops.commands import (
    NETWORK_HELP,
    IamOption,
    LimitOption,
    PortOption,
    RunParamOption,
    checked_run_options,
    known_network,
)
from mlops.errors import RunFailed, UsageError
from mlops.local.environment_state import (
    STARTING,
    UP,
    EnvironmentLock,
    EnvironmentState,
    require_environment,
    running_environment,
    write_state,
)
from mlops.local.pipeline_executor import StepOutcome
from mlops.local.progress import progress_view
from mlops.local.report import ReportFolder
from mlops.stages import LOCAL_STAGE, enabled_network, stage_config

DEFAULT_FOLDER = Path("mlops-local-env")
STOP_SECONDS = 120.0  # a running job gets its grace period, each endpoint its draining
EXIT_STOPPED = 130

app = typer.Typer()
console = Console()


@app.command()
def up(
    network: Annotated[str, typer.Argument(help=NETWORK_HELP)] = "cnn",
    port: PortOption = None,
    param: RunParamOption = None,
    limit: LimitOption = None,
    folder: Annotated[
        Path | None,
        typer.Option(help=f"the environment's folder (default: ./{DEFAULT_FOLDER})", show_default=False),
    ] = None,
    logs: Annotated[bool, typer.Option("--logs", help="also print what the CDK CLI and the jobs print")] = False,
    iam: IamOption = True,
) -> None:
    """A local AWS that stays up: mlops local's phases for NETWORK, then the moto server, the stacks,
    the registry and the endpoint stay up in the background until `mlops down`."""
    spec = known_network(network)
    config = stage_config(LOCAL_STAGE)
    enabled_network(config, spec.name)
    overrides = checked_run_options(config, spec.name, param, limit, port)
    lock = EnvironmentLock.take()
    try:
        report = ReportFolder.claim((folder or DEFAULT_FOLDER).resolve())
        report.logs_dir.mkdir(parents=True, exist_ok=True)
        log = report.logs_dir / "environment.log"
        events, events_end = os.pipe()
        request = {
            "network": spec.name,
            "port": port,
            "overrides": overrides,
            "limit": limit,
            "folder": str(report.path),
            "iam": iam,
            "events_fd": events_end,
        }
        with log.open("a") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "mlops.local.daemon", json.dumps(request, default=str)],
                pass_fds=(events_end, lock.fd),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # it outlives this command, and a terminal's Ctrl-C is ours
                cwd=REPO_ROOT,
            )
        os.close(events_end)
        started = datetime.now().astimezone().isoformat(timespec="seconds")
        write_state(EnvironmentState(process.pid, STARTING, spec.name, str(report.path), started))
    finally:
        lock.release()  # the environment's process holds it now (or nobody, if it did not start)
    console.print(f"[bold]mlops up[/] — network [bold]{spec.name}[/]: {spec.summary}", highlight=False)
    try:
        state = _follow_start(os.fdopen(events), process, logs, log)
    except KeyboardInterrupt:
        _stop(process.pid)
        process.wait()
        console.print("stopped: everything it started has stopped", highlight=False)
        raise typer.Exit(EXIT_STOPPED) from None
    console.print(
        f"the local AWS is up at {state.url} (pid {state.pid}) and stays up until `mlops down`\n"
        f"  folder {state.folder}: report.md, every job's folder and log, logs/environment.log\n"
        f'  point this shell at it: eval "$(mlops env)"; then e.g. mlops train {spec.name} --wait',
        highlight=False,
        soft_wrap=True,
    )


def _follow_start(events: Any, process: subprocess.Popen[bytes], logs: bool, log: Path) -> EnvironmentState:
    """Shows the environment's phases until it is up; raises as `mlops local` would if one fails."""
    with events, progress_view(console, show_logs=logs) as view:
        for line in events:
            event = json.loads(line)
            name, args = event["event"], event["args"]
            if name == "ready":
                return EnvironmentState(**args[0])
            if name == "failed":
                kind, message = args
                process.wait()
                if kind == "usage":
                    raise UsageError(message)
                if kind == "run":
                    raise RunFailed(message)
                console.print(message, style="red", highlight=False, soft_wrap=True)
                raise typer.Exit(1)
            if name == "step_ended":
                args = [StepOutcome(**args[0])]
            getattr(view, name)(*args)
    code = process.wait()
    raise RunFailed(f"the local AWS's process exited ({code}) before it was up; its log: {log}")


@app.command()
def down() -> None:
    """Stop the local AWS that `mlops up` started: its endpoints, jobs and moto server; its state goes too."""
    state = require_environment()
    _stop(state.pid)
    where = f" at {state.url}" if state.url else ""
    console.print(f"stopped the local AWS{where}; its folder {state.folder} stays", highlight=False, soft_wrap=True)


def _stop(pid: int) -> None:
    """SIGTERM to the environment's process, then its time to stop everything (it is gone when its
    lock is free); SIGKILL after that."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_SECONDS
    while time.monotonic() < deadline:
        if running_environment() is None:
            return
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
    console.print(f"the local AWS (pid {pid}) did not stop within {STOP_SECONDS:.0f} s: killed", highlight=False)


@app.command()
def env(
    as_json: Annotated[bool, typer.Option("--json", help="the variables as a JSON object")] = False,
) -> None:
    """Print the variables that point boto3, the AWS CLI and mlops at the local AWS (eval "$(mlops env)")."""
    state = require_environment()
    if state.status != UP:
        raise UsageError(f"{state.where()}: not ready yet (mlops up shows its progress)")
    if as_json:
        typer.echo(json.dumps(state.env, indent=2))
        return
    typer.echo(f'# the local AWS of mlops up at {state.url}; in a shell: eval "$(mlops env)"')
    for name, value in state.env.items():
        typer.echo(f"export {name}={shlex.quote(value)}")
    # A session token or profile of a real account must not come along with the local credentials.
    typer.echo("unset AWS_SESSION_TOKEN AWS_PROFILE")
