"""Where the local AWS of `mlops up` is, and that there is one at most per user of this machine.

The environment's process holds an exclusive `flock` on `local-aws.lock` for as long as it lives
(`mlops up` takes it first and hands it to that process), and writes `local-aws.json` beside it:
its pid, port, URL, folder and status. A lock dies with its process (a crash, `kill -9`, a reboot),
so "is one up?" is answered by trying the lock, never by a pid that may have been reused.

    lock = EnvironmentLock.take()          # UsageError naming the running one if it is taken
    write_state(EnvironmentState(...))     # what `mlops env`, `mlops down` and `mlops logs` read
    running_environment()                  # the state while its process holds the lock, else None

The folder is `$XDG_STATE_HOME/mlops` (`~/.local/state/mlops`), as for the CLI's failure logs.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from mlops.errors import UsageError
from mlops.local.moto import LocalAws

STATE_FILE = "local-aws.json"
LOCK_FILE = "local-aws.lock"
STARTING, UP = "starting", "up"


def state_dir() -> Path:
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "mlops"


@dataclass(frozen=True)
class EnvironmentState:
    pid: int
    """The environment's process (`python -m mlops.local.daemon`)."""
    status: str
    """STARTING while `mlops up` runs its phases, UP once they are done."""
    network: str
    folder: str
    """Its report folder: the first run's report, every job's folder and log, the daemon's log."""
    started: str
    port: int | None = None

    @property
    def url(self) -> str | None:
        return LocalAws(self.port).endpoint_url if self.port else None

    @property
    def env(self) -> dict[str, str]:
        """The variables that point boto3, the AWS CLI, `mlops` and the CDK CLI (`mlops deploy`) at it."""
        return LocalAws(self.port).env if self.port else {}

    def where(self) -> str:
        """One phrase saying where it is, for messages."""
        at = f"at {self.url}" if self.url else "(starting: no port yet)"
        state = "starting" if self.status == STARTING else "up"
        return f"a local AWS is {state} {at}, pid {self.pid}, since {self.started}, folder {self.folder}"


class EnvironmentLock:
    """The exclusive lock on `local-aws.lock`, held through an open file descriptor."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    @classmethod
    def take(cls) -> EnvironmentLock:
        """The lock, or a UsageError saying where the environment holding it is."""
        folder = state_dir()
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            state = read_state()
            where = state.where() if state else "a local AWS is starting"
            raise UsageError(f"{where}: one per user of this machine (mlops down stops it)") from None
        (folder / STATE_FILE).unlink(missing_ok=True)  # a crashed one's, if any
        return cls(fd)

    def release(self) -> None:
        os.close(self.fd)


def write_state(state: EnvironmentState) -> None:
    path = state_dir() / STATE_FILE
    scratch = path.with_suffix(".tmp")
    scratch.write_text(json.dumps(asdict(state), indent=2) + "\n")
    scratch.replace(path)  # readers never see half a file


def remove_state() -> None:
    (state_dir() / STATE_FILE).unlink(missing_ok=True)


def read_state() -> EnvironmentState | None:
    try:
        return EnvironmentState(**json.loads((state_dir() / STATE_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def running_environment() -> EnvironmentState | None:
    """The environment whose process holds the lock, or None when none does."""
    path = state_dir() / LOCK_FILE
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return read_state() or EnvironmentState(0, STARTING, "", "", "")
    finally:
        os.close(fd)  # closing it also releases a lock just taken
    return None


def require_environment() -> EnvironmentState:
    """The running environment, or a UsageError saying none is up."""
    state = running_environment()
    if state is None:
        raise UsageError("no local AWS is up: mlops up starts one")
    return state
