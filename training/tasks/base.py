"""What every task defines; the per-task modules beside this one fill it in."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

# The serving handler's vocabulary (inference/model_code/inference.py): how it reads a request
# that is not TF Serving JSON, and how it writes its answer. A task picks one of each.
REQUEST_FORMS = ("image", "window", "rows", "sequence", "text")
ANSWER_FORMS = ("classes", "forecast", "anomaly")

Outputs = Callable[[Any], dict[str, Any]]
"""A batch of inputs -> the serving signature's outputs. The Evaluate step's (processing/evaluate.py)
also has the model's other signatures as `.signatures`, which a task's explanations may read."""
Shift = Callable[[np.ndarray, np.random.Generator], np.ndarray]
"""A change of the inputs' distribution (a batch in, the shifted batch out), to show and measure drift."""
# What a task's predictions are, for drift: a class index per example, or a number per example.
PREDICTION_KINDS = ("classes", "scores")


@dataclass(frozen=True)
class TinyModel:
    """An untrained model of a task, a few weights large, as an entry point would export it: what
    tests of serving need of every network, made without data or training."""

    serve: Callable[[Any], dict[str, Any]]
    """A batch of inputs -> the task's outputs."""
    track: tuple[Any, ...]
    """What the export must track (the Keras model; a text model's vectorizer)."""
    input_shape: tuple[int, ...]
    input_dtype: str
    serving: dict[str, Any]
    """Its serving fields (`Task.serving_fields`)."""


@dataclass(frozen=True)
class SampleRequest:
    """A request in a form the serving handler reads, and the batch the handler makes of it."""

    body: bytes
    content_type: str
    inputs: np.ndarray


@dataclass(frozen=True)
class Judgement:
    """One endpoint answer beside the truth, in words a report can show."""

    truth: str
    prediction: str
    correct: bool | None
    """Whether the prediction is the truth; None where there is no right or wrong (forecasts)."""
    error: float | None = None
    """Mean absolute error (forecasts); None elsewhere."""


class Task:
    """A kind of task. Subclasses set the attributes and override what differs."""

    name: str
    summary: str
    target: str
    """The records feature holding the truth (the input feature is the network's `input_name`)."""
    target_required: bool = True
    """False where training does without it (an anomaly detector learns from normal data alone)."""
    outputs: tuple[str, ...]
    """The serving signature's outputs, in this order, all float32 with the batch first."""
    request_form: str
    answer_form: str
    content_types: tuple[str, ...]
    """Request content types the serving handler takes for this task."""
    serving_fields: tuple[str, ...]
    """What the entry point must give `Job.save_model(serving=...)` for serving.json."""
    input_dtypes: tuple[str, ...] = ("float32", "uint8", "int64")
    """The records dtypes (training/records.py) the input feature may have."""
    plot: str
    """The evaluation plot's file name, without `.png`."""
    reads_class_names: bool = False
    """Whether the records' class names are the model's (and must agree across channels)."""
    prediction_kind: str
    """What `drift_predictions` gives, one of PREDICTION_KINDS."""
    quick_slice: int
    """Examples per channel of a network's offline dataset that a quick training run of any of the
    task's networks learns something from: the tests' small data (`mlops.datasets.prepare` limit)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if getattr(cls, "prediction_kind", None) not in PREDICTION_KINDS:
            raise TypeError(f"{cls.__name__}.prediction_kind must be one of {PREDICTION_KINDS}")
        if getattr(cls, "request_form", None) not in REQUEST_FORMS:
            raise TypeError(f"{cls.__name__}.request_form must be one of {REQUEST_FORMS}")
        if getattr(cls, "answer_form", None) not in ANSWER_FORMS:
            raise TypeError(f"{cls.__name__}.answer_form must be one of {ANSWER_FORMS}")

    def __repr__(self) -> str:
        return f"<task {self.name}>"

    # ------------------------------------------------------------------ channels

    def train_shape_problem(self, input_shape: tuple[int, ...], spec: Any, knobs: SimpleNamespace) -> str | None:
        """What is wrong with the train channel's shapes for this task (`spec`: records.ChannelSpec)."""
        return None

    def test_spec_problem(self, spec: Any, description: dict[str, Any]) -> str | None:
        """What is wrong with a test channel for the model `description` (its serving.json)."""
        if self.reads_class_names and list(spec.class_names) != list(description["class_names"]):
            return f"class names {list(spec.class_names)} differ from the model's {description['class_names']}"
        return None

    # ------------------------------------------------------------------ serving

    def serving_description(self) -> dict[str, Any]:
        """The task's part of serving.json: what the handler needs to read requests and answers."""
        return {
            "task": self.name,
            "outputs": list(self.outputs),
            "request_form": self.request_form,
            "answer_form": self.answer_form,
            "content_types": list(self.content_types),
        }

    # ------------------------------------------------------------------ evaluation

    def evaluate(
        self, outputs: Outputs, test: Any, description: dict[str, Any], plot: Path
    ) -> tuple[dict[str, float], dict[str, Any]]:
        """(test metrics, details for evaluation.json) of the model `outputs` (a batch of inputs
        -> the signature's outputs) on the test stream of (inputs, targets); writes `plot`."""
        raise NotImplementedError

    # ------------------------------------------------------------------ explanations

    def explain(self, outputs: Outputs, test: Any, description: dict[str, Any], output_dir: Path) -> dict[str, Any]:
        """Why the model `outputs` decides as it does, on a sample of the test stream (see
        training/explanations.py): a JSON-able report with `summary` (a list of {"title", "top":
        [{"name", "value"}]}, what the registry shows), `methods`, the task's `details`, and the
        `plots` it writes into `output_dir`."""
        raise NotImplementedError

    def integrated_gradients(
        self, outputs: Outputs, sample: Any, description: dict[str, Any], examples: Any = None
    ) -> tuple[Any, Any]:
        """(indices into `sample`, their `explanations.Attributions`): the integrated gradients
        `explain` shows, of the examples the task picks, or of `examples` (indices) if given."""
        raise NotImplementedError

    # ------------------------------------------------------------------ drift

    def drift_features(self, inputs: np.ndarray, description: dict[str, Any]) -> dict[str, np.ndarray]:
        """How a batch of inputs is summarised feature by feature for per-feature drift tests: a
        name -> one value per example. Empty where single input values say little (pixels), and
        the model's embedding is what summarises the input."""
        return {}

    def drift_predictions(
        self, inputs: np.ndarray, outputs: dict[str, np.ndarray], description: dict[str, Any]
    ) -> np.ndarray:
        """One value per example of the signature's `outputs` for `inputs`: the predicted class
        index (`prediction_kind` "classes") or a score ("scores")."""
        raise NotImplementedError

    def drift_shifts(self) -> dict[str, Shift]:
        """Named changes of this task's inputs that a drift monitor must notice."""
        raise NotImplementedError

    # ------------------------------------------------------------------ test fixtures

    def tiny_model(self, seed: int, **sizes: Any) -> TinyModel:
        """A tiny untrained model of this task (Keras, imported here), for any of its networks;
        `sizes` override the task's own (its module's TINY_* constants)."""
        raise NotImplementedError

    def sample_inputs(self, description: dict[str, Any], rng: np.random.Generator, rows: int) -> np.ndarray:
        """`rows` inputs at random that the model of `description` (its serving.json) takes."""
        raise NotImplementedError

    def sample_request(self, description: dict[str, Any], rng: np.random.Generator) -> SampleRequest:
        """A request in the form a person would send (an image, CSV, text), not TF Serving's JSON."""
        raise NotImplementedError

    # ------------------------------------------------------------------ endpoint answers

    def judge(self, target: Any, answer: dict[str, Any], class_names: Sequence[str]) -> Judgement:
        """The handler's answer for one example beside the records' `target`."""
        raise NotImplementedError


class ClassProbabilities:
    """What every classifier task shares, mixed in before `Task`: a class label as the truth, the
    probability of each class out, a confusion matrix, answers judged by their label."""

    target = "label"
    outputs: tuple[str, ...] = ("probabilities",)
    answer_form = "classes"
    plot = "confusion_matrix"
    reads_class_names = True
    prediction_kind = "classes"

    @staticmethod
    def class_names_problem(spec: Any) -> str | None:
        if len(spec.class_names) < 2:
            return f"a classifier needs at least 2 class names, got {list(spec.class_names)}"
        return None

    def evaluate(
        self, outputs: Outputs, test: Any, description: dict[str, Any], plot: Path
    ) -> tuple[dict[str, float], dict[str, Any]]:
        metrics = scoring_module().classifier(
            lambda inputs: outputs(inputs)["probabilities"], test, description["class_names"], plot
        )
        return metrics, {}

    @staticmethod
    def predicted_class_attributions(
        outputs: Outputs, sample: Any, classes: int, baseline: Callable[[Any], Any], examples: Any = None
    ) -> tuple[Any, Any]:
        """(indices: `examples`, else a few examples of each class of the sample, the integrated
        gradients of each one's predicted class probability from `baseline(inputs)`)."""
        explanations = explanations_module()
        picks = explanations.per_class(sample.targets, classes) if examples is None else examples

        def probabilities(inputs: Any) -> Any:
            return outputs(inputs)["probabilities"]

        inputs = sample.inputs[picks]
        predicted = explanations.batched(probabilities, inputs).argmax(axis=1)
        return picks, explanations.integrated_gradients(
            probabilities, inputs, baseline(inputs), explanations.one_hot(predicted, classes)
        )

    def judge(self, target: Any, answer: dict[str, Any], class_names: Sequence[str]) -> Judgement:
        """A class label answer (`label`, `probabilities`) beside the true class index."""
        truth = class_names[int(target)]
        confidence = answer["probabilities"][answer["label"]]
        return Judgement(truth, f"{answer['label']} (p={confidence:.2f})", answer["label"] == truth)

    def drift_predictions(
        self, inputs: np.ndarray, outputs: dict[str, np.ndarray], description: dict[str, Any]
    ) -> np.ndarray:
        return np.asarray(outputs["probabilities"]).argmax(axis=1)


def tiny_sizes(given: dict[str, Any], **defaults: Any) -> SimpleNamespace:
    """A tiny model's sizes: the task's `defaults`, those `given` instead; TypeError for a size the
    task does not have."""
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise TypeError(f"unknown tiny model sizes {unknown} (this task's: {', '.join(defaults)})")
    return SimpleNamespace(**{**defaults, **given})


def values_text(values: Sequence[float]) -> str:
    return ", ".join(f"{value:.4g}" for value in values)


def feature_names(description: dict[str, Any], count: int) -> list[str]:
    """The input features' names from the model's description, else `feature_1` ... `feature_<count>`."""
    names = list(description.get("feature_names") or [])
    return names if len(names) == count else [f"feature_{index + 1}" for index in range(count)]


def explanations_module() -> Any:
    """training/explanations.py (TensorFlow, scikit-learn), loaded only when a task explains."""
    import explanations

    return explanations


def plots_module() -> Any:
    """training/explanation_plots.py (matplotlib), loaded only when a task explains."""
    import explanation_plots

    return explanation_plots


def scoring_module() -> Any:
    """training/scoring.py (TensorFlow, matplotlib), loaded only when a task evaluates: that
    happens inside training, where the training modules import as top-level modules."""
    import scoring

    return scoring
