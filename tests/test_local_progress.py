"""What `mlops local` shows while it runs (mlops.local.progress): plain lines off a terminal, live
lines on one (rendered here on a fake terminal and read back as its screen), and a failing program
named with the log file that holds what it printed."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from cli_support import run_mlops
from process_support import free_port
from rich.console import Console
from terminal_support import screen

from mlops.local.pipeline_executor import StepOutcome
from mlops.local.progress import LiveProgress, PlainProgress, progress_view

TRAIN_REQUEST = {"HyperParameters": {"epochs": "3", "batch_size": "128"}}
NOISE = "2026-12-07 02:42:53,721 sagemaker-training-toolkit INFO     Failed to parse hyperparameter"
EPOCH_1 = "[metrics] epoch=1 train_loss=0.5 val_accuracy=0.8"
EPOCH_2 = "[metrics] epoch=2 train_loss=0.25 val_accuracy=0.9"


def scripted_run(view: PlainProgress | LiveProgress) -> None:
    """Two phases, the second running a pipeline's Train step."""
    view.phase_started(1, 2, "Start the local AWS")
    view.note("local AWS at http://127.0.0.1:5000")
    view.phase_ended(1, 2, "Start the local AWS", 0.3, succeeded=True)
    view.phase_started(2, 2, "Run the cnn training pipeline")
    view.step_started("Train", "Training", "training job pipelines-x-Train-y", TRAIN_REQUEST)
    view.step_log("Train", NOISE)
    view.step_log("Train", EPOCH_1)
    view.step_ended(StepOutcome("Train", "Training", "Succeeded", 12.5, "val_accuracy=0.9; model s3://b/model.tar.gz"))
    view.phase_ended(2, 2, "Run the cnn training pipeline", 14.0, succeeded=True)


def plain_console(width: int = 60) -> Console:
    return Console(file=io.StringIO(), width=width, force_terminal=False)


def written(console: Console) -> str:
    assert isinstance(console.file, io.StringIO)
    return console.file.getvalue()


@pytest.fixture
def a_capable_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """rich draws nothing live on a terminal that says it is dumb (TERM=dumb, as some CI runners
    and `env -i` give): the terminal tests are about a terminal that can redraw."""
    monkeypatch.setenv("TERM", "xterm-256color")


def test_off_a_terminal_each_event_is_one_plain_line_printed_as_it_happens() -> None:
    console = plain_console()
    view = progress_view(console, show_logs=False)
    assert isinstance(view, PlainProgress)
    with view:
        scripted_run(view)
    output = written(console)
    assert "\x1b" not in output and "\r" not in output, "no colours, no cursor movement"
    assert output.splitlines() == [
        "[1/2] Start the local AWS",
        "  local AWS at http://127.0.0.1:5000",
        "✓ [1/2] Start the local AWS (0.3 s)",
        "[2/2] Run the cnn training pipeline",
        "  ▶ Train (Training) training job pipelines-x-Train-y",
        "    Train epoch 1/3 train_loss=0.5 val_accuracy=0.8",
        "  ✓ Train Succeeded (12.5 s) val_accuracy=0.9; model s3://b/model.tar.gz",
        "✓ [2/2] Run the cnn training pipeline (14.0 s)",
    ], "whole lines, however narrow the console: a log keeps them whole"


def test_with_logs_the_jobs_lines_come_too_and_a_failed_step_shows_the_first_line_of_its_reason() -> None:
    console = plain_console(200)
    with PlainProgress(console, show_logs=True) as view:
        view.phase_started(1, 1, "Run the rnn training pipeline")
        view.step_started("Train", "Training", "training job j", TRAIN_REQUEST)
        view.step_log("Train", NOISE)
        view.step_ended(StepOutcome("Train", "Training", "Failed", 3.0, "AlgorithmError: exit 2\nthe end of its log"))
        view.phase_ended(1, 1, "Run the rnn training pipeline", 3.5, succeeded=False)
    lines = written(console).splitlines()
    assert f"    Train │ {NOISE}" in lines
    assert lines[-2:] == [
        "  ✗ Train Failed (3.0 s) AlgorithmError: exit 2",
        "✗ [1/1] Run the rnn training pipeline (3.5 s)",
    ]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.usefixtures("a_capable_terminal")
def test_on_a_terminal_the_running_phase_and_step_are_live_lines_that_become_its_record() -> None:
    clock = FakeClock()
    console = Console(
        file=io.StringIO(),
        width=100,
        force_terminal=True,
        force_interactive=True,
        color_system="standard",  # the screen drops colours; without them rich draws no track under the bar
        no_color=False,
        get_time=lambda: 0.0,
    )
    view = progress_view(console, show_logs=False)
    assert isinstance(view, LiveProgress)
    view = LiveProgress(console, show_logs=False, auto_refresh=False, clock=clock)

    def shown() -> list[str]:
        view.refresh()
        return screen(written(console))

    with view:
        view.phase_started(1, 2, "Start the local AWS")
        view.note("local AWS at http://127.0.0.1:5000")
        clock.now += 1
        assert shown() == ["⠋ [1/2] Start the local AWS 0:01", "  local AWS at http://127.0.0.1:5000"]
        view.phase_ended(1, 2, "Start the local AWS", 0.3, succeeded=True)
        assert shown() == ["✓ [1/2] Start the local AWS (0.3 s)", "  local AWS at http://127.0.0.1:5000"]

        view.phase_started(2, 2, "Run the cnn training pipeline")
        view.step_started("Train", "Training", "training job j", TRAIN_REQUEST)
        clock.now += 65
        running = shown()[2:]
        assert running[0] == "⠋ [2/2] Run the cnn training pipeline 1:05"
        assert running[1].startswith("  ⠋ Train (Training) ━") and running[1].endswith(" 0/3 epochs 1:05")

        view.step_log("Train", NOISE)
        view.step_log("Train", EPOCH_1)
        view.step_log("Train", EPOCH_2)
        (step,) = shown()[3:]
        assert "2/3 epochs 1:05 train_loss=0.25 val_accuracy=0.9" in step, step
        assert NOISE not in written(console), "without --logs the jobs' lines stay in their log"

        view.step_ended(StepOutcome("Train", "Training", "Succeeded", 70.0, "val_accuracy=0.9; model s3://b/m.tar.gz"))
        assert shown()[3] == "  ✓ Train Succeeded (70.0 s) val_accuracy=0.9; model s3://b/m.tar.gz"
        view.phase_ended(2, 2, "Run the cnn training pipeline", 71.0, succeeded=True)

    assert screen(written(console)) == [
        "✓ [1/2] Start the local AWS (0.3 s)",
        "  local AWS at http://127.0.0.1:5000",
        "✓ [2/2] Run the cnn training pipeline (71.0 s)",
        "  ✓ Train Succeeded (70.0 s) val_accuracy=0.9; model s3://b/m.tar.gz",
    ], "what stays on the screen: each phase's line and its details, no spinner left behind"


@pytest.mark.usefixtures("a_capable_terminal")
def test_on_a_terminal_a_long_step_detail_is_cut_to_one_line_and_a_long_note_wraps_indented() -> None:
    console = Console(file=io.StringIO(), width=40, force_terminal=True, force_interactive=True, color_system=None)
    with LiveProgress(console, show_logs=False, auto_refresh=False) as view:
        view.phase_started(1, 1, "Run")
        view.note("served at http://127.0.0.1:40373: s3://bucket/model.tar.gz")
        view.step_ended(StepOutcome("Train", "Training", "Succeeded", 1.0, "test_accuracy=0.97; model s3://b/c/d.tgz"))
        view.phase_ended(1, 1, "Run", 2.0, succeeded=True)
    assert screen(written(console)) == [
        "✓ [1/1] Run (2.0 s)",
        "  served at http://127.0.0.1:40373:",
        "  s3://bucket/model.tar.gz",
        "  ✓ Train Succeeded (1.0 s) test_accura…",
    ]


@pytest.mark.integration
def test_a_failing_cdk_cli_is_named_with_the_log_that_holds_what_it_printed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    fake = tmp_path / "cdk"
    fake.write_text(
        '#!/bin/sh\necho "fake cdk $1: a line only the log holds"\necho "fake cdk $1: what went wrong" >&2\nexit 3\n'
    )
    fake.chmod(0o755)
    monkeypatch.setattr("mlops.cdk.CDK_BIN", fake)
    report = tmp_path / "report"
    code, out, err = run_mlops(
        monkeypatch, capsys, "local", "--port", str(free_port()), "--report-dir", str(report), "--no-iam"
    )

    log = report / "logs" / "cdk.log"
    assert code == 1
    assert err.startswith("failed: `cdk ") and "exited with 3" in err
    assert "what went wrong" in err, "the end of what it printed on stderr"
    assert err.rstrip().endswith(f"(the whole output: {log})")
    assert "a line only the log holds" not in out + err
    held = log.read_text()
    assert "fake cdk synth: a line only the log holds" in held and "fake cdk bootstrap: what went wrong" in held
    assert "✗ [2/9] Synthesize the app and bootstrap CDK in the local account" in out
