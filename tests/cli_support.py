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
    code = exited.value.code  # as the interpreter exits: None is 0, a message 1
    return code if isinstance(code, int) else int(code is not None), captured.out, captured.err
