"""A network's dataset prepared in a child process that starts with the run's CDK phases.

    preparation = EarlyPreparation("cnn", Path("/tmp/data/cnn"), limit=None, echo=print)
    ...                                    # synth, bootstrap, deploy meanwhile
    channels = preparation.channels()      # {"train": Path, "validation": Path, "test": Path}
    preparation.stop()                     # on any exit: ends the child if it still runs

Converting and writing a dataset's channels the first time, with TensorFlow's import that
writing records needs, takes 8-10 s on 2 cores; the CDK CLI's synth keeps about one core busy
for as long. The child runs at low priority, so the CDK phases keep the cores they use, and
whatever it logs (e.g. "pretraining ... (cached afterwards)") goes to `echo` as it comes. Its channels
are cached (mlops/datasets/cache.py): a later run only copies them.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from mlops import processes
from mlops.cdk import REPO_ROOT

EXIT_ON_SIGTERM = 128 + signal.SIGTERM


class EarlyPreparation:
    """`mlops.datasets.prepare(network, folder, limit=limit)` in a child process; `stop()` ends it
    if its channels are never asked for (a failure or Ctrl-C before the data phase)."""

    def __init__(self, network: str, folder: Path, *, limit: int | None, echo: Callable[[str], None]) -> None:
        self._child = processes.ModuleChild(
            __name__,
            [network, str(folder), str(limit or 0)],
            doing=f"preparing the {network} dataset",
            cwd=REPO_ROOT,
            on_log=echo,
        )

    def channels(self) -> dict[str, Path]:
        """The prepared channel folders, once the child is done."""
        return {name: Path(folder) for name, folder in self._child.answer().items()}

    def stop(self) -> None:
        self._child.stop()


def _prepare(network: str, folder: str, limit: str) -> None:
    """The child's side: the preparers' log on stdout, then the channel folders as its answer."""
    from mlops.datasets import prepare

    os.nice(10)
    # Stopped by SIGTERM, it unwinds (SystemExit) so that the cache removes its scratch folder.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(EXIT_ON_SIGTERM))
    log = logging.getLogger("mlops.datasets")
    log.addHandler(logging.StreamHandler(sys.stdout))
    log.setLevel(logging.INFO)
    channels = prepare(network, Path(folder), limit=int(limit) or None)
    processes.print_answer({name: str(path) for name, path in channels.items()})


if __name__ == "__main__":
    _prepare(*sys.argv[1:])
