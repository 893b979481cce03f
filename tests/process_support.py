"""Whether processes are still running (allowing a signal a moment to land), which a process starts, and local ports."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import psutil


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def left_running(processes: Iterable[psutil.Process], timeout: float = 5.0) -> list[psutil.Process]:
    """The processes still running (zombies count as ended) once `timeout` seconds have passed."""
    processes = list(processes)
    deadline = time.monotonic() + timeout
    while True:
        alive = [process for process in processes if _running(process)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.1)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as finder:
        finder.bind(("127.0.0.1", 0))
        return finder.getsockname()[1]


def listening(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:`port`."""
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def watched_descendants(root: psutil.Process) -> Iterator[set[psutil.Process]]:
    """Every process `root` starts (at any depth) while the block runs."""
    seen: set[psutil.Process] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            try:
                seen.update(root.children(recursive=True))
            except psutil.NoSuchProcess:
                return
            done.wait(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield seen
    finally:
        done.set()
        watcher.join()
