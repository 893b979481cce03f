"""Tabular data: sklearn's breast cancer set as an anomaly-detection task (benign = normal)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlops.datasets.common import Channels, limited, write_channels

TABULAR_DTYPES = {"features": "float32", "label": "int64"}
CLASS_NAMES = ("normal", "anomaly")


def prepare_breast_cancer(out_dir: Path, *, limit: int | None = None, seed: int = 0) -> Channels:
    """Train (60%) and validation (15%) hold benign tumours only; test holds the remaining
    benign ones and every malignant one, labelled 1 (anomaly) for ROC AUC."""
    from sklearn.datasets import load_breast_cancer

    dataset = load_breast_cancer()
    features, target = dataset.data.astype(np.float32), dataset.target
    rng = np.random.default_rng(seed)
    benign = rng.permutation(np.flatnonzero(target == 1))
    train_end, validation_end = round(0.6 * len(benign)), round(0.75 * len(benign))
    splits = {
        "train": benign[:train_end],
        "validation": benign[train_end:validation_end],
        "test": np.concatenate([benign[validation_end:], np.flatnonzero(target == 0)]),
    }
    channels = {}
    for name, index in splits.items():
        index = limited(np.sort(index), limit, seed)
        channels[name] = {"features": features[index], "label": (target[index] == 0).astype(np.int64)}
    return write_channels(
        out_dir,
        channels,
        dtypes=TABULAR_DTYPES,
        class_names=CLASS_NAMES,
        metadata={
            "source": "sklearn.datasets.load_breast_cancer",
            "normal": "benign",
            "anomaly": "malignant",
            "feature_names": [str(name) for name in dataset.feature_names],
        },
    )
