"""Errors the CLI turns into a one-line message and an exit code instead of a traceback."""

from __future__ import annotations


class UsageError(Exception):
    """Bad input from the user (unknown network, bad parameter, missing resource): exit code 2."""


class RunFailed(Exception):
    """Something the user started failed (a pipeline step, a deploy): exit code 1, reason shown."""


EXPECTED = (UsageError, RunFailed)


class PhaseCrashed(Exception):
    """An exception nobody foresaw (a bug, not one of EXPECTED) inside a named phase of a long
    command; the original is its `__cause__`, so its traceback stays whole."""

    def __init__(self, phase: str, error: Exception) -> None:
        super().__init__(f'unexpected error in phase "{phase}": {describe(error)}')
        self.phase = phase


def describe(error: BaseException) -> str:
    """`TypeError: what it said`, on one line (the first of its message)."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
