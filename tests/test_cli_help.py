"""The CLI's help as users see it: every command composed into `mlops`, and every network of the
registry offered wherever a command takes one (no list written by hand)."""

from __future__ import annotations

import re

import pytest
from cli_support import run_mlops

from training.networks import NETWORKS

COMMANDS = [
    "local",
    "serve",
    "invoke",
    "deploy",
    "cost",
    "deploy-role",
    "train",
    "runs",
    "models",
    "approve",
    "reject",
    "tune",
    "trials",
    "monitor",
    "data",
]
TAKE_A_NETWORK = [
    ("local",),
    ("serve",),
    ("invoke",),
    ("deploy",),
    ("train",),
    ("runs",),
    ("models",),
    ("tune",),
    ("trials",),
    ("approve",),
    ("reject",),
    ("monitor",),
    ("data", "prepare"),
]


def test_every_command_is_listed_in_order(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run_mlops(monkeypatch, capsys, "--help")
    assert code == 0
    listed = [match[1] for match in re.finditer(r"^│ ([a-z]\S*)  ", out, flags=re.MULTILINE)]
    assert listed == COMMANDS
    assert "--debug" in out and "MLOPS_DEBUG" in out


@pytest.mark.parametrize("command", TAKE_A_NETWORK, ids=" ".join)
def test_each_network_of_the_registry_is_offered(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, command: tuple[str, ...]
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run_mlops(monkeypatch, capsys, *command, "--help")
    assert code == 0
    assert f"network type: {', '.join(NETWORKS)}" in out
