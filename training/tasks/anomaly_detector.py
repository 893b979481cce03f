"""Anomaly detector: a feature vector [n_features] in; its reconstruction error, the threshold above
which it is anomalous and its embedding out. Classes are (normal, anomaly): label 1 is the anomaly."""

from __future__ import annotations

import numpy as np

from .base import Judgement, Task, evaluation_module


class AnomalyDetector(Task):
    name = "anomaly_detector"
    summary = "a feature vector in, its reconstruction error against a threshold out"
    target = "label"
    target_required = False
    outputs = ("reconstruction_error", "threshold", "embedding")
    request_form = "rows"
    answer_form = "anomaly"
    content_types = ("application/json", "text/csv")
    serving_fields = ("n_features", "encoding_dim", "threshold")
    plot = "reconstruction_error"
    prediction_kind = "scores"

    def train_shape_problem(self, input_shape, spec, knobs):
        if len(input_shape) != 1:
            return f"features must be a vector [n_features], got {list(input_shape)}"
        return None

    def evaluate(self, outputs, test, description, plot):
        evaluation = evaluation_module()
        import tensorflow as tf

        # The threshold the model itself answers with, which is what an endpoint flags by.
        threshold = float(outputs(tf.zeros([1, *description["input_shape"]]))["threshold"][0])
        metrics = evaluation.anomaly_detector(lambda features: outputs(features)["reconstruction_error"], test,
                                              threshold=threshold, plot=plot)
        return metrics, {"threshold": threshold}

    def judge(self, target, answer, class_names):
        truth = class_names[int(target)]
        flagged = class_names[1] if answer["is_anomaly"] else class_names[0]
        return Judgement(truth, f"{flagged} (error {answer['reconstruction_error']:.3g}, "
                                f"threshold {answer['threshold']:.3g})", flagged == truth)

    def drift_features(self, inputs, description):
        names = description.get("feature_names") or [f"feature {index + 1}" for index in range(inputs.shape[1])]
        return {name: inputs[:, index] for index, name in enumerate(names)}

    def drift_predictions(self, inputs, outputs, description):
        return np.asarray(outputs["reconstruction_error"])

    def drift_shifts(self):
        return {"rescaled": _every_third_feature_rescaled,
                "offset": lambda rows, rng: rows + 0.5 * rows.std(axis=0, keepdims=True)}


def _every_third_feature_rescaled(rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A third of the features in other units (times 1.5), the rest as before."""
    shifted = rows.copy()
    shifted[:, ::3] *= 1.5
    return shifted


TASK = AnomalyDetector()
