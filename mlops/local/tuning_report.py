"""The trials of a `mlops local --tune` run in its report: a table, the objective of each trial in the
order they ran, and the objective against each knob the search moved (matplotlib PNGs in
`plots/tuning/`), the best trial marked.

    rows = trial_rows(trials, best="mlops-...-003-ab12cd34")
    plots = plot_trials(rows, "val_accuracy", maximize=True, folder=report / "plots" / "tuning")
    lines = markdown(rows, "val_accuracy", tuning_job, plots)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib import ticker

_COLOURS = {"Completed": "tab:blue", "Stopped": "tab:orange", "Failed": "tab:red"}


def trial_rows(trials: Iterable[Any], best: str | None) -> list[dict[str, Any]]:
    """What the report keeps of each trial (`mlops.local.tuning_job.TrialRun`), in the order they ran."""
    return [
        {
            "number": trial.number,
            "name": trial.name,
            "status": trial.status,
            "epochs": trial.epochs,
            "objective": trial.objective,
            "hyperparameters": dict(trial.tuned),
            "best": trial.name == best,
            "stopped_at_epoch": trial.pruned_at,
            "failure_reason": trial.failure_reason,
        }
        for trial in sorted(trials, key=lambda trial: trial.number)
    ]


def plot_trials(
    rows: list[dict[str, Any]], metric: str, *, maximize: bool, folder: Path, logarithmic: Iterable[str] = ()
) -> list[Path]:
    """objective_per_trial.png, and objective_by_knob.png with a panel per tuned knob (on a log axis
    for those searched on a logarithmic scale)."""
    scored = [row for row in rows if row["objective"] is not None]
    if not scored:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    figure, axis = plt.subplots(figsize=(6, 3.5))
    _scatter(axis, [row["number"] for row in scored], scored)
    best_so_far, running = [], None
    for row in scored:
        if running is None or (row["objective"] > running if maximize else row["objective"] < running):
            running = row["objective"]
        best_so_far.append(running)
    axis.step(
        [row["number"] for row in scored], best_so_far, where="post", color="grey", linewidth=1, label="best so far"
    )
    axis.set(xlabel="trial", ylabel=metric, title=f"{metric} of each trial")
    axis.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    axis.legend(fontsize="small")
    per_trial = _save(figure, folder / "objective_per_trial.png")
    knobs = list(scored[0]["hyperparameters"])
    figure, axes = plt.subplots(1, len(knobs), figsize=(4 * len(knobs), 3.5), squeeze=False)
    for axis, knob in zip(axes[0], knobs, strict=True):
        values = [_number(row["hyperparameters"][knob]) for row in scored]
        if all(isinstance(value, float) for value in values):
            _scatter(axis, values, scored)
            if knob in set(logarithmic):
                axis.set_xscale("log")
                axis.xaxis.set_minor_formatter(ticker.NullFormatter())
        else:
            labels = sorted({str(value) for value in values})
            _scatter(axis, [labels.index(str(value)) for value in values], scored)
            axis.set_xticks(range(len(labels)), labels)
        axis.set(xlabel=knob, ylabel=metric)
    axes[0][0].legend(fontsize="small")
    figure.suptitle(f"{metric} against each tuned knob (stopped trials: the value they stopped at)")
    return [per_trial, _save(figure, folder / "objective_by_knob.png")]


def markdown(rows: list[dict[str, Any]], metric: str, tuning_job: str, plots: list[Path]) -> list[str]:
    if not rows:
        return []
    lines = [
        "",
        "## Hyperparameter tuning",
        "",
        f"Tuning job `{tuning_job}`: {len(rows)} trials, each a training job; the best one (★), the trial "
        f"that completed with the best `{metric}` on the validation channel, went through the quality gate.",
        "",
        f"| trial | status | epochs | {metric} | hyperparameters |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        objective = "-" if row["objective"] is None else f"{row['objective']:.4f}"
        status = row["status"] + (" (early stopping)" if row["status"] == "Stopped" else "")
        values = ", ".join(f"{name}={value}" for name, value in row["hyperparameters"].items())
        mark = "★ " if row["best"] else ""
        lines.append(f"| {mark}{row['number']} `{row['name']}` | {status} | {row['epochs']} | {objective} | {values} |")
    lines += [""] + [f"![tuning: {plot.stem}]({plot.as_posix()})" for plot in plots]
    return lines


def _scatter(axis: Any, xs: list[Any], rows: list[dict[str, Any]]) -> None:
    for status, colour in _COLOURS.items():
        points = [(x, row["objective"]) for x, row in zip(xs, rows, strict=True) if row["status"] == status]
        if points:
            axis.scatter(*zip(*points, strict=True), color=colour, label=status, zorder=3)
    for x, row in zip(xs, rows, strict=True):
        if row["best"]:
            axis.scatter([x], [row["objective"]], marker="*", s=220, color="gold", edgecolor="black", zorder=4)


def _number(text: str) -> float | str:
    try:
        value = float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) else text


def _save(figure: Any, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
