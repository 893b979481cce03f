"""`mlops local`: bad input is one line and exit 2, starting nothing. The whole flow, and a Ctrl-C
during training, are checked in test_local_e2e.py."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from cli_support import run_mlops

from training.networks import NETWORKS


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("gan",), f"unknown network 'gan' (known: {', '.join(NETWORKS)})"),
        (("--network", "rnn"), "mlops local takes the network as an argument now: mlops local rnn"),
        (("--param", "epochs=0"), "--param epochs: epochs must be at least 1, got '0'"),
        (("--param", "QualityThreshold"), "--param 'QualityThreshold': expected NAME=VALUE, e.g. epochs=3"),
        (("--limit", "0"), "--limit must be at least 1, got 0"),
        (("--port", "70000"), "port 70000 is not a TCP port (1-65535)"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_starts_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    code, _, err = run_mlops(monkeypatch, capsys, "local", *args, "--report-dir", str(tmp_path / "report"))
    assert code == 2
    assert err.strip() == f"error: {message}"
    assert not (tmp_path / "report").exists()


def test_a_busy_port_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, _, err = run_mlops(monkeypatch, capsys, "local", "--port", str(port), "--report-dir", str(tmp_path))
    assert code == 2
    assert f"port {port} on 127.0.0.1 is already in use" in err
    assert len(err.strip().splitlines()) == 1


def test_a_report_folder_it_did_not_write_is_left_alone(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    code, _, err = run_mlops(monkeypatch, capsys, "local", "--report-dir", str(tmp_path))
    assert code == 2
    assert f"report folder {tmp_path} exists and was not written by mlops local" in err
    assert (tmp_path / "notes.txt").read_text() == "mine"
