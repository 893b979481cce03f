"""Errors the CLI turns into a one-line message and an exit code instead of a traceback."""


class UsageError(Exception):
    """Bad input from the user (unknown network, bad parameter, missing resource): exit code 2."""


class RunFailed(Exception):
    """Something the user started failed (a pipeline step, a deploy): exit code 1, reason shown."""
