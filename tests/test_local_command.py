"""`mlops local`: bad input is one line and exit 2, starting nothing; Ctrl-C during training leaves
nothing running, and the next run succeeds. The whole flow is checked in test_local_e2e.py."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from cli_support import run_mlops
from process_support import free_port, left_running, listening
from training.networks import NETWORKS

MLOPS = Path(sys.executable).parent / "mlops"


@pytest.mark.parametrize(("args", "message"), [
    (("--network", "gan"), f"unknown network 'gan' (known: {', '.join(NETWORKS)})"),
    (("--param", "epochs=0"), "--param epochs: epochs must be at least 1, got '0'"),
    (("--param", "QualityThreshold"), "--param 'QualityThreshold': expected NAME=VALUE, e.g. epochs=3"),
    (("--limit", "0"), "--limit must be at least 1, got 0"),
    (("--port", "70000"), "port 70000 is not a TCP port (1-65535)"),
])
def test_bad_input_is_one_line_exit_2_and_starts_nothing(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
                                                         tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    code, _, err = run_mlops(monkeypatch, capsys, "local", *args, "--report-dir", str(tmp_path / "report"))
    assert code == 2
    assert err.strip() == f"error: {message}"
    assert not (tmp_path / "report").exists()


def test_a_busy_port_is_a_usage_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
                                      tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, _, err = run_mlops(monkeypatch, capsys, "local", "--port", str(port), "--report-dir", str(tmp_path))
    assert code == 2
    assert f"port {port} on 127.0.0.1 is already in use" in err
    assert len(err.strip().splitlines()) == 1


def test_a_report_folder_it_did_not_write_is_left_alone(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    code, _, err = run_mlops(monkeypatch, capsys, "local", "--report-dir", str(tmp_path))
    assert code == 2
    assert f"report folder {tmp_path} exists and was not written by mlops local" in err
    assert (tmp_path / "notes.txt").read_text() == "mine"




def _start(port: int, report_dir: Path) -> subprocess.Popen[str]:
    # A quick run: a small slice, 2 epochs, and a gate any model passes, so it gets to the end.
    return subprocess.Popen([str(MLOPS), "local", "--network", "cnn", "--port", str(port), "--report-dir",
                             str(report_dir), "--limit", "200", "--param", "epochs=2", "--param", "QualityThreshold=0",
                             "--no-logs"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"})


def _training_toolkit(process: psutil.Process, timeout: float = 120) -> psutil.Process:
    """SageMaker's `train` launcher among the process's descendants, once it runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in process.children(recursive=True):
            try:
                # `python .venv/bin/train`: the console script, run by the venv's interpreter.
                if any(Path(argument).name == "train" for argument in child.cmdline()[:2]):
                    return child
            except psutil.NoSuchProcess:
                continue
        time.sleep(0.2)
    raise AssertionError("the training job never started")


@pytest.mark.integration
def test_ctrl_c_during_training_stops_everything_and_the_next_run_succeeds(tmp_path: Path) -> None:
    port, report = free_port(), tmp_path / "report"
    interrupted = _start(port, report)
    assert interrupted.stdout is not None
    for line in interrupted.stdout:
        if "▶ Train (Training)" in line:
            break
    _training_toolkit(psutil.Process(interrupted.pid))
    tree = psutil.Process(interrupted.pid).children(recursive=True)
    interrupted.send_signal(signal.SIGINT)
    _, err = interrupted.communicate(timeout=60)

    assert interrupted.returncode == 130, err
    assert "Traceback" not in err
    assert left_running(tree) == [], "part of the process tree was left running"
    assert not listening(port), "the moto server is still listening"
    phases = json.loads((report / "phases.json").read_text())
    assert phases["outcome"] == "interrupted"
    assert phases["phases"][-1] == {**phases["phases"][-1], "phase": "Run the cnn training pipeline",
                                    "status": "interrupted"}
    assert phases["steps"][-1] == {**phases["steps"][-1], "step": "Train", "status": "Stopped"}

    # Same port, same report folder, no clean-up in between.
    second = _start(port, report)
    out, err = second.communicate(timeout=600)
    assert second.returncode == 0, err[-3000:]
    assert "✓ [9/9] Invoke it with held-out test samples" in out
    assert "mlops-local-data-123456789012-us-east-1" in out
    assert "ExecutionRoleArn" in out and "ExportsOutput" not in out.split("Stack outputs")[1]
    assert json.loads((report / "phases.json").read_text())["outcome"] == "succeeded"
    assert not listening(port)
