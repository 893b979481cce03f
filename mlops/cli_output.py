"""What the CLI's commands share in how they answer: `--json` on every listing, and a confirmation
before anything that changes what is approved or served.

    if as_json:
        print_json(rows)                          # the rows a table would show, as a JSON array
    confirm("approve mlops-dev-cnn version 3", yes)   # asks on a terminal; --yes skips it
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from mlops.errors import UsageError

JsonOption = Annotated[bool, typer.Option("--json", help="print the listing as JSON instead of a table")]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")]
NOT_CONFIRMED_EXIT = 1


def print_json(value: Any) -> None:
    """`value` as indented JSON on stdout; times as ISO 8601 text."""
    typer.echo(json.dumps(value, indent=2, default=lambda moment: moment.isoformat()))


def confirm(action: str, yes: bool) -> None:
    """Goes on if `yes`, or if the user confirms `action` on this terminal; without a terminal to
    ask on, a UsageError asking for --yes; declined, exit code 1 with nothing changed."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageError(f"{action}: no terminal to confirm it on; pass --yes to do it anyway")
    if not typer.confirm(f"{action}?", default=False):
        typer.echo("not confirmed: nothing changed", err=True)
        raise typer.Exit(NOT_CONFIRMED_EXIT)
