"""Child processes the CLI starts and must never leave behind (the CDK CLI, training and
processing jobs): each in a session of its own, its output read line by line as it comes.

    child = start(["train"], env=env, cwd=job_dir, on_line=log.write)   # stderr into stdout
    exit_code = child.wait(timeout=3600)   # TimeoutExpired if still running; Ctrl-C stops it

A session of its own makes the child the leader of a process group: stopping it stops
everything it started (npx, node, python app.py; the toolkit and its entry point), and the
terminal's Ctrl-C reaches only this process, which then stops the group itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

STOP_GRACE_SECONDS = 10
ANSWER_PREFIX = "answer: "
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
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=grace)
        return self.kill()

    def kill(self) -> int:
        """SIGKILL to the child's whole group (as a reclaimed instance ends a job); returns the exit
        code once its output is read to the end."""
        self._signal(signal.SIGKILL)
        exit_code = self.process.wait()
        self._join_readers()
        return exit_code

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)

    def _join_readers(self) -> None:
        for reader in self.readers:
            reader.join()


def start(
    argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, on_line: LineSink, on_stderr_line: LineSink | None = None
) -> ChildProcess:
    """Starts `argv` in a session of its own; each line of its output (with its newline) goes to
    `on_line` as it arrives, or, with `on_stderr_line`, each line of stderr goes there instead."""
    process = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if on_stderr_line else subprocess.STDOUT,
        text=True,
        bufsize=1,
        start_new_session=True,
    )
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


def run_in_terminal(argv: Sequence[str], *, env: Mapping[str, str], cwd: Path) -> int:
    """Runs `argv` with this process's terminal as its input and output (a child that asks the user
    something), in a session of its own like every other child, and returns its exit code; on
    Ctrl-C (or any other exception) while it runs, its group is stopped first."""
    process = subprocess.Popen(list(argv), cwd=cwd, env=dict(env), start_new_session=True, text=True)
    return ChildProcess(process, []).wait()


def _pump(stream: IO[str] | None, sink: LineSink) -> None:
    assert stream is not None
    for line in stream:
        sink(line)


def print_answer(value: Any) -> None:
    """A `ModuleChild`'s side: its answer, one JSON line on stdout (its other lines are its log)."""
    print(ANSWER_PREFIX + json.dumps(value), flush=True)


class ModuleChild:
    """`python -m MODULE ARGS` started now, for work the CLI wants done beside its own, ending with
    `print_answer`. `answer()` waits for that value; any other line of its stdout goes to `on_log`
    as it comes, and its stderr is kept for the error raised if it fails (a bug: the children
    read local data). `stop()` ends it if its answer is never asked for."""

    def __init__(
        self, module: str, args: Sequence[str], *, doing: str, cwd: Path, on_log: LineSink | None = None
    ) -> None:
        self.doing = doing
        self._answer: list[str] = []
        self._errors: list[str] = []

        def take(line: str) -> None:
            if line.startswith(ANSWER_PREFIX):
                self._answer.append(line.removeprefix(ANSWER_PREFIX))
            elif on_log is not None:
                on_log(line.rstrip())

        # `-m` imports from the working directory first: `cwd` is the tree whose modules run.
        # Both children import TensorFlow, whose C++ start-up notices would read as their log.
        self._child = start(
            [sys.executable, "-m", module, *args],
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
            cwd=cwd,
            on_line=take,
            on_stderr_line=self._errors.append,
        )

    def answer(self) -> Any:
        """Its answer, once it ended; RuntimeError with its last line, its whole stderr in a note."""
        exit_code = self._child.wait()
        if exit_code != 0 or not self._answer:
            last = self._errors[-1].strip() if self._errors else "no output"
            error = RuntimeError(f"{self.doing} failed (exit code {exit_code}): {last}")
            error.add_note("the child's stderr:\n" + "".join(self._errors))
            raise error
        return json.loads(self._answer[-1])

    def poll(self) -> int | None:
        return self._child.poll()

    def stop(self) -> None:
        if self._child.poll() is None:
            self._child.stop()
