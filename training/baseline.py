"""The drift baseline of a model: what its inputs, embeddings and predictions look like on data it
was not trained on, written by the pipeline's Evaluate step and read by the drift monitor.

A model's inputs are summarised as its task says (training/tasks/): per-feature values where
single values mean something (tabular rows, sequences, windows), those the model computes itself
(its signature `drift_features`, if it has one: a text model's token count and out-of-vocabulary
rate), the model's own embedding (the
signature `embedding`, the layer before the output: see export.py), and one prediction per
example (a class index or a score). The baseline keeps a random sample of those summaries from
the validation channel (the model was selected on it, never fitted to it, so its embeddings and
confidence there are what unseen traffic gives), plus the class counts of every example. One
file, `baseline.json`: the model it belongs to, the channel, the feature names, the embedding
size, the prediction kind and class counts, and the reference sample (`reference`: `features`
[rows, features], `embedding` [rows, size], `predictions` [rows], each float32 as base64, exact
and a quarter of the size of decimal text).

Registered with the model package as its DriftCheckBaselines (ModelDataQuality statistics).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

import export
import networks
import records
from drift import FORMAT, Summaries

BASELINE_FILE = "baseline.json"
CHANNEL = "validation"
# Reference rows kept: enough for two-sample tests against windows of a few hundred requests,
# small enough that the monitor's permutation test stays well under a second.
REFERENCE_ROWS = 500
SEED = 0


class Summariser:
    """Turns batches of model inputs into `Summaries` with the model's own signatures."""

    def __init__(self, network: networks.Network, description: dict[str, Any], signatures: Mapping[str, Any]) -> None:
        self.network = network
        self.description = description
        self._serve = signatures["serving_default"]
        self._embed = signatures.get(export.EMBEDDING_SIGNATURE)
        self._model_features = signatures.get(export.DRIFT_FEATURES_SIGNATURE)

    def feature_names(self, example: np.ndarray) -> list[str]:
        return list(self._features(example[:1]))

    def _features(self, inputs: np.ndarray) -> dict[str, np.ndarray]:
        """The task's drift features, then those of the model's `drift_features` signature, by name."""
        features = dict(self.network.task.drift_features(inputs, self.description))
        if self._model_features is not None:
            computed = self._model_features(**{self.network.input_name: self._tensor(inputs)})
            features.update({name: computed[name].numpy() for name in sorted(computed)})
        return features

    def _tensor(self, inputs: np.ndarray) -> Any:
        import tensorflow as tf

        return tf.constant(inputs, dtype=self.description.get("input_dtype", "float32"))

    def __call__(self, inputs: np.ndarray) -> Summaries:
        tensor = self._tensor(inputs)
        outputs = {name: value.numpy() for name, value in self._serve(**{self.network.input_name: tensor}).items()}
        task = self.network.task
        features = self._features(inputs)
        columns = np.stack(list(features.values()), axis=1) if features else np.zeros((len(inputs), 0))
        embedding = None
        if self._embed is not None:
            embedding = self._embed(**{self.network.input_name: tensor})[export.EMBEDDING_OUTPUT].numpy()
        return Summaries(
            columns.astype(np.float64),
            None if embedding is None else embedding.astype(np.float64),
            np.asarray(task.drift_predictions(inputs, outputs, self.description), dtype=np.float64),
        )


def _encoded(array: np.ndarray) -> dict[str, Any]:
    values = np.ascontiguousarray(array, dtype="<f4")
    return {"shape": list(values.shape), "float32": base64.b64encode(values.tobytes()).decode("ascii")}


def write_baseline(
    network: networks.Network,
    description: dict[str, Any],
    signatures: Mapping[str, Any],
    channel_dir: Path,
    output_dir: Path,
    *,
    model_uri: str | None,
    batch_size: int = 256,
) -> dict[str, Any]:
    """Summarises the channel in `channel_dir` and writes baseline.json into `output_dir`."""
    spec = records.read_spec(channel_dir, CHANNEL)
    if network.input_name not in spec.features:
        raise records.DataError(
            f"channel {CHANNEL!r}: no feature {network.input_name!r} (has {', '.join(spec.features)})"
        )
    if list(spec.shape(network.input_name)) != list(description["input_shape"]):
        raise records.DataError(
            f"channel {CHANNEL!r}: {network.input_name!r} has shape "
            f"{list(spec.shape(network.input_name))}, but the model takes "
            f"{list(description['input_shape'])}"
        )
    summarise = Summariser(network, description, signatures)
    batches = records.dataset(
        channel_dir, spec, CHANNEL, inputs=network.input_name, targets=None, batch_size=batch_size
    )
    rng = np.random.default_rng(SEED)
    kept: Summaries | None = None
    kept_keys = np.zeros(0)
    feature_names: list[str] = []
    examples = 0
    class_counts = np.zeros(len(description.get("class_names", [])), dtype=np.int64)
    for batch in batches:
        inputs = batch.numpy()
        feature_names = feature_names or summarise.feature_names(inputs)
        summaries = summarise(inputs)
        examples += len(summaries)
        if network.task.prediction_kind == "classes":
            class_counts += np.bincount(summaries.predictions.astype(np.int64), minlength=len(class_counts))
        # A uniform sample of the whole channel in bounded memory: the rows with the smallest
        # random keys so far.
        keys = np.concatenate([kept_keys, rng.random(len(summaries))])
        joined = summaries if kept is None else Summaries.concatenate([kept, summaries])
        order = np.argsort(keys)[:REFERENCE_ROWS]
        kept, kept_keys = joined.take(order), keys[order]
    if kept is None:
        raise records.DataError(f"channel {CHANNEL!r}: no examples to draw a drift baseline from")
    arrays = {"features": kept.features, "predictions": kept.predictions}
    if kept.embedding is not None:
        arrays["embedding"] = kept.embedding
    document = {
        "format": FORMAT,
        "network": network.name,
        "task": network.task.name,
        "model_data_url": model_uri,
        "channel": CHANNEL,
        "examples": examples,
        "reference_examples": len(kept),
        "features": feature_names,
        "embedding_size": None if kept.embedding is None else kept.embedding.shape[1],
        "prediction_kind": network.task.prediction_kind,
        **(
            {"class_names": list(description["class_names"]), "class_counts": class_counts.tolist()}
            if network.task.prediction_kind == "classes"
            else {}
        ),
        "reference": {name: _encoded(values) for name, values in arrays.items()},
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / BASELINE_FILE).write_text(json.dumps(document, indent=2) + "\n")
    return document
