"""Child processes the CLI starts and must never leave behind (the CDK CLI, training and
processing jobs): each in a session of its own, its output read line by line as it comes.

    child = start(["train"], env=env, cwd=job_dir, on_line=log.write)   # stderr into stdout
    exit_code = child.wait(timeout=3600)   # TimeoutExpired if still running; Ctrl-C stops it

A session of its own makes the child the leader of a process group: stopping it stops
everything it started (npx, node, python app.py; the toolkit and its entry point), and the
terminal's Ctrl-C reaches only this process, which then stops the group itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

STOP_GRACE_SECONDS = 10
LineSink = Callable[[str], None]


@dataclass
class ChildProcess:
    process: subprocess.Popen[str]
    readers: list[threading.Thread]

    @property
    def pid(self) -> int:
        return self.process.pid

    def poll(self) -> int | None:
        return self.process.poll()

    def wait(self, timeout: float | None = None) -> int:
        """The exit code, once the child ended and its output is read to the end. After `timeout`
        seconds, `subprocess.TimeoutExpired` with the child still running; on Ctrl-C (or any
        other exception) while waiting, the child's group is stopped before it propagates."""
        try:
            exit_code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise
        except BaseException:
            self.stop()
            raise
        self._join_readers()
        return exit_code

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> int:
        """SIGTERM to the child's group, `grace` seconds to finish, then SIGKILL to whatever is left;
        returns the exit code."""
        self._signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        return self.kill()

    def kill(self) -> int:
        """SIGKILL to the child's whole group (as a reclaimed instance ends a job); returns the exit
        code once its output is read to the end."""
        self._signal(signal.SIGKILL)
        exit_code = self.process.wait()
        self._join_readers()
        return exit_code

    def _signal(self, sig: signal.Signals) -> None:
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass

    def _join_readers(self) -> None:
        for reader in self.readers:
            reader.join()


def start(argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, on_line: LineSink,
          on_stderr_line: LineSink | None = None) -> ChildProcess:
    """Starts `argv` in a session of its own; each line of its output (with its newline) goes to
    `on_line` as it arrives, or, with `on_stderr_line`, each line of stderr goes there instead."""
    process = subprocess.Popen(list(argv), cwd=cwd, env=dict(env), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE if on_stderr_line else subprocess.STDOUT,
                               text=True, bufsize=1, start_new_session=True)
    child = ChildProcess(process, [])
    try:  # a Ctrl-C while the readers start must not leave the child behind
        streams = [(process.stdout, on_line)] + ([(process.stderr, on_stderr_line)] if on_stderr_line else [])
        for stream, sink in streams:
            reader = threading.Thread(target=_pump, args=(stream, sink), daemon=True)
            reader.start()
            child.readers.append(reader)
    except BaseException:
        child.kill()
        raise
    return child


def _pump(stream: IO[str] | None, sink: LineSink) -> None:
    assert stream is not None
    for line in stream:
        sink(line)
