"""The monitor's picture of one window against the baseline: `drift.png`, a panel per summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

from drift import Baseline, Summaries

SHOWN_FEATURES = 12


def plot(baseline: Baseline, window: Summaries | None, report: dict[str, Any], path: Path) -> None:
    panels = [_predictions]
    if baseline.feature_names:
        panels.append(_features)
    if baseline.reference.embedding is not None:
        panels.append(_embedding)
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for axis, panel in zip(axes[0], panels, strict=True):
        if window is None:
            axis.text(0.5, 0.5, "too few examples", ha="center", va="center", transform=axis.transAxes)
            axis.set_axis_off()
        else:
            panel(axis, baseline, window, report)
    figure.suptitle(
        f"{report['network']} {report['window']['start']} .. {report['window']['end']}: {report['decision']}",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def _family_title(report: dict[str, Any], family: str, what: str) -> str:
    p_value = report.get("families", {}).get(family)
    return what if p_value is None else f"{what}: p={p_value:.3g}"


def _predictions(axis: Any, baseline: Baseline, window: Summaries, report: dict[str, Any]) -> None:
    if baseline.document["prediction_kind"] == "classes":
        names = baseline.document["class_names"]
        counts = baseline.class_counts
        shown = np.bincount(window.predictions.astype(int), minlength=len(names))[: len(names)]
        positions = np.arange(len(names))
        axis.bar(positions - 0.2, counts / counts.sum(), width=0.4, label="baseline")
        axis.bar(positions + 0.2, shown / shown.sum(), width=0.4, label="window")
        axis.set(xticks=positions, ylabel="share of predictions")
        axis.set_xticklabels(names, rotation=90 if len(names) > 10 else 0, fontsize=8)
    else:
        bins = np.histogram_bin_edges(np.concatenate([baseline.reference.predictions, window.predictions]), 30)
        axis.hist(baseline.reference.predictions, bins, density=True, alpha=0.5, label="baseline")
        axis.hist(window.predictions, bins, density=True, alpha=0.5, label="window")
        axis.set(ylabel="density")
    axis.set_title(_family_title(report, "predictions", "predictions"), fontsize=9)
    axis.legend(fontsize=8)


def _features(axis: Any, baseline: Baseline, window: Summaries, report: dict[str, Any]) -> None:
    tests = sorted(
        (test for test in report["tests"] if test["family"] == "features"),
        key=lambda test: test["statistic"],
        reverse=True,
    )[:SHOWN_FEATURES]
    axis.barh([test["name"] for test in tests][::-1], [test["statistic"] for test in tests][::-1])
    axis.set(xlabel="Kolmogorov-Smirnov statistic", xlim=(0, 1))
    axis.tick_params(axis="y", labelsize=7)
    axis.set_title(_family_title(report, "features", "features"), fontsize=9)


def _embedding(axis: Any, baseline: Baseline, window: Summaries, report: dict[str, Any]) -> None:
    reference, embedding = baseline.reference.embedding, window.embedding
    if reference is None or embedding is None:  # `plot` adds this panel only for models that have one
        return
    centre = reference.mean(axis=0)
    # The reference's two principal directions, both samples projected on them.
    _, _, directions = np.linalg.svd(reference - centre, full_matrices=False)
    for values, label in ((reference, "baseline"), (embedding, "window")):
        projected = (values - centre) @ directions[:2].T
        axis.scatter(
            projected[:, 0],
            projected[:, 1] if projected.shape[1] > 1 else np.zeros(len(projected)),
            s=6,
            alpha=0.5,
            label=label,
        )
    axis.set(xlabel="principal direction 1", ylabel="principal direction 2")
    axis.set_title(_family_title(report, "embedding", "embedding"), fontsize=9)
    axis.legend(fontsize=8)
