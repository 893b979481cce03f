"""`mlops local`: bad input is one line and exit 2; Ctrl-C leaves nothing running; a run succeeds."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from mlops.cli import main
from process_support import left_running

MLOPS = Path(sys.executable).parent / "mlops"


def _run_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["mlops", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    return exit_.value.code, capsys.readouterr().err


def test_unknown_network_is_a_usage_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    code, err = _run_main(monkeypatch, capsys, "local", "--network", "gan")
    assert code == 2
    assert err.strip() == "error: unknown network 'gan' (known: cnn, rnn, autoencoder, transfer)"


def test_a_busy_port_is_a_usage_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, err = _run_main(monkeypatch, capsys, "local", "--port", str(port))
    assert code == 2
    assert f"port {port} on 127.0.0.1 is already in use" in err
    assert len(err.strip().splitlines()) == 1


def _free_port() -> int:
    with socket.socket() as finder:
        finder.bind(("127.0.0.1", 0))
        return finder.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _start(port: int) -> subprocess.Popen[str]:
    return subprocess.Popen([str(MLOPS), "local", "--network", "rnn", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"})


@pytest.mark.integration
def test_ctrl_c_stops_everything_and_the_next_run_on_the_same_port_succeeds() -> None:
    port = _free_port()
    interrupted = _start(port)
    assert interrupted.stdout is not None
    for line in interrupted.stdout:
        if "✓ [1/3]" in line:  # moto is up; `cdk bootstrap` is starting
            break
    tree = psutil.Process(interrupted.pid).children(recursive=True)
    interrupted.send_signal(signal.SIGINT)
    _, err = interrupted.communicate(timeout=60)

    assert interrupted.returncode != 0, err
    assert left_running(tree) == [], "part of the process tree was left running"
    assert not _listening(port), "the moto server is still listening"

    second = _start(port)
    out, err = second.communicate(timeout=600)
    assert second.returncode == 0, err[-3000:]
    for phase in ("✓ [1/3] Start the local AWS", "✓ [2/3] Bootstrap CDK", "✓ [3/3] Deploy every stack"):
        assert phase in out
    assert "mlops-local-data-123456789012-us-east-1" in out
    assert "ExecutionRoleArn" in out and "ExportsOutput" not in out.split("Stack outputs")[1]
    assert not _listening(port)
