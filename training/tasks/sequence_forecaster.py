"""Sequence forecaster: a window of the past [window, n_features] in, the next `horizon` values of
the target feature out, judged against the seasonal-naive forecast."""

from __future__ import annotations

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
    values_text,
)

ATTRIBUTIONS_PLOT = "explanation_attributions"
# The tiny test model's sizes (`tiny_model`): monthly values, in the units of the CO2 series (ppm).
TINY_WINDOW, TINY_HORIZON, TINY_SEASON, TINY_LEVEL = 24, 3, 12, 340.0


class SequenceForecaster(Task):
    name = "sequence_forecaster"
    summary = "a window of a series in, its next values out"
    target = "target"
    outputs = ("forecast",)
    request_form = "window"
    answer_form = "forecast"
    content_types = ("application/json", "text/csv")
    serving_fields = ("window", "n_features", "horizon", "target_index", "season")
    quick_slice = 96
    plot = "forecast_vs_actual"
    prediction_kind = "scores"

    def train_shape_problem(self, input_shape, spec, knobs):
        target = spec.features[self.target].shape if self.target in spec.features else ()
        if len(input_shape) != 2 or len(target) != 1:
            return (
                f"history must be [window, n_features] and target [horizon], got {list(input_shape)} and {list(target)}"
            )
        if input_shape[0] != knobs.window:
            return f"history holds windows of {input_shape[0]} steps but hyperparameter window is {knobs.window}"
        if not 0 <= int(spec.metadata.get("target_index", 0)) < input_shape[1]:
            return f"metadata target_index {spec.metadata.get('target_index')} is not a feature index"
        return None

    def test_spec_problem(self, spec, description):
        if spec.shape(self.target) != (description["horizon"],):
            return (
                f"{self.target!r} has shape {list(spec.shape(self.target))}, but the model forecasts "
                f"{description['horizon']} steps"
            )
        return None

    def evaluate(self, outputs, test, description, plot):
        season = int(description["season"])
        metrics = scoring_module().forecaster(
            lambda history: outputs(history)["forecast"],
            test,
            season=season,
            target_index=int(description["target_index"]),
            plot=plot,
        )
        return metrics, {"baseline": f"seasonal naive, season {season}"}

    def explain(self, outputs, test, description, output_dir):
        """Integrated gradients of the next value per time step and feature, from the test sample's
        mean window; the permutation importance of each feature, its whole window shuffled between
        test windows, on the test MAE."""
        explanations = explanations_module()
        sample = explanations.first_examples(test)
        window, count = sample.inputs.shape[1:]
        names, steps = feature_names(description, count), explanations.time_step_names(window)

        def forecast(history):
            return outputs(history)["forecast"]

        _, attributions = self.integrated_gradients(outputs, sample, description)
        mean_abs = abs(attributions.values).mean(axis=0)  # [time step, feature]
        windows = explanations.SequenceFeatures(sample.inputs)
        importance = explanations.permutation_ranking(
            explanations.SignatureRegressor(forecast, windows),
            windows.identity(),
            sample.targets,
            "neg_mean_absolute_error",
            names,
        )
        plots_module().sequence_attributions(
            mean_abs, steps, names, importance, "the next value", output_dir / f"{ATTRIBUTIONS_PLOT}.png"
        )
        per_step = explanations.ranking(mean_abs.sum(axis=1), steps)
        return {
            "summary": [
                explanations.summary("time steps by mean |integrated gradients| of the next value", per_step),
                explanations.summary("features by permutation importance (increase of the test MAE)", importance),
            ],
            "methods": {
                "integrated_gradients": {
                    "explained": "the forecast's next value",
                    "baseline": "the mean window of the test sample",
                    "steps": attributions.steps,
                    "examples": len(sample.inputs),
                    "completeness_error": attributions.completeness_error,
                },
                "permutation_importance": {
                    "score": "negative mean absolute error of the forecast",
                    "shuffled": "each feature's whole window between test windows",
                    "repeats": explanations.PERMUTATION_REPEATS,
                    "examples": len(sample.inputs),
                },
            },
            "details": {
                "per_time_step": per_step,
                "per_feature": explanations.ranking(mean_abs.sum(axis=0), names),
                "permutation_importance": importance,
            },
            "plots": [f"{ATTRIBUTIONS_PLOT}.png"],
        }

    def integrated_gradients(self, outputs, sample, description, examples=None):
        """Of the next value, from the sample's mean window, for every window of the sample."""
        explanations = explanations_module()
        picks = range(len(sample.inputs)) if examples is None else examples
        inputs = sample.inputs[list(picks)]
        next_value = explanations.one_hot([0] * len(inputs), int(description["horizon"]))
        return picks, explanations.integrated_gradients(
            lambda history: outputs(history)["forecast"], inputs, sample.inputs.mean(axis=0), next_value
        )

    def judge(self, target, answer, class_names):
        forecast = [float(value) for value in answer["forecast"]]
        error = sum(abs(f - t) for f, t in zip(forecast, target, strict=True)) / len(forecast)
        return Judgement(values_text(target), values_text(forecast), None, error)

    # A trending series leaves its training range while the model, which sees each window
    # relative to its last value and predicts the change from it, does not: drift is measured
    # on what the model sees, not on the level, so a new level alone is not drift.

    def drift_features(self, inputs, description):
        """Per window and feature: how far its values lie from its last value on average, and
        the size of its last step. Both change from one window to the next (with the season's
        phase), so that overlapping windows of one stretch of series still make a fair sample;
        a summary of the whole window (its spread, say) is nearly the same for neighbouring
        windows, and tests that count those as independent see drift that is not there. Sizes,
        not signed values: a change of scale moves them, where signed values spread both ways."""
        names = description.get("feature_names") or [f"feature {index + 1}" for index in range(inputs.shape[-1])]
        features = {}
        for index, name in enumerate(names):
            series = inputs[:, :, index]
            features[f"{name} mean distance from last"] = np.abs(series - series[:, -1:]).mean(axis=1)
            features[f"{name} last step size"] = np.abs(series[:, -1] - series[:, -2])
        return features

    def drift_predictions(self, inputs, outputs, description):
        """The forecast change: the first forecast step minus the last observed target value."""
        target = int(description["target_index"])
        return np.asarray(outputs["forecast"])[:, 0] - inputs[:, -1, target]

    def drift_shifts(self):
        return {"level step": _level_step, "amplified": _amplified}

    def tiny_model(self, seed, **sizes):
        import keras

        size = tiny_sizes(sizes, window=TINY_WINDOW, horizon=TINY_HORIZON)
        window, horizon = size.window, size.horizon

        keras.utils.set_random_seed(seed)
        history = keras.Input((window, 1))
        # Scaled inside, as the real forecaster does: requests are in the series' own units.
        features = keras.layers.LSTM(4)(keras.layers.Rescaling(1 / TINY_LEVEL, offset=-0.9)(history))
        model = keras.Model(history, keras.layers.Dense(horizon)(features))
        fields = {"window": window, "n_features": 1, "horizon": horizon, "target_index": 0, "season": TINY_SEASON}
        return TinyModel(lambda batch: {"forecast": model(batch)}, (model,), (window, 1), "float32", fields)

    def sample_inputs(self, description, rng, rows):
        return (TINY_LEVEL + rng.normal(size=(rows, *description["input_shape"]))).astype(np.float32)

    def sample_request(self, description, rng):
        """CSV lines of a series longer than the window: the model reads its last `window` rows."""
        window, n_features = int(description["window"]), int(description["n_features"])
        series = (TINY_LEVEL + rng.normal(0, 2, (window + 6, n_features))).astype(np.float32)
        body = "\n".join(",".join(map(repr, row)) for row in series.tolist()).encode()
        return SampleRequest(body, "text/csv", series[np.newaxis, -window:])


def _level_step(history: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The last quarter of each window raised by the window's own standard deviation (a sensor
    recalibrated mid-window)."""
    shifted = history.copy()
    quarter = max(history.shape[1] // 4, 1)
    shifted[:, -quarter:, :] += history.std(axis=1, keepdims=True)
    return shifted


def _amplified(history: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each window's swings around its mean half as large again."""
    mean = history.mean(axis=1, keepdims=True)
    return mean + 1.5 * (history - mean)


TASK = SequenceForecaster()
