"""The CLI's help as users see it: every command composed into `mlops` is listed and answers
`--help`, and every network of the registry is offered wherever a command takes one. The commands
are read from the app itself, so a new one is checked without a list written by hand."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import typer.main
from cli_support import run_mlops

from mlops.cli import app
from training.networks import NETWORKS


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(words after `mlops`, command) for every runnable command, nested groups included. Typer's
    own copy of click's Command has no public name, hence Any."""
    subcommands = getattr(command, "commands", {})
    for name, subcommand in subcommands.items():
        yield from _commands(subcommand, (*path, name))
    if not subcommands:
        yield path, command


COMMANDS = dict(_commands(typer.main.get_command(app)))


def test_the_top_level_help_lists_every_command_and_the_debug_switch(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run_mlops(monkeypatch, capsys, "--help")
    assert code == 0
    listed = {match[1] for match in re.finditer(r"^│ ([a-z]\S*)  ", out, flags=re.MULTILINE)}
    assert listed == {path[0] for path in COMMANDS}
    assert "--debug" in out and "MLOPS_DEBUG" in out


@pytest.mark.parametrize("command", list(COMMANDS), ids=" ".join)
def test_every_command_answers_help(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, command: tuple[str, ...]
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    code, out, err = run_mlops(monkeypatch, capsys, *command, "--help")
    assert (code, err) == (0, "")
    assert f"Usage: mlops {' '.join(command)} " in out
    takes_a_network = any(parameter.name == "network" for parameter in COMMANDS[command].params)
    assert (f"network type: {', '.join(NETWORKS)}" in out) == takes_a_network
