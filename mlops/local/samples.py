"""Held-out examples sent to an endpoint, and its answers set beside the truth.

    samples, class_names = held_out_samples(Path("data/test"), network, count=10)
    answer = invoke(endpoint, instances_request(samples), endpoint_url=url)
    rows = compare(network, class_names, samples, answer["predictions"])

The request is TensorFlow Serving's own JSON (`{"instances": [...]}`), which every network's
handler takes; the answers are the handlers' friendly ones (label and probabilities, forecast,
reconstruction error and anomaly flag).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inference.client import JSON, EncodedRequest
from mlops import processes
from mlops.cdk import REPO_ROOT
from training.networks import Network, get_network

TEST_CHANNEL = "test"
STREAM_BATCH = 256


@dataclass(frozen=True)
class Sample:
    index: int
    """Position in the test channel, in written order."""
    input: Any
    target: Any
    """The label index (classifier, anomaly detector) or the values to forecast."""


@dataclass(frozen=True)
class Comparison:
    index: int
    input: Any
    truth: str
    prediction: str
    correct: bool | None
    """Classifiers and detectors: whether the prediction is the truth. Forecasters: None."""
    error: float | None
    """Forecasters: mean absolute error of the forecast. Others: None."""
    answer: Any


def held_out_samples(test_dir: Path, network: Network, count: int) -> tuple[list[Sample], tuple[str, ...]]:
    """`count` examples spread evenly over the test channel (its first ones can all be of one
    kind: a dataset in its source's order), and the channel's class names."""
    from training import records  # TensorFlow: only once there is a channel to read

    spec = records.read_spec(test_dir, TEST_CHANNEL)
    taken = min(count, spec.count)
    wanted = {round(step * (spec.count - 1) / max(taken - 1, 1)) for step in range(taken)}
    target = network.task.target
    samples, position = [], 0
    for inputs, targets in records.dataset(
        test_dir, spec, TEST_CHANNEL, inputs=network.input_name, targets=target, batch_size=STREAM_BATCH
    ):
        for value, truth in zip(inputs.numpy(), targets.numpy(), strict=True):
            if position in wanted:
                samples.append(Sample(position, json_value(value), truth.tolist()))
            position += 1
    return samples, spec.class_names


class EarlySamples:
    """`held_out_samples` in a child process started as soon as the test channel exists, at low
    priority: reading the channel imports TensorFlow (8 s on 2 cores here), which the `mlops`
    process would otherwise do only when it invokes the endpoint; the child gets the core the
    pipeline's jobs leave idle instead. `stop()` ends it if its answer is never asked for."""

    def __init__(self, test_dir: Path, network: Network, count: int) -> None:
        self._child = processes.ModuleChild(
            __name__, [str(test_dir), network.name, str(count)], doing="reading the held-out samples", cwd=REPO_ROOT
        )

    def result(self) -> tuple[list[Sample], tuple[str, ...] | None]:
        answer = self._child.answer()
        class_names = answer["class_names"]
        return ([Sample(**sample) for sample in answer["samples"]], None if class_names is None else tuple(class_names))

    def stop(self) -> None:
        self._child.stop()


def _print_samples(test_dir: str, network_name: str, count: str) -> None:
    """The child's side of EarlySamples: one JSON line on stdout."""
    os.nice(10)
    samples, class_names = held_out_samples(Path(test_dir), get_network(network_name), int(count))
    processes.print_answer(
        {
            "samples": [asdict(sample) for sample in samples],
            "class_names": None if class_names is None else list(class_names),
        }
    )


def json_value(value: Any) -> Any:
    """A model input as TF Serving's JSON holds it: text (stored as UTF-8 bytes) as a string,
    numbers as (nested) lists."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return value.tolist() if isinstance(value, np.ndarray | np.generic) else value


def instances_request(samples: Sequence[Sample]) -> EncodedRequest:
    return EncodedRequest(json.dumps({"instances": [sample.input for sample in samples]}).encode(), JSON)


def compare(
    network: Network, class_names: Sequence[str], samples: Sequence[Sample], predictions: Sequence[Any]
) -> list[Comparison]:
    if len(predictions) != len(samples):
        raise ValueError(f"the endpoint answered {len(predictions)} predictions for {len(samples)} instances")
    return [_compare(network, class_names, sample, answer) for sample, answer in zip(samples, predictions, strict=True)]


def _compare(network: Network, class_names: Sequence[str], sample: Sample, answer: Any) -> Comparison:
    judged = network.task.judge(sample.target, answer, class_names)
    return Comparison(sample.index, sample.input, judged.truth, judged.prediction, judged.correct, judged.error, answer)


def summary(comparisons: Sequence[Comparison]) -> str:
    """One line: how the endpoint did on these samples."""
    judged = [comparison.correct for comparison in comparisons if comparison.correct is not None]
    if judged:
        return f"{sum(judged)} of {len(judged)} samples predicted right"
    errors = [comparison.error for comparison in comparisons if comparison.error is not None]
    return f"mean absolute error {sum(errors) / len(errors):.4g} over {len(errors)} samples"


if __name__ == "__main__":
    _print_samples(*sys.argv[1:])
