"""Time series: statsmodels' Mauna Loa CO2 record as monthly windows for a forecaster."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlops.datasets.common import Channels, write_channels

SERIES_DTYPES = {"history": "float32", "target": "float32"}


def monthly_co2() -> np.ndarray:
    """Weekly CO2 (ppm, 1958-2001, with gaps) as monthly means, gaps filled forward: [months, 1]."""
    from statsmodels.datasets import co2

    weekly = co2.load_pandas().data["co2"]
    return weekly.resample("MS").mean().ffill().to_numpy(dtype=np.float32)[:, np.newaxis]


def windows(series: np.ndarray, window: int, horizon: int, target_index: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Every (history [window, n_features], target [horizon]) pair, in time order."""
    starts = range(len(series) - window - horizon + 1)
    history = np.stack([series[start : start + window] for start in starts])
    target = np.stack([series[start + window : start + window + horizon, target_index] for start in starts])
    return history, target


def prepare_co2(
    out_dir: Path,
    *,
    limit: int | None = None,
    seed: int = 0,
    window: int = 24,
    horizon: int = 1,
    test_fraction: float = 0.2,
    validation_fraction: float = 0.15,
) -> Channels:
    """Windows split by time: the last `test_fraction` of the months are the test targets, the
    `validation_fraction` before them validation, the rest training. `limit` keeps the latest
    training and the earliest validation/test windows (the ones next to each split point)."""
    series = monthly_co2()
    history, target = windows(series, window, horizon)
    target_month = np.arange(len(target)) + window
    test_start = len(series) - round(test_fraction * len(series))
    validation_start = test_start - round(validation_fraction * len(series))
    splits = {
        "train": np.flatnonzero(target_month < validation_start),
        "validation": np.flatnonzero((target_month >= validation_start) & (target_month < test_start)),
        "test": np.flatnonzero(target_month >= test_start),
    }
    if limit is not None:
        splits = {name: index[-limit:] if name == "train" else index[:limit] for name, index in splits.items()}
    return write_channels(
        out_dir,
        {name: {"history": history[index], "target": target[index]} for name, index in splits.items()},
        dtypes=SERIES_DTYPES,
        metadata={
            "source": "statsmodels.datasets.co2, monthly means",
            "feature_names": ["co2"],
            "target_index": 0,
            "season": 12,
            "frequency": "month",
            "window": window,
            "horizon": horizon,
            "seed": seed,
        },
    )
