"""Running the `mlops` CLI in-process, as its console script would."""

from __future__ import annotations

import sys

import pytest

from mlops.cli import main


def run_mlops(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """`mlops ARGS...`: its exit code, stdout and stderr."""
    monkeypatch.setattr(sys, "argv", ["mlops", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    captured = capsys.readouterr()
    return exited.value.code or 0, captured.out, captured.err
