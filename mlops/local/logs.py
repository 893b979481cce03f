"""The log files of one `mlops local` run, in its report folder: everything the programs it starts
print, whole, as they print it, so that the terminal can show the run instead.

    logs/cdk.log        the CDK CLI: synth, bootstrap, both deploys
    logs/data.log       the dataset's preparation (a child process)
    logs/endpoint.log   the local endpoint's server
    pipeline/<execution id>/<step>/log.txt   each pipeline job's (written by `pipeline_jobs`)

    logs = RunLogs(report / "logs", stream=view.log_line)
    cli = CdkCli(..., echo=logs.writer(CDK))      # each line into logs/cdk.log, and to `stream`
    with logs.named_in_failures(CDK): cli.deploy()  # a RunFailed from it names logs/cdk.log
    logs.close()
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from mlops.errors import RunFailed

CDK = "cdk"
DATA = "data"
ENDPOINT = "endpoint"


class RunLogs:
    def __init__(self, folder: Path, stream: Callable[[str, str], None]) -> None:
        self.folder = folder
        self._stream = stream
        self._files: dict[str, IO[str]] = {}
        self._lock = threading.Lock()

    def path(self, name: str) -> Path:
        return self.folder / f"{name}.log"

    def open(self, name: str) -> IO[str]:
        """The log file `name`, open for appending (a child process may write it directly)."""
        with self._lock:
            if name not in self._files:
                self.folder.mkdir(parents=True, exist_ok=True)
                self._files[name] = self.path(name).open("a", buffering=1)
            return self._files[name]

    def writer(self, name: str) -> Callable[[str], None]:
        """A sink for lines (with or without their newline): each is appended to the log file
        `name` and handed to the stream, as `(name, line)`."""
        log = self.open(name)

        def write(line: str) -> None:
            line = line.rstrip("\n")
            with self._lock:
                log.write(line + "\n")
            self._stream(name, line)

        return write

    def section(self, name: str, title: str) -> None:
        """A heading in the log file `name`, before the output of the next program it holds."""
        log = self.open(name)
        with self._lock:
            log.write(f"\n===== {title}\n")

    @contextmanager
    def named_in_failures(self, name: str) -> Iterator[None]:
        """A RunFailed raised inside (a program that failed, quoting the end of its output) says
        where the whole output is."""
        try:
            yield
        except RunFailed as failure:
            raise RunFailed(f"{failure}\n(the whole output: {self.path(name)})") from None

    def close(self) -> None:
        with self._lock:
            for log in self._files.values():
                log.close()
            self._files.clear()
