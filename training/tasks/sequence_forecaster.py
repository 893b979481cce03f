"""Sequence forecaster: a window of the past [window, n_features] in, the next `horizon` values of
the target feature out, judged against the seasonal-naive forecast."""

from __future__ import annotations

from .base import Judgement, Task, evaluation_module, values_text


class SequenceForecaster(Task):
    name = "sequence_forecaster"
    summary = "a window of a series in, its next values out"
    target = "target"
    outputs = ("forecast",)
    request_form = "window"
    answer_form = "forecast"
    content_types = ("application/json", "text/csv")
    serving_fields = ("window", "n_features", "horizon", "target_index", "season")
    plot = "forecast_vs_actual"

    def train_shape_problem(self, input_shape, spec, knobs):
        target = spec.features[self.target].shape if self.target in spec.features else ()
        if len(input_shape) != 2 or len(target) != 1:
            return (f"history must be [window, n_features] and target [horizon], "
                    f"got {list(input_shape)} and {list(target)}")
        if input_shape[0] != knobs.window:
            return f"history holds windows of {input_shape[0]} steps but hyperparameter window is {knobs.window}"
        if not 0 <= int(spec.metadata.get("target_index", 0)) < input_shape[1]:
            return f"metadata target_index {spec.metadata.get('target_index')} is not a feature index"
        return None

    def test_spec_problem(self, spec, description):
        if spec.shape(self.target) != (description["horizon"],):
            return (f"{self.target!r} has shape {list(spec.shape(self.target))}, but the model forecasts "
                    f"{description['horizon']} steps")
        return None

    def evaluate(self, outputs, test, description, plot):
        season = int(description["season"])
        metrics = evaluation_module().forecaster(lambda history: outputs(history)["forecast"], test, season=season,
                                                 target_index=int(description["target_index"]), plot=plot)
        return metrics, {"baseline": f"seasonal naive, season {season}"}

    def judge(self, target, answer, class_names):
        forecast = [float(value) for value in answer["forecast"]]
        error = sum(abs(f - t) for f, t in zip(forecast, target)) / len(forecast)
        return Judgement(values_text(target), values_text(forecast), None, error)


TASK = SequenceForecaster()
