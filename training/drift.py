"""Two-sample tests between a window of served traffic and a model's drift baseline, and the
baseline as the monitor reads it back (`Baseline.read`; baseline.py computes and writes it).
NumPy and SciPy only: the statistics run in-process anywhere (benchmarks/drift.py).

Each kind of summary gets the test that fits it:

    features     Kolmogorov-Smirnov per feature (scipy.stats.ks_2samp); the family's p-value is
                 the smallest one times the number of features (Bonferroni)
    embedding    maximum mean discrepancy with a Gaussian kernel (bandwidth: the median distance
                 between reference embeddings), its p-value from PERMUTATIONS random relabellings
                 of the pooled rows: exact, whatever the embedding's size or distribution
    predictions  classes: chi-square test of homogeneity of the window's predicted classes
                 against the baseline's counts of every validation example (both are samples);
                 scores (reconstruction error, forecast change): Kolmogorov-Smirnov

The window drifts when the smallest family p-value times the number of families (Bonferroni
again) is below `alpha`, so a window of unchanged traffic raises a false alarm with probability
at most `alpha`. `score` is -log10 of that p-value (capped at SCORE_CAP): the number the monitor
publishes, and the alarm's threshold is -log10(alpha).
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

FORMAT = "mlops-drift-baseline/1"  # baseline.json, written by baseline.py

ALPHA = 0.01
PERMUTATIONS = 1000
SCORE_CAP = 10.0
# Fewer examples than this in a window: nothing is concluded (too few for any of the tests).
MIN_EXAMPLES = 20


@dataclass
class Summaries:
    """The drift summaries of a batch (or a window, or a reference sample) of examples."""

    features: np.ndarray
    """[examples, features], per the task's `drift_features`; zero columns where it has none."""
    embedding: np.ndarray | None
    """[examples, size] from the signature `embedding`, None for a model without one."""
    predictions: np.ndarray
    """[examples]: class indices or scores, per the task's `drift_predictions`."""

    def __len__(self) -> int:
        return len(self.predictions)

    @classmethod
    def concatenate(cls, parts: Iterable[Summaries]) -> Summaries:
        parts = list(parts)
        if not parts:
            raise ValueError("no summaries to join")
        embeddings = [part.embedding for part in parts if part.embedding is not None]
        return cls(
            np.concatenate([part.features for part in parts]),
            np.concatenate(embeddings) if len(embeddings) == len(parts) else None,
            np.concatenate([part.predictions for part in parts]),
        )

    def take(self, rows: np.ndarray) -> Summaries:
        return Summaries(
            self.features[rows], None if self.embedding is None else self.embedding[rows], self.predictions[rows]
        )


@dataclass
class Baseline:
    """A baseline as the monitor reads it back."""

    document: dict[str, Any]
    reference: Summaries

    @property
    def feature_names(self) -> list[str]:
        return list(self.document["features"])

    @property
    def class_counts(self) -> np.ndarray:
        """How often the model predicted each class on the reference: baselines of classifiers
        (`prediction_kind` `classes`) only."""
        return np.asarray(self.document["class_counts"], dtype=np.int64)

    @classmethod
    def read(cls, path: Path) -> Baseline:
        """ValueError if `path` is not a baseline this code reads."""
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise ValueError(f"cannot read the drift baseline {path}: {error}") from None
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise ValueError(f"{path} is not a drift baseline (format {FORMAT})")
        arrays = {name: _decoded(value) for name, value in document["reference"].items()}
        return cls(document, Summaries(arrays["features"], arrays.get("embedding"), arrays["predictions"]))


def _decoded(encoded: dict[str, Any]) -> np.ndarray:
    values = np.frombuffer(base64.b64decode(encoded["float32"]), dtype="<f4")
    return values.reshape(encoded["shape"]).astype(np.float64)


def score_of(p_value: float) -> float:
    return min(SCORE_CAP, max(0.0, -math.log10(max(p_value, 10.0**-SCORE_CAP))))


def threshold_score(alpha: float = ALPHA) -> float:
    """The score at which a window counts as drifted: the alarm's threshold."""
    return score_of(alpha)


@dataclass(frozen=True)
class Test:
    family: str
    name: str
    statistic: float
    p_value: float


@dataclass
class Comparison:
    """The tests of one window against the baseline, and what they conclude."""

    examples: int
    alpha: float
    tests: list[Test] = field(default_factory=list)
    family_p_values: dict[str, float] = field(default_factory=dict)

    @property
    def p_value(self) -> float:
        if not self.family_p_values:
            return 1.0
        return min(1.0, min(self.family_p_values.values()) * len(self.family_p_values))

    @property
    def drifted(self) -> bool:
        return self.p_value < self.alpha

    @property
    def score(self) -> float:
        return score_of(self.p_value)

    def to_json(self) -> dict[str, Any]:
        return {
            "examples": self.examples,
            "alpha": self.alpha,
            "p_value": self.p_value,
            "score": self.score,
            "drifted": self.drifted,
            "families": self.family_p_values,
            "tests": [
                {"family": test.family, "name": test.name, "statistic": test.statistic, "p_value": test.p_value}
                for test in self.tests
            ],
        }


def compare(
    baseline: Baseline, window: Summaries, *, alpha: float = ALPHA, permutations: int = PERMUTATIONS, seed: int = 0
) -> Comparison:
    """Every test of `window` against `baseline`; ValueError with fewer than MIN_EXAMPLES."""
    if len(window) < MIN_EXAMPLES:
        raise ValueError(f"{len(window)} examples in the window; at least {MIN_EXAMPLES} are needed to test for drift")
    reference = baseline.reference
    comparison = Comparison(examples=len(window), alpha=alpha)

    feature_tests = [
        Test("features", name, *_ks(reference.features[:, index], window.features[:, index]))
        for index, name in enumerate(baseline.feature_names)
    ]
    _add(comparison, "features", feature_tests)
    if reference.embedding is not None and window.embedding is not None:
        statistic, p_value = mmd_test(
            reference.embedding, window.embedding, permutations=permutations, rng=np.random.default_rng(seed)
        )
        _add(comparison, "embedding", [Test("embedding", "maximum mean discrepancy", statistic, p_value)])
    if baseline.document["prediction_kind"] == "classes":
        statistic, p_value = _homogeneity(baseline.class_counts, window.predictions)
        _add(comparison, "predictions", [Test("predictions", "predicted classes (chi-square)", statistic, p_value)])
    else:
        statistic, p_value = _ks(reference.predictions, window.predictions)
        _add(comparison, "predictions", [Test("predictions", "scores (Kolmogorov-Smirnov)", statistic, p_value)])
    return comparison


def _add(comparison: Comparison, family: str, tests: list[Test]) -> None:
    if tests:
        comparison.tests += tests
        comparison.family_p_values[family] = min(1.0, min(test.p_value for test in tests) * len(tests))


def _ks(reference: np.ndarray, window: np.ndarray) -> tuple[float, float]:
    result = stats.ks_2samp(reference, window)
    return float(result.statistic), float(result.pvalue)


def _homogeneity(baseline_counts: np.ndarray, predicted: np.ndarray) -> tuple[float, float]:
    window_counts = np.bincount(predicted.astype(np.int64), minlength=len(baseline_counts))[: len(baseline_counts)]
    table = np.stack([baseline_counts, window_counts])
    table = table[:, table.sum(axis=0) > 0]  # classes neither sample predicts carry no information
    if table.shape[1] < 2:
        return 0.0, 1.0
    result = stats.chi2_contingency(table, correction=False)
    return float(result.statistic), float(result.pvalue)


def mmd_test(
    reference: np.ndarray, window: np.ndarray, *, permutations: int, rng: np.random.Generator
) -> tuple[float, float]:
    """(squared MMD, permutation p-value) of two samples of vectors."""
    pooled = np.vstack([reference, window])
    squares = np.sum(pooled**2, axis=1)
    distances = np.maximum(squares[:, None] + squares[None, :] - 2 * pooled @ pooled.T, 0.0)
    within_reference = distances[: len(reference), : len(reference)]
    bandwidth = np.median(within_reference[within_reference > 0]) if np.any(within_reference > 0) else 1.0
    kernel = np.exp(-distances / bandwidth)
    # Each row of `weights` is one labelling: +1/n on one sample's rows, -1/m on the other's, so
    # that w K w' is the (biased) squared MMD of that split. Row 0 is the real one.
    total, n = len(pooled), len(reference)
    labels = np.zeros((permutations + 1, total), dtype=bool)
    labels[0, :n] = True
    for row in range(1, permutations + 1):
        labels[row, rng.permutation(total)[:n]] = True
    weights = np.where(labels, 1.0 / n, -1.0 / (total - n))
    statistics = np.einsum("ij,ij->i", weights @ kernel, weights)
    p_value = (1 + np.sum(statistics[1:] >= statistics[0])) / (permutations + 1)
    return float(statistics[0]), float(p_value)
