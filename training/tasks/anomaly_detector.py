"""Anomaly detector: a feature vector [n_features] in; its reconstruction error, the threshold above
which it is anomalous and its embedding out. Classes are (normal, anomaly): label 1 is the anomaly."""

from __future__ import annotations

import json

import numpy as np

from .base import (
    Judgement,
    SampleRequest,
    Task,
    TinyModel,
    explanations_module,
    feature_names,
    plots_module,
    scoring_module,
    tiny_sizes,
)

IMPORTANCE_PLOT = "explanation_importance"
DEPENDENCE_PLOT = "explanation_partial_dependence"
# Partial dependence is drawn for this many of the most important features.
DEPENDENCE_FEATURES = 3
# Examples explained when none is above the threshold: the highest errors.
HIGHEST_ERRORS = 10
# The tiny test model's sizes (`tiny_model`).
TINY_FEATURES, TINY_ENCODING, TINY_THRESHOLD = 30, 4, 0.75


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
    quick_slice = 80
    plot = "reconstruction_error"
    prediction_kind = "scores"

    def train_shape_problem(self, input_shape, spec, knobs):
        if len(input_shape) != 1:
            return f"features must be a vector [n_features], got {list(input_shape)}"
        return None

    def evaluate(self, outputs, test, description, plot):
        evaluation = scoring_module()
        threshold = _threshold(outputs, description)
        metrics = evaluation.anomaly_detector(
            lambda features: outputs(features)["reconstruction_error"], test, threshold=threshold, plot=plot
        )
        return metrics, {"threshold": threshold}

    def explain(self, outputs, test, description, output_dir):
        """Each feature's share of the reconstruction error of the flagged test examples (integrated
        gradients from the mean normal example: they sum to the error above that example's), the
        permutation importance of each feature on the anomaly score, and partial dependence plots of
        the score for the most important features."""
        explanations, plots = explanations_module(), plots_module()
        threshold = _threshold(outputs, description)
        sample = explanations.first_examples(test)
        names = feature_names(description, sample.inputs.shape[1])

        def error(features):
            return outputs(features)["reconstruction_error"]

        errors = explanations.batched(error, sample.inputs)
        flagged = errors > threshold
        explained, attributions = self.integrated_gradients(outputs, sample, description)
        shares = explanations.ranking(explanations.shares_of_change(attributions).mean(axis=0), names)
        scorer = explanations.SignatureRegressor(error)
        # The score's own values on the sample are the truth: importance is how far shuffling a
        # feature moves the anomaly score (mean absolute change), with or without labels.
        importance = explanations.permutation_ranking(scorer, sample.inputs, errors, "neg_mean_absolute_error", names)
        columns = [names.index(entry["name"]) for entry in importance[:DEPENDENCE_FEATURES]]
        dependence = explanations.partial_dependences(scorer, sample.inputs, columns, names)
        plots.feature_bars(
            [
                (f"share of the reconstruction error ({len(explained)} flagged)", shares),
                ("permutation importance on the anomaly score", importance),
            ],
            output_dir / f"{IMPORTANCE_PLOT}.png",
        )
        plots.partial_dependence_curves(
            dependence, threshold, "reconstruction error", output_dir / f"{DEPENDENCE_PLOT}.png"
        )
        return {
            "summary": [
                explanations.summary("features by share of the reconstruction error of flagged examples", shares),
                explanations.summary(
                    "features by permutation importance on the anomaly score (mean change of the reconstruction error)",
                    importance,
                ),
            ],
            "methods": {
                "integrated_gradients": {
                    "explained": "reconstruction error"
                    + ("" if flagged.any() else f" of the {len(explained)} highest errors (none flagged)"),
                    "baseline": "the mean normal (label 0) example of the test sample",
                    "steps": attributions.steps,
                    "examples": len(explained),
                    "completeness_error": attributions.completeness_error,
                },
                "permutation_importance": {
                    "score": "negative mean absolute change of the reconstruction error",
                    "repeats": explanations.PERMUTATION_REPEATS,
                    "examples": len(sample.inputs),
                },
                "partial_dependence": {
                    "features": [names[column] for column in columns],
                    "grid": "5th-95th percentile of the test sample, 20 values",
                    "examples": len(sample.inputs),
                },
            },
            "details": {
                "threshold": threshold,
                "flagged": int(flagged.sum()),
                "examples": len(sample.inputs),
                "error_shares": shares,
                "permutation_importance": importance,
                "partial_dependence": dependence,
            },
            "plots": [f"{IMPORTANCE_PLOT}.png", f"{DEPENDENCE_PLOT}.png"],
        }

    def integrated_gradients(self, outputs, sample, description, examples=None):
        """Of the reconstruction error of the flagged examples (the highest errors if none is), from
        the sample's mean normal (label 0) example, which the model should reconstruct well."""
        explanations = explanations_module()

        def error(features):
            return outputs(features)["reconstruction_error"]

        if examples is None:
            errors = explanations.batched(error, sample.inputs)
            flagged = errors > _threshold(outputs, description)
            examples = flagged.nonzero()[0] if flagged.any() else errors.argsort()[::-1][:HIGHEST_ERRORS]
        normal = sample.inputs[sample.targets == 0]
        baseline = (normal if len(normal) else sample.inputs).mean(axis=0)
        return examples, explanations.integrated_gradients(
            error, sample.inputs[examples], baseline, explanations.one_hot([0] * len(examples), 1)
        )

    def judge(self, target, answer, class_names):
        truth = class_names[int(target)]
        flagged = class_names[1] if answer["is_anomaly"] else class_names[0]
        return Judgement(
            truth,
            f"{flagged} (error {answer['reconstruction_error']:.3g}, threshold {answer['threshold']:.3g})",
            flagged == truth,
        )

    def drift_features(self, inputs, description):
        names = description.get("feature_names") or [f"feature {index + 1}" for index in range(inputs.shape[1])]
        return {name: inputs[:, index] for index, name in enumerate(names)}

    def drift_predictions(self, inputs, outputs, description):
        return np.asarray(outputs["reconstruction_error"])

    def drift_shifts(self):
        return {
            "rescaled": _every_third_feature_rescaled,
            "offset": lambda rows, rng: rows + 0.5 * rows.std(axis=0, keepdims=True),
        }

    def tiny_model(self, seed, **sizes):
        import keras
        import tensorflow as tf

        size = tiny_sizes(sizes, n_features=TINY_FEATURES, encoding_dim=TINY_ENCODING, threshold=TINY_THRESHOLD)
        n_features, encoding_dim, threshold = size.n_features, size.encoding_dim, size.threshold

        keras.utils.set_random_seed(seed)
        features = keras.Input((n_features,))
        code = keras.layers.Dense(encoding_dim, activation="relu")(features)
        model = keras.Model(features, [keras.layers.Dense(n_features)(code), code])

        def serve(batch):
            reconstructed, embedding = model(batch)
            error = tf.reduce_mean(tf.square(batch - reconstructed), axis=-1)
            limit = tf.fill(tf.shape(error), tf.constant(threshold, tf.float32))
            return {"reconstruction_error": error, "threshold": limit, "embedding": embedding}

        fields = {"n_features": n_features, "encoding_dim": encoding_dim, "threshold": threshold}
        return TinyModel(serve, (model,), (n_features,), "float32", fields)

    def sample_inputs(self, description, rng, rows):
        return rng.uniform(0, 2, (rows, *description["input_shape"])).astype(np.float32)

    def sample_request(self, description, rng):
        """JSON {"rows": [...]} of two rows."""
        rows = self.sample_inputs(description, rng, 2)
        return SampleRequest(json.dumps({"rows": rows.tolist()}).encode(), "application/json", rows)


def _every_third_feature_rescaled(rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A third of the features in other units (times 1.5), the rest as before."""
    shifted = rows.copy()
    shifted[:, ::3] *= 1.5
    return shifted


def _threshold(outputs, description):
    """The threshold the model itself answers with, which is what an endpoint flags by."""
    import tensorflow as tf

    return float(outputs(tf.zeros([1, *description["input_shape"]]))["threshold"][0])


TASK = AnomalyDetector()
