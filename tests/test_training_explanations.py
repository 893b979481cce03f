"""Explanations that can be checked against a known answer: a synthetic tabular set in which one
feature alone tells anomalies from normal examples. The autoencoder's own training function trains
on it under the training contract, and the Evaluate step's explanations must rank that feature
first, by permutation importance and by its share of the reconstruction error. Both run in this
process (a training subprocess would add ~20 s of start-up); the entry points' own processes are
tests/test_training_entry_points.py's business."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from training_support import entry_point_logging

import records

# slow: trains and explains.
pytestmark = [pytest.mark.integration, pytest.mark.slow]

FEATURES = 8
SIGNAL = 5
NAMES = [f"feature_{index}" for index in range(FEATURES)]


def synthetic_channels(root: Path, seed: int = 0) -> dict[str, Path]:
    """Normal examples lie near a 2-D plane in 8 features; an anomaly is a normal example with one
    feature, `feature_5`, moved by 6 of its standard deviations. Train and validation hold normal
    examples only, test both (label 1 = anomaly)."""
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(2, FEATURES))

    def normal(count: int) -> np.ndarray:
        return (rng.normal(size=(count, 2)) @ mixing + 0.1 * rng.normal(size=(count, FEATURES))).astype(np.float32)

    anomalies = normal(40)
    anomalies[:, SIGNAL] += 6 * np.linalg.norm(mixing[:, SIGNAL])
    splits = {
        "train": (normal(400), np.zeros(400)),
        "validation": (normal(100), np.zeros(100)),
        "test": (np.concatenate([normal(120), anomalies]), np.repeat([0, 1], [120, 40])),
    }
    channels = {}
    for name, (features, labels) in splits.items():
        channels[name] = root / name
        records.write_channel(
            channels[name],
            {"features": features, "label": labels.astype(np.int64)},
            dtypes={"features": "float32", "label": "int64"},
            class_names=("normal", "anomaly"),
            metadata={"feature_names": NAMES},
        )
    return channels


def test_the_one_feature_that_carries_the_signal_ranks_first(tmp_path: Path) -> None:
    import autoencoder
    import contract
    from processing import evaluate

    channels = synthetic_channels(tmp_path / "data")
    # float32 named: `auto` would set a mixed policy for the rest of this process.
    with entry_point_logging():
        contract.run(
            "autoencoder",
            autoencoder.train,
            [
                *(f"--{channel}={folder}" for channel, folder in channels.items()),
                f"--model_dir={tmp_path / 'model'}",
                f"--output_dir={tmp_path / 'output'}",
                f"--checkpoint_dir={tmp_path / 'checkpoints'}",
                "--epochs=15",
                "--batch_size=32",
                "--encoding_dim=2",
                "--hidden_units=16",
                "--precision=float32",
            ],
        )
    document = evaluate.evaluate("autoencoder", tmp_path / "model", channels["test"], tmp_path / "evaluation")
    assert document["metrics"]["test_roc_auc"]["value"] > 0.95, document["metrics"]

    explained = json.loads((tmp_path / "evaluation" / "explanations.json").read_text())
    shares, importance = explained["summary"]
    assert shares["title"].startswith("features by share of the reconstruction error")
    assert importance["title"].startswith("features by permutation importance")
    for ranking in (shares, importance):
        assert ranking["top"][0]["name"] == f"feature_{SIGNAL}", ranking
        assert ranking["top"][0]["value"] > 2 * ranking["top"][1]["value"], ranking
    assert explained["details"]["partial_dependence"][0]["name"] == f"feature_{SIGNAL}"
