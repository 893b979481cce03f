"""Why an exported model decides as it does: the methods each task's `explain` draws on.

The Evaluate step (processing/evaluate.py) explains the very signature an endpoint serves, on a small
sample of the test channel, with three well-known methods:

- integrated gradients (Sundararajan, Taly and Yan, 2017), through TensorFlow's GradientTape on
  the loaded `serving_default` signature: no Keras model is rebuilt. The path integral uses
  Gauss-Legendre nodes, which need far fewer steps than a Riemann sum for the same accuracy, and
  every interpolated input of the sample goes through the model in one batch. Completeness (the
  attributions of an example sum to the change of its score from the baseline's) is checked,
  more nodes are taken while it is off by more than 5%, and it is reported as `completeness_error`.
- permutation importance: `sklearn.inspection.permutation_importance`;
- partial dependence: `sklearn.inspection.partial_dependence`.

Both sklearn functions take the signature wrapped as `SignatureRegressor`, a fitted sklearn
regressor whose `predict` calls the signature. Everything here runs in SageMaker's TensorFlow 2.19
training image as it is: TensorFlow, numpy and matplotlib are in it, and scikit-learn and scipy
come with the `shap` package that image installs (aws/deep-learning-containers,
`tensorflow/training/docker/2.19/py3/Dockerfile.cpu`), so a network-isolated job needs nothing
installed at run time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.inspection import partial_dependence, permutation_importance

# Examples read from the test channel for every method; classifiers explain a few per class, and
# shuffle features between at most PERMUTED_PER_CLASS per class.
SAMPLE_LIMIT = 512
EXAMPLES_PER_CLASS = 3
PERMUTED_PER_CLASS = 20
# Gauss-Legendre nodes along the path to start with: completeness within 4% on every network of
# this project (within 0.5% with 8 for the CNN, the LSTM and the autoencoder, but not for the GRU
# or VGG16; the time goes into building the gradient of the loaded signature, once). Where that is
# not enough the nodes double until completeness is within COMPLETENESS_TOLERANCE, as Sundararajan
# et al. advise, up to IG_MAX_STEPS: a barely trained VGG16 head (score changes of 0.01-0.09, the
# tests' transfer model) needed 128 on an AMD EPYC (error 0.088 at 64, 0.042 at 128, 0.020 at 256).
IG_STEPS = 16
IG_MAX_STEPS = 128
COMPLETENESS_TOLERANCE = 0.05
# Rows (interpolated inputs) per gradient call: bounds memory, keeps the call count low.
IG_BATCH = 2048
PERMUTATION_REPEATS = 3
SEED = 0
TOP = 5

Output = Callable[[tf.Tensor], tf.Tensor]
"""A batch of inputs -> one output of the signature, e.g. class probabilities [batch, classes]."""


@dataclass(frozen=True)
class Sample:
    """The first examples of the test channel, as arrays."""

    inputs: np.ndarray
    targets: np.ndarray


def first_examples(test: tf.data.Dataset, limit: int = SAMPLE_LIMIT) -> Sample:
    """Up to `limit` examples from the start of the test stream of (inputs, targets) batches."""
    inputs, targets, count = [], [], 0
    for batch_inputs, batch_targets in test:
        inputs.append(batch_inputs.numpy())
        targets.append(batch_targets.numpy())
        count += len(inputs[-1])
        if count >= limit:
            break
    return Sample(np.concatenate(inputs)[:limit], np.concatenate(targets)[:limit])


def per_class(labels: np.ndarray, classes: int, count: int = EXAMPLES_PER_CLASS) -> np.ndarray:
    """Indices of the first `count` examples of each class, class by class."""
    return np.concatenate([np.flatnonzero(labels == label)[:count] for label in range(classes)]).astype(np.int64)


def batched(output: Output, inputs: np.ndarray, batch_size: int = IG_BATCH) -> np.ndarray:
    """`output` over `inputs` in batches, as a numpy array."""
    return np.concatenate(
        [
            np.asarray(output(tf.constant(inputs[start : start + batch_size])))
            for start in range(0, len(inputs), batch_size)
        ]
    )


# ---------------------------------------------------------------------------------- integrated gradients


@dataclass(frozen=True)
class Attributions:
    values: np.ndarray
    """Same shape as the inputs: each input value's share of the change of the score."""
    weights: np.ndarray
    """What was explained of each example's output (e.g. the one-hot row of its predicted class)."""
    scores: np.ndarray
    """The explained score of each example [n]."""
    baseline_scores: np.ndarray
    completeness_error: float
    """mean |sum of attributions - (score - baseline score)| / mean |score - baseline score|."""
    steps: int
    """Gauss-Legendre nodes used along the path."""


def integrated_gradients(
    output: Output, inputs: np.ndarray, baseline: np.ndarray, weights: np.ndarray, *, steps: int = IG_STEPS
) -> Attributions:
    """Integrated gradients of each example's score, `sum(output(x) * weights)` over the output's
    last axis (a one-hot row picks a class; ones sum the outputs), from `baseline` (broadcast to
    the inputs) to the example; with more nodes while completeness is off by more than the tolerance."""
    inputs = inputs.astype(np.float32)
    baseline = np.broadcast_to(baseline, inputs.shape).astype(np.float32)
    weights = weights.astype(np.float32)
    gradient = _gradient_function(output, inputs.shape[1:], weights.shape[1:])

    def score(batch: np.ndarray) -> np.ndarray:
        return np.sum(batched(output, batch).reshape(weights.shape) * weights, axis=-1)

    scores, baseline_scores = score(inputs), score(baseline)
    while True:
        values = _path_integral(gradient, inputs, baseline, weights, steps)
        summed = values.reshape(len(values), -1).sum(axis=1)
        change = scores - baseline_scores
        error = float(np.mean(np.abs(summed - change)) / max(float(np.mean(np.abs(change))), 1e-12))
        if error <= COMPLETENESS_TOLERANCE or steps >= IG_MAX_STEPS:
            return Attributions(values, weights, scores, baseline_scores, error, steps)
        steps *= 2


def _path_integral(
    gradient: Callable[[tf.Tensor, tf.Tensor], tf.Tensor],
    inputs: np.ndarray,
    baseline: np.ndarray,
    weights: np.ndarray,
    steps: int,
) -> np.ndarray:
    """(input - baseline) times the mean gradient along the straight path, by Gauss-Legendre. A few
    examples at a time, every node of each in one gradient call of about IG_BATCH rows: memory stays
    bounded however many examples are explained (a whole test channel of texts, say)."""
    nodes, node_weights = np.polynomial.legendre.leggauss(steps)
    alphas, node_weights = (nodes + 1) / 2, node_weights / 2  # from [-1, 1] to [0, 1]
    per_call = max(1, IG_BATCH // steps)
    values = np.empty_like(inputs)
    for start in range(0, len(inputs), per_call):
        chunk = slice(start, start + per_call)
        difference = inputs[chunk] - baseline[chunk]
        # Each example repeated at every node, node-major: row k * m + i is example i at node k.
        path = baseline[chunk][None] + alphas.reshape((-1,) + (1,) * inputs.ndim) * difference[None]
        path = path.reshape((-1, *inputs.shape[1:])).astype(np.float32)
        path_weights = np.tile(weights[chunk], (steps,) + (1,) * (weights.ndim - 1))
        gradients = gradient(tf.constant(path), tf.constant(path_weights)).numpy()
        gradients = gradients.reshape((steps, len(difference), *inputs.shape[1:]))
        values[chunk] = difference * np.tensordot(node_weights.astype(np.float32), gradients, axes=1)
    return values


def shares_of_change(attributions: Attributions) -> np.ndarray:
    """[example, input value]: each value's share of its example's score change from the baseline
    (a row sums to 1, up to the completeness error)."""
    change = attributions.scores - attributions.baseline_scores
    flat = attributions.values.reshape(len(change), -1)
    return flat / np.where(np.abs(change) > 1e-12, change, 1e-12)[:, None]


def _gradient_function(
    output: Output, input_shape: tuple[int, ...], weight_shape: tuple[int, ...]
) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    # A fixed signature: one trace, whatever the number of rows of each call.
    @tf.function(
        input_signature=[
            tf.TensorSpec((None, *input_shape), tf.float32),
            tf.TensorSpec((None, *weight_shape), tf.float32),
        ],
        autograph=False,
    )
    def gradient(inputs: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            values = tf.reshape(output(inputs), tf.shape(weights))
            score = tf.reduce_sum(values * weights)
        return tape.gradient(score, inputs)

    return gradient


def mean_frame_sequences(sequences: np.ndarray) -> np.ndarray:
    """Each zero-padded sequence with its real frames replaced by the mean real frame of them all:
    same lengths, no content."""
    real = np.any(sequences != 0, axis=-1)
    return np.where(real[..., None], sequences[real].mean(axis=0), 0.0).astype(np.float32)


def one_hot(indices: np.ndarray, depth: int) -> np.ndarray:
    return np.eye(depth, dtype=np.float32)[indices]


# ---------------------------------------------------------------------------------- sklearn.inspection


class SignatureRegressor(RegressorMixin, BaseEstimator):
    """The exported model as a fitted sklearn regressor, for `sklearn.inspection`.

    `predict(X)` is `output(assemble(X))` in batches: `assemble` turns sklearn's 2-D table into the
    signature's inputs (the identity for tabular features; see `SequenceFeatures` for sequences).
    The model was fitted by the training job, so `fit` refuses: sklearn.inspection only predicts."""

    def __init__(
        self, output: Output | None = None, assemble: Callable[[np.ndarray], np.ndarray] | None = None
    ) -> None:
        self.output = output
        self.assemble = assemble

    def fit(self, X: Any, y: Any = None) -> SignatureRegressor:
        raise NotImplementedError("SignatureRegressor wraps a model the training job fitted; it cannot refit it")

    def __sklearn_is_fitted__(self) -> bool:
        return True

    def predict(self, X: Any) -> np.ndarray:
        assert self.output is not None
        table = np.asarray(X)
        return batched(self.output, self.assemble(table) if self.assemble else table.astype(np.float32))


class SequenceFeatures:
    """A sequence model's input features as the columns of a 2-D table, so that sklearn can permute
    a feature's whole trajectory at once.

    Cell (i, j) of the table names the example whose feature j example i gets: the identity table
    `identity()` gives the sequences as they are, and sklearn, shuffling column j, hands every
    example the trajectory of feature j of another one. `keep_padding` (sequence classifiers)
    keeps each example's own padding frames all zero, so that its length stays its own."""

    def __init__(self, sequences: np.ndarray, *, keep_padding: bool = False) -> None:
        self.sequences = sequences.astype(np.float32)
        self.real = np.any(self.sequences != 0, axis=-1, keepdims=True) if keep_padding else None

    def identity(self) -> np.ndarray:
        examples, features = len(self.sequences), self.sequences.shape[-1]
        return np.repeat(np.arange(examples)[:, None], features, axis=1)

    def __call__(self, table: np.ndarray) -> np.ndarray:
        donors = table.astype(np.int64)
        features = np.arange(self.sequences.shape[-1])
        # [example, time, feature] <- sequences[donor of (example, feature), time, feature]
        assembled = self.sequences[
            donors[:, None, :], np.arange(self.sequences.shape[1])[None, :, None], features[None, None, :]
        ]
        return assembled * self.real[np.arange(len(donors))] if self.real is not None else assembled


def permutation_ranking(
    estimator: SignatureRegressor, table: np.ndarray, truth: np.ndarray, scoring: Any, names: Sequence[str]
) -> list[dict[str, Any]]:
    """Permutation importance of every column (sklearn), largest first: the mean drop of the score
    when the column is shuffled, and its standard deviation over the repeats."""
    found = permutation_importance(
        estimator, table, truth, scoring=scoring, n_repeats=PERMUTATION_REPEATS, random_state=SEED
    )
    return sorted(
        (
            {"name": name, "value": float(mean), "std": float(std)}
            for name, mean, std in zip(names, found.importances_mean, found.importances_std, strict=True)
        ),
        key=lambda entry: -entry["value"],
    )


def true_class_log_likelihood(estimator: SignatureRegressor, table: np.ndarray, labels: np.ndarray) -> float:
    """A scorer (sklearn's callable form) for class probabilities: the mean log-probability of the
    true class, smoother on a small sample than accuracy."""
    probabilities = estimator.predict(table)
    chosen = probabilities[np.arange(len(labels)), labels.astype(np.int64)]
    return float(np.mean(np.log(np.clip(chosen, 1e-7, 1.0))))


def partial_dependences(
    estimator: SignatureRegressor,
    table: np.ndarray,
    columns: Sequence[int],
    names: Sequence[str],
    grid_resolution: int = 20,
) -> list[dict[str, Any]]:
    """The average prediction with one column set to each value of a grid over its 5th-95th
    percentiles (sklearn's partial_dependence, brute force through the signature)."""
    curves = []
    for column in columns:
        found = partial_dependence(
            estimator, table, [column], grid_resolution=grid_resolution, kind="average", method="brute"
        )
        curves.append(
            {
                "name": names[column],
                "grid": [float(v) for v in found["grid_values"][0]],
                "average": [float(v) for v in np.ravel(found["average"][0])],
            }
        )
    return curves


# ---------------------------------------------------------------------------------- summaries


def ranking(values: np.ndarray, names: Sequence[str]) -> list[dict[str, Any]]:
    """(name, value) pairs, largest value first."""
    return sorted(
        ({"name": name, "value": float(value)} for name, value in zip(names, values, strict=True)),
        key=lambda entry: -entry["value"],
    )


def summary(title: str, ranked: Sequence[dict[str, Any]], top: int = TOP) -> dict[str, Any]:
    """One line of the registry's explanation summary: a title and its top entries."""
    return {"title": title, "top": [{"name": entry["name"], "value": entry["value"]} for entry in ranked[:top]]}


def time_step_names(window: int) -> list[str]:
    """`t-24` ... `t-1`: how far before the forecast each step of a window lies."""
    return [f"t-{window - step}" for step in range(window)]
