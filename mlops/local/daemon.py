"""The process of a local AWS that stays up: `mlops up` starts it, `mlops down` ends it.

    python -m mlops.local.daemon SPEC_JSON     # started by `mlops up` in a session of its own

It runs `mlops local`'s phases (`mlops.local.run.LocalRun`), telling `mlops up` what happens as
one JSON line per event on the pipe `events_fd` (`mlops up` shows them with the same view
`mlops local` uses), and then, instead of stopping everything, writes its state (port, URL, folder:
`mlops.local.environment_state`), says `ready` and closes the pipe, and serves
(`mlops.local.environment`) until SIGTERM. Then it stops as `mlops local` stops: the endpoints,
the moto server and every job; the permissions report is written into its folder. Its own output
(what it runs, each execution and endpoint change) goes to `logs/environment.log` there.

If a phase fails, the pipe says how (`failed`: `usage` is exit code 2 for `mlops up`, `run` is 1
with the reason, `crash` is 1 with the log holding the traceback) and the process ends,
everything it started stopped.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from rich.console import Console

from mlops.errors import PhaseCrashed, RunFailed, UsageError
from mlops.failures import one_line, write_log
from mlops.local.environment import LocalEnvironment
from mlops.local.environment_state import UP, EnvironmentState, remove_state, write_state
from mlops.local.pipeline_executor import StepOutcome
from mlops.local.progress import PlainProgress
from mlops.local.report import ReportFolder
from mlops.local.run import LocalRun
from mlops.phases import run_phases
from mlops.stages import LOCAL_STAGE, stage_config
from training.networks import get_network

COMMAND = "mlops up"


class Stopped(BaseException):
    """SIGTERM arrived (`mlops down`, or `mlops up` interrupted): stop everything."""


class ForwardingView:
    """A progress view whose every call becomes a JSON line on `stream`, replayed by `mlops up`
    into its own view (`replay`). Calls come from several threads: one line at a time."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def __enter__(self) -> ForwardingView:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def send(self, event: str, *args: Any) -> None:
        line = json.dumps({"event": event, "args": args}, default=str)
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()

    def phase_started(self, number: int, total: int, name: str) -> None:
        self.send("phase_started", number, total, name)

    def phase_ended(self, number: int, total: int, name: str, seconds: float, succeeded: bool) -> None:
        self.send("phase_ended", number, total, name, seconds, succeeded)

    def note(self, text: str) -> None:
        self.send("note", text)

    def log_line(self, source: str, line: str) -> None:
        self.send("log_line", source, line)

    def step_started(self, step: str, step_type: str, detail: str, request: Mapping[str, Any]) -> None:
        self.send("step_started", step, step_type, detail, request)

    def step_log(self, step: str, line: str) -> None:
        self.send("step_log", step, line)

    def step_ended(self, outcome: StepOutcome) -> None:
        self.send("step_ended", asdict(outcome))


def _raise_stopped(*_: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: the clean-up that follows is not interrupted
    raise Stopped


def main(spec: dict[str, Any]) -> int:
    signal.signal(signal.SIGTERM, _raise_stopped)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is `mlops up`'s to handle
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout)
    events = open(spec["events_fd"], "w", buffering=1)  # noqa: SIM115  # closed once ready
    view = ForwardingView(events)
    network = get_network(spec["network"])
    folder = ReportFolder(Path(spec["folder"]))
    started = datetime.now().astimezone().isoformat(timespec="seconds")
    run = LocalRun(
        network,
        stage_config(LOCAL_STAGE),
        port=spec["port"],
        overrides=spec["overrides"],
        limit=spec["limit"],
        folder=folder,
        view=view,  # type: ignore[arg-type]  # forwards every call of the views' protocol
        enforce_iam=spec["iam"],
    )
    timings: dict[str, float] = {}
    try:
        with run:
            try:
                run_phases(view, run.phases, timings)
            except BaseException as error:
                run.report.outcome = "interrupted" if isinstance(error, Stopped) else "failed"
                run.report.failure = str(error) or type(error).__name__
                view.send("failed", *_failure(error, folder.path))
                return 1
            else:
                run.report.outcome = "succeeded"
            finally:
                run.report.take_phases([phase.name for phase in run.phases], timings)
                folder.write(run.report)
            environment = LocalEnvironment(run, PlainProgress(Console(file=sys.stdout), show_logs=False))
            state = EnvironmentState(os.getpid(), UP, network.name, str(folder.path), started, run.aws.port)
            write_state(state)
            view.send("ready", asdict(state))
            events.close()
            try:
                environment.serve()
            except Stopped:
                logging.info("mlops down: stopping")
    finally:
        remove_state()
    return 0


def _failure(error: BaseException, folder: Path) -> tuple[str, str]:
    """How `mlops up` reports the failure: (kind, message)."""
    if isinstance(error, Stopped):
        return "interrupted", "stopped before it was up"
    if isinstance(error, UsageError):
        return "usage", str(error)
    if isinstance(error, RunFailed):
        return "run", str(error)
    log = write_log(error, COMMAND, [folder, folder / "logs"])
    cause = error.__cause__ if isinstance(error, PhaseCrashed) and error.__cause__ else error
    return "crash", one_line(error, COMMAND, log) if log else f"{COMMAND}: {cause}"


if __name__ == "__main__":
    try:
        sys.exit(main(json.loads(sys.argv[1])))
    except Stopped:  # between the phases and serving: everything is stopped already
        remove_state()
        sys.exit(0)
