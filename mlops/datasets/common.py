"""What every preparer shares: splitting, size limits, writing channels."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

Channels = dict[str, Path]


def stratified_split(labels: np.ndarray, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Index arrays, one per fraction (summing to 1), each with the classes in proportion."""
    from sklearn.model_selection import train_test_split

    remaining = np.arange(len(labels))
    parts = []
    left = 1.0
    for fraction in fractions[:-1]:
        taken, remaining = train_test_split(
            remaining, train_size=fraction / left, stratify=labels[remaining], random_state=seed
        )
        parts.append(np.sort(taken))
        left -= fraction
    return [*parts, np.sort(remaining)]


def limited(indices: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """At most `limit` of `indices`, drawn at random (kept in order), for small test slices."""
    if limit is None or len(indices) <= limit:
        return indices
    return np.sort(np.random.default_rng(seed).choice(indices, size=limit, replace=False))


def write_channels(
    out_dir: Path,
    channels: dict[str, dict[str, np.ndarray]],
    *,
    dtypes: dict[str, str],
    class_names: Sequence[str] = (),
    metadata: dict[str, Any] | None = None,
) -> Channels:
    """Writes each channel's arrays as `out_dir/<channel>/` in the records format."""
    from training import records  # TensorFlow: loaded only when a dataset is written

    written = {}
    for channel, arrays in channels.items():
        records.write_channel(out_dir / channel, arrays, dtypes=dtypes, class_names=class_names, metadata=metadata)
        written[channel] = out_dir / channel
    return written
