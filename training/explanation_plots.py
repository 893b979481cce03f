"""The explanation plots of the Evaluate step (PNG), one function per kind of picture."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

from scoring import save_figure

# Signed attributions: red pushes the explained score up, blue down, white is none.
DIVERGING = "RdBu_r"


def image_attributions(
    images: np.ndarray,
    attributions: np.ndarray,
    titles: Sequence[str],
    groups: Sequence[tuple[str, Sequence[int]]],
    path: Path,
) -> None:
    """One row per (class, its images): each image beside its attribution map (red raises the
    predicted class, blue lowers it), then the class's mean |attribution| map. Drawn as one mosaic:
    a subplot per tile takes seconds longer to render."""
    height, width = images.shape[1:3]
    per_row = max(len(indices) for _, indices in groups)
    gap = max(2, height // 8)
    tiles = 2 * per_row + 1
    mosaic = np.ones((len(groups) * (height + gap), tiles * (width + gap), 3))
    signed = attributions.sum(axis=-1)  # over colour channels
    figure, axis = plt.subplots(figsize=(0.9 * tiles + 0.6, 0.95 * len(groups) + 0.6))
    for row, (name, indices) in enumerate(groups):
        top = row * (height + gap)
        for column, index in enumerate(indices):
            left = 2 * column * (width + gap)
            mosaic[top : top + height, left : left + width] = _image_rgb(images[index])
            limit = max(float(np.percentile(np.abs(signed[index]), 99.5)), 1e-12)
            mosaic[top : top + height, left + width + gap : left + 2 * width + gap] = plt.get_cmap(DIVERGING)(
                np.clip(signed[index] / limit, -1, 1) / 2 + 0.5
            )[..., :3]
            axis.text(left, top - 0.5, titles[index], fontsize=6, va="bottom")
        if len(indices):
            mean = np.mean(np.abs(signed[list(indices)]), axis=0)
            left = 2 * per_row * (width + gap)
            mosaic[top : top + height, left : left + width] = plt.get_cmap("magma")(mean / max(mean.max(), 1e-12))[
                ..., :3
            ]
            axis.text(left, top - 0.5, f"{name}: mean |IG|", fontsize=6, va="bottom")
    axis.imshow(mosaic, interpolation="nearest")
    axis.set_axis_off()
    axis.set_title(
        "integrated gradients of the predicted class\n(truth → predicted, probability; "
        "red raises the class, blue lowers it)",
        fontsize=8,
    )
    save_figure(figure, path)


def _image_rgb(image: np.ndarray) -> np.ndarray:
    """Raw pixels (0-255) as RGB in [0, 1]; one channel as dark ink on white, as digits are drawn."""
    scaled = np.clip(image / 255.0, 0, 1)
    return np.repeat(1 - scaled, 3, axis=-1) if image.shape[-1] == 1 else scaled


def sequence_attributions(
    mean_abs: np.ndarray,
    time_steps: Sequence[str],
    features: Sequence[str],
    importance: Sequence[dict[str, Any]],
    what: str,
    path: Path,
) -> None:
    """Mean |integrated gradients| per time step and feature (heat map) and per time step (line),
    beside the permutation importance of each feature (bars)."""
    figure = plt.figure(figsize=(12, 4.5))
    grid = figure.add_gridspec(2, 2, width_ratios=(2.2, 1), height_ratios=(1, 2.2))
    line, heat, bars = figure.add_subplot(grid[0, 0]), figure.add_subplot(grid[1, 0]), figure.add_subplot(grid[:, 1])
    line.plot(mean_abs.sum(axis=1), color="C3")
    line.set(xlim=(-0.5, len(time_steps) - 0.5), ylabel="per step", title=f"mean |integrated gradients| of {what}")
    line.tick_params(labelbottom=False)
    heat.imshow(mean_abs.T, aspect="auto", cmap="magma", interpolation="nearest")
    ticks = range(0, len(time_steps), max(1, -(-len(time_steps) // 10)))
    heat.set_xticks(list(ticks), [time_steps[tick] for tick in ticks], fontsize=7)
    heat.set_yticks(range(len(features)), features, fontsize=7)
    heat.set(xlabel="time step", ylabel="feature")
    _importance_bars(bars, importance, "permutation importance")
    save_figure(figure, path)


def feature_bars(panels: Sequence[tuple[str, Sequence[dict[str, Any]]]], path: Path, top: int = 15) -> None:
    """Side by side, each panel's `top` entries as horizontal bars, largest on top."""
    figure, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 0.3 * top + 1.2), squeeze=False)
    for axis, (title, entries) in zip(axes[0], panels, strict=True):
        _importance_bars(axis, entries[:top], title)
    save_figure(figure, path)


def partial_dependence_curves(curves: Sequence[dict[str, Any]], threshold: float, what: str, path: Path) -> None:
    figure, axes = plt.subplots(1, len(curves), figsize=(4 * len(curves), 3.2), squeeze=False)
    for axis, curve in zip(axes[0], curves, strict=True):
        axis.plot(curve["grid"], curve["average"], marker=".")
        axis.axhline(threshold, color="k", linestyle="--", linewidth=1, label=f"threshold {threshold:.3g}")
        axis.set(xlabel=curve["name"], ylabel=f"average {what}", yscale="log")
        axis.legend(fontsize=7)
    figure.suptitle(f"partial dependence of the {what} (the other features as they are)", fontsize=9)
    save_figure(figure, path)


def _importance_bars(axis: Any, entries: Sequence[dict[str, Any]], title: str) -> None:
    names = [entry["name"] for entry in entries][::-1]
    values = [entry["value"] for entry in entries][::-1]
    errors = [entry.get("std", 0.0) for entry in entries][::-1]
    axis.barh(range(len(names)), values, xerr=errors, color="C0")
    axis.set_yticks(range(len(names)), names, fontsize=7)
    axis.set_title(title, fontsize=9)


def text_attributions(examples: Sequence[dict[str, Any]], path: Path, width: int = 96) -> None:
    """Each example's tokens as the model reads them, in a monospaced line wrapped at `width`
    characters, each on a background of its attribution (red raises the predicted class, blue
    lowers it, scaled per text by its largest |attribution|), under a line naming the truth, the
    prediction and its probability."""
    lines: list[list[tuple[int, str, float]]] = []  # per drawn line: (column, token, colour value)
    for example in examples:
        lines.append([(0, f"{example['truth']} → {example['predicted']} {example['probability']:.2f}", np.nan)])
        tokens = example["tokens"]
        limit = max((abs(token["attribution"]) for token in tokens), default=0.0) or 1.0
        lines.append([])
        for token in tokens:
            text = token["token"]
            if lines[-1] and lines[-1][-1][0] + len(lines[-1][-1][1]) + 1 + len(text) > width:
                lines.append([])
            column = lines[-1][-1][0] + len(lines[-1][-1][1]) + 1 if lines[-1] else 0
            lines[-1].append((column, text, token["attribution"] / limit))
    figure, axis = plt.subplots(figsize=(0.078 * width + 0.4, 0.22 * len(lines) + 0.7))
    colours = plt.get_cmap(DIVERGING)
    for row, line in enumerate(lines):
        for column, text, value in line:
            heading = np.isnan(value)
            axis.text(
                column,
                row,
                text,
                family="monospace",
                fontsize=9,
                va="center",
                weight="bold" if heading else "normal",
                color="white" if not heading and abs(value) > 0.6 else "black",
                bbox=None if heading else {"facecolor": colours(value / 2 + 0.5), "edgecolor": "none", "pad": 1.0},
            )
    axis.set(xlim=(-0.5, width + 0.5), ylim=(len(lines) - 0.5, -0.5))
    axis.set_axis_off()
    axis.set_title(
        "integrated gradients of the predicted class per token (truth → predicted, probability; "
        "red raises the class, blue lowers it)",
        fontsize=8,
    )
    save_figure(figure, path)
