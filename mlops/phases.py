"""A long command as a sequence of named phases, each told to a view as it starts and ends, with its time.

run_phases(view, [Phase("Deploy all stacks", deploy), Phase("Train cnn", train)])
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from mlops.errors import EXPECTED, PhaseCrashed


@dataclass(frozen=True)
class Phase:
    name: str
    run: Callable[[], None]


class PhaseView(Protocol):
    """Where the phases are shown (`mlops.local.progress`)."""

    def phase_started(self, number: int, total: int, name: str) -> None: ...

    def phase_ended(self, number: int, total: int, name: str, seconds: float, succeeded: bool) -> None: ...


def run_phases(view: PhaseView, phases: Sequence[Phase], timings: dict[str, float] | None = None) -> dict[str, float]:
    """Runs the phases in order; returns seconds per phase. The first failure (or Ctrl-C) is
    marked on its phase and re-raised, and the later phases do not run. An unexpected exception
    (not one of `errors.EXPECTED`) is re-raised as a PhaseCrashed naming the phase.

    `timings`, if given, is the dict returned, filled as each phase ends, the failing one
    included (last): a caller keeps the times of a run that raised.
    """
    seconds: dict[str, float] = {} if timings is None else timings
    for number, phase in enumerate(phases, start=1):
        view.phase_started(number, len(phases), phase.name)
        started = time.perf_counter()
        try:
            phase.run()
        except BaseException as error:
            seconds[phase.name] = time.perf_counter() - started
            view.phase_ended(number, len(phases), phase.name, seconds[phase.name], succeeded=False)
            if isinstance(error, Exception) and not isinstance(error, (*EXPECTED, PhaseCrashed)):
                raise PhaseCrashed(phase.name, error) from error
            raise
        seconds[phase.name] = time.perf_counter() - started
        view.phase_ended(number, len(phases), phase.name, seconds[phase.name], succeeded=True)
    return seconds
