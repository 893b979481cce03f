"""How `mlops local --tune` shows trials: plain lines as they start and end, and in the report a table,
the objective per trial and against each knob (PNGs), the best trial starred."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from PIL import Image
from rich.console import Console

from mlops.local.progress import PlainProgress
from mlops.local.tuning_report import markdown, plot_trials, trial_rows


def trial(number: int, status: str, objective: float | None, rate: str, epochs: int = 3) -> Any:
    """What the views read of a TrialRun (mlops.local.tuning_job), without its job and Optuna trial."""
    return SimpleNamespace(
        number=number,
        name=f"tune-{number:03d}-abcd",
        metric="val_accuracy",
        status=status,
        epochs=epochs,
        objective=objective,
        tuned={"learning_rate": rate, "class_weight": "balanced" if number % 2 else "none"},
        pruned_at=epochs if status == "Stopped" else None,
        failure_reason="AlgorithmError: out of memory\nmore" if status == "Failed" else None,
    )


TRIALS = [
    trial(1, "Completed", 0.91, "0.001"),
    trial(2, "Stopped", 0.42, "0.0001", epochs=1),
    trial(3, "Completed", 0.95, "0.003"),
    trial(4, "Failed", None, "0.05", epochs=0),
]


def test_plain_lines_say_when_a_trial_starts_and_how_it_ended() -> None:
    out = io.StringIO()
    view = PlainProgress(Console(file=out, width=200), show_logs=False)
    view.trial_update("Tune", trial(5, "InProgress", None, "0.002", epochs=0))
    for ended in TRIALS:
        view.trial_update("Tune", ended)
    lines = out.getvalue().splitlines()
    assert lines[0] == "    Tune trial 5 started: learning_rate=0.002 class_weight=balanced"
    assert lines[1].startswith("    ✓ Tune trial 1 Completed val_accuracy=0.91 ")
    assert lines[2].startswith("    ■ Tune trial 2 Stopped after 1 epochs (early stopping) val_accuracy=0.42 ")
    assert lines[4].startswith("    ✗ Tune trial 4 Failed: AlgorithmError: out of memory ")


def test_the_report_tables_and_plots_the_trials_best_starred(tmp_path: Path) -> None:
    rows = trial_rows(TRIALS, best="tune-003-abcd")
    plots = plot_trials(rows, "val_accuracy", maximize=True, folder=tmp_path / "plots", logarithmic=["learning_rate"])
    assert [plot.name for plot in plots] == ["objective_per_trial.png", "objective_by_knob.png"]
    per_knob = Image.open(plots[1])
    assert per_knob.width > Image.open(plots[0]).width, "a panel per tuned knob"
    lines = markdown(rows, "val_accuracy", "tune", [plot.relative_to(tmp_path) for plot in plots])
    assert "| ★ 3 `tune-003-abcd` | Completed | 3 | 0.9500 | learning_rate=0.003, class_weight=balanced |" in lines
    assert (
        "| 2 `tune-002-abcd` | Stopped (early stopping) | 1 | 0.4200 | learning_rate=0.0001, class_weight=none |"
        in lines
    )
    assert "| 4 `tune-004-abcd` | Failed | 0 | - | learning_rate=0.05, class_weight=none |" in lines
    assert lines[-1] == "![tuning: objective_by_knob](plots/objective_by_knob.png)"


def test_no_plot_without_a_trial_that_reported_the_objective(tmp_path: Path) -> None:
    assert plot_trials(trial_rows([TRIALS[3]], best=None), "val_accuracy", maximize=True, folder=tmp_path) == []
