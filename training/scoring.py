"""Test-set evaluation per task and its plots, streamed batch by batch.

Memory stays bounded whatever the size of a channel: a classifier keeps a confusion matrix,
a forecaster running sums (and the first points for its plot), an anomaly detector fixed
log-spaced histograms of reconstruction error, from which its threshold percentile, ROC AUC
and plot come.

Each function takes the model as a callable from a batch of inputs to its predictions, so that
the training run (its Keras model) and the pipeline's Evaluate step (processing/evaluate.py, the exported
SavedModel's signature) compute the very same metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import keras
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf
from matplotlib.ticker import MaxNLocator

PLOTTED_FORECASTS = 500


Predict = Callable[[tf.Tensor], tf.Tensor]


def compiled(function: Callable[[tf.Tensor], Any]) -> Callable[[tf.Tensor], Any]:
    """`function` as a graph; calling a model eagerly per batch is an order of magnitude slower."""
    return tf.function(function, reduce_retracing=True)


def inference(model: keras.Model) -> Predict:
    """The model's predictions in inference mode (no dropout), as a graph."""
    return compiled(lambda inputs: model(inputs, training=False))


# ---------------------------------------------------------------------------------- classifier


def classifier(predict: Predict, test: tf.data.Dataset, class_names: Sequence[str], plot: Path) -> dict[str, float]:
    """test_loss (cross-entropy without the weight penalty), test_accuracy; confusion matrix plot.
    `predict` maps a batch of images to class probabilities."""
    classes = len(class_names)
    confusion = np.zeros((classes, classes), dtype=np.int64)
    cross_entropy = 0.0
    for images, labels in test:
        probabilities = predict(images).numpy()
        labels = labels.numpy().astype(np.int64)
        cross_entropy -= np.log(np.clip(probabilities[np.arange(len(labels)), labels], 1e-7, 1.0)).sum()
        confusion += np.bincount(labels * classes + probabilities.argmax(axis=1), minlength=classes * classes).reshape(
            classes, classes
        )
    total = confusion.sum()
    _plot_confusion_matrix(confusion, class_names, plot)
    return {"test_loss": cross_entropy / total, "test_accuracy": np.trace(confusion) / total}


def _plot_confusion_matrix(confusion: np.ndarray, class_names: Sequence[str], path: Path) -> None:
    figure, axes = plt.subplots(figsize=(1.2 + 0.5 * len(class_names),) * 2)
    axes.imshow(confusion, cmap="Blues")
    for (row, column), count in np.ndenumerate(confusion):
        axes.text(
            column,
            row,
            str(count),
            ha="center",
            va="center",
            fontsize=8,
            color="white" if count > confusion.max() / 2 else "black",
        )
    ticks = range(len(class_names))
    axes.set(
        xticks=ticks,
        yticks=ticks,
        xticklabels=class_names,
        yticklabels=class_names,
        xlabel="predicted",
        ylabel="true",
        title=f"test accuracy {np.trace(confusion) / confusion.sum():.4f}",
    )
    save_figure(figure, path)


# ---------------------------------------------------------------------------------- forecaster


def seasonal_naive(history: tf.Tensor, horizon: int, season: int, target_index: int) -> tf.Tensor:
    """The value one season before each forecast step (season 1: the last value)."""
    window = history.shape[1]
    steps = [window - season + step % season for step in range(horizon)]
    return tf.gather(history[:, :, target_index], steps, axis=1)


def forecaster(
    predict: Predict, test: tf.data.Dataset, *, season: int, target_index: int, plot: Path
) -> dict[str, float]:
    """test_mae against the seasonal-naive baseline's, in the series' units; forecast plot.
    `predict` maps a batch of histories to forecasts."""
    error = baseline_error = count = 0.0
    # The first PLOTTED_FORECASTS one-step-ahead values of each, for the plot.
    shown: dict[str, list[np.ndarray]] = {"actual": [], "forecast": [], "seasonal naive": []}
    plotted = 0
    for history, target in test:
        forecast = predict(history)
        baseline = seasonal_naive(history, target.shape[1], season, target_index)
        error += float(tf.reduce_sum(tf.abs(forecast - target)))
        baseline_error += float(tf.reduce_sum(tf.abs(baseline - target)))
        count += float(tf.size(target))
        if plotted < PLOTTED_FORECASTS:
            for name, values in zip(shown, (target, forecast, baseline), strict=True):
                shown[name].append(values.numpy()[: PLOTTED_FORECASTS - plotted, 0])
            plotted += len(shown["actual"][-1])
    mae, baseline_mae = error / count, baseline_error / count
    _plot_forecasts({name: np.concatenate(values) for name, values in shown.items()}, mae, baseline_mae, plot)
    return {"test_mae": mae, "test_baseline_mae": baseline_mae, "test_relative_mae": mae / baseline_mae}


def _plot_forecasts(series: dict[str, np.ndarray], mae: float, baseline_mae: float, path: Path) -> None:
    figure, axes = plt.subplots(figsize=(10, 4))
    for (name, values), style in zip(series.items(), ("k-", "C0-", "C1--"), strict=True):
        axes.plot(values, style, label=name, linewidth=1.2)
    axes.set(
        xlabel="test window (time order)",
        ylabel="next value",
        title=f"one step ahead: MAE {mae:.4g}, seasonal naive {baseline_mae:.4g}",
    )
    axes.legend()
    save_figure(figure, path)


# ---------------------------------------------------------------------------------- anomaly detector


class ErrorHistogram:
    """Counts of non-negative errors in fixed log-spaced bins (0.7% wide): percentiles and ROC
    AUC to that resolution, in constant memory."""

    EDGES = np.concatenate([[0.0], np.geomspace(1e-9, 1e9, 6_000), [np.inf]])

    def __init__(self) -> None:
        self.counts = np.zeros(len(self.EDGES) - 1, dtype=np.int64)

    def add(self, errors: np.ndarray) -> None:
        self.counts += np.histogram(errors, bins=self.EDGES)[0]

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def percentile(self, q: float) -> float:
        """The upper edge of the bin holding the q-th percentile: at least q% lie at or below it."""
        rank = int(np.searchsorted(np.cumsum(self.counts), q / 100 * self.total))
        return float(self.EDGES[min(rank + 1, len(self.EDGES) - 2)])


def error_histogram(errors: Predict, dataset: tf.data.Dataset) -> ErrorHistogram:
    histogram = ErrorHistogram()
    for features in dataset:
        histogram.add(errors(features).numpy())
    return histogram


def anomaly_detector(errors: Predict, test: tf.data.Dataset, *, threshold: float, plot: Path) -> dict[str, float]:
    """test_roc_auc of the reconstruction error, precision/recall of `error > threshold`
    for the anomaly class (label 1); histogram plot with the threshold."""
    normal, anomalous = ErrorHistogram(), ErrorHistogram()
    flagged = {True: 0, False: 0}
    for features, labels in test:
        error, is_anomaly = errors(features).numpy(), labels.numpy() == 1
        normal.add(error[~is_anomaly])
        anomalous.add(error[is_anomaly])
        flagged[True] += int(np.sum((error > threshold) & is_anomaly))
        flagged[False] += int(np.sum((error > threshold) & ~is_anomaly))
    if not normal.total or not anomalous.total:
        raise ValueError("channel 'test': ROC AUC needs both normal (label 0) and anomalous (label 1) examples")
    # P(error of an anomaly > error of a normal example), ties (same bin) counted half.
    normal_below = np.cumsum(normal.counts) - normal.counts
    roc_auc = float(np.sum(anomalous.counts * (normal_below + 0.5 * normal.counts))) / (normal.total * anomalous.total)
    precision = flagged[True] / max(flagged[True] + flagged[False], 1)
    _plot_errors(normal, anomalous, threshold, plot)
    return {
        "test_roc_auc": roc_auc,
        "test_anomaly_precision": precision,
        "test_anomaly_recall": flagged[True] / anomalous.total,
    }


def _plot_errors(normal: ErrorHistogram, anomalous: ErrorHistogram, threshold: float, path: Path) -> None:
    occupied = np.flatnonzero(normal.counts + anomalous.counts)
    low, high = ErrorHistogram.EDGES[occupied[0]], ErrorHistogram.EDGES[occupied[-1] + 1]
    edges = np.geomspace(max(low, 1e-9), high, 40)
    # Regroup the fine bins into 40 plot bins by their lower edges.
    groups = np.clip(np.searchsorted(edges, ErrorHistogram.EDGES[:-1], side="right") - 1, 0, len(edges) - 2)
    figure, axes = plt.subplots(figsize=(8, 4))
    for histogram, name in ((normal, "normal"), (anomalous, "anomaly")):
        counts = np.bincount(groups, weights=histogram.counts, minlength=len(edges) - 1)
        axes.stairs(counts, edges, label=f"{name} ({histogram.total})", fill=True, alpha=0.5)
    axes.axvline(threshold, color="k", linestyle="--", label=f"threshold {threshold:.4g}")
    axes.set(xscale="log", xlabel="reconstruction error (standardized MSE)", ylabel="test examples")
    axes.legend()
    save_figure(figure, path)


# ---------------------------------------------------------------------------------- all tasks


def plot_training_curves(history: Sequence[dict[str, float]], path: Path) -> None:
    """Loss (and accuracy, when logged) per epoch, train and validation."""
    panels = [name for name in ("loss", "accuracy") if any(f"val_{name}" in epoch for epoch in history)]
    figure, axes = plt.subplots(1, max(len(panels), 1), figsize=(5 * max(len(panels), 1), 3.5), squeeze=False)
    # With no validation metric logged there are no panels: the one empty axis stays blank.
    for axis, name in zip(axes[0], panels, strict=False):
        for key, label in ((f"train_{name}", "train"), (f"val_{name}", "validation")):
            points = [(epoch["epoch"], epoch[key]) for epoch in history if key in epoch]
            if points:
                axis.plot(*zip(*points, strict=True), marker=".", label=label)
        axis.set(xlabel="epoch", ylabel=name)
        # Whole epochs only: matplotlib would tick a one-epoch run at 0.96, 0.98, ...
        axis.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        axis.legend()
    save_figure(figure, path)


def save_figure(figure: plt.Figure, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
