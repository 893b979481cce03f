"""The pipeline's Evaluate step: the test metrics of an exported model, as its training run computes them.

SageMaker Pipelines runs this in a processing job on the training image, from the unpacked source
bundle, so the sibling modules import as top-level modules exactly as in training:

    python3 -m processing.evaluate --network cnn --model-dir /opt/ml/processing/model \
        --test-dir /opt/ml/processing/test --output-dir /opt/ml/processing/evaluation \
        [--baseline-dir /opt/ml/processing/validation --model-uri s3://.../model.tar.gz]

`--model-dir` holds the unpacked model.tar.gz: the SavedModel `1/` and `code/serving.json`. What is
judged is the exported `serving_default` signature, the very thing an endpoint serves (no Keras
model is rebuilt, nothing is retrained), on the test channel streamed batch by batch. The metrics
come from the same functions as the training run's (scoring.py), so the quality gate sees the
numbers the training job reported. Writes `evaluation.json` (`{"network": ..., "metrics": {name:
{"value": ...}}}`, read by the pipeline's quality gate) and the task's plot.

With `--champion-dir` (what the Champion step wrote: champion.json, and the approved model's
model.tar.gz unpacked into `model/`), the champion is scored on the same test channel and
evaluation.json gets the `champion_challenger` block the gate compares with (champion_comparison.py,
`--tolerance`). The task also explains the candidate (its `explain`, training/explanations.py):
`explanations.json` and its PNGs, the model package's explainability report. With `--baseline-dir`
(the validation channel) it also writes the model's drift baseline (baseline.py) beside
evaluation.json, naming `--model-uri` as the model it describes.

Bad input (a missing folder, a model of another network, test records that do not fit the model
or the champion) exits 2 with a one-line `error: ...`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tensorflow as tf

import baseline
import champion_comparison
import contract
import networks
import records

log = logging.getLogger("evaluate")
TEST_CHANNEL = "test"
EVALUATION_FILE = "evaluation.json"
EXPLANATIONS_FILE = "explanations.json"


def main(argv: Sequence[str] | None = None) -> None:
    arguments = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stdout, force=True, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    with contract.exits_on_bad_input():
        document = evaluate(
            arguments.network,
            arguments.model_dir,
            arguments.test_dir,
            arguments.output_dir,
            batch_size=arguments.batch_size,
            champion_dir=arguments.champion_dir,
            tolerance=arguments.tolerance,
            baseline_dir=arguments.baseline_dir,
            model_uri=arguments.model_uri,
        )
    log.info(
        "evaluation of %s written to %s: %s",
        arguments.network,
        arguments.output_dir,
        {name: metric["value"] for name, metric in document["metrics"].items()},
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python3 -m processing.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--network", required=True, help=f"one of {', '.join(networks.NETWORKS)}")
    parser.add_argument("--model-dir", type=Path, required=True, help="the unpacked model.tar.gz (1/, code/)")
    parser.add_argument("--test-dir", type=Path, required=True, help="the test channel (records + spec.json)")
    parser.add_argument("--output-dir", type=Path, required=True, help="where evaluation.json and plots go")
    parser.add_argument("--batch-size", type=int, default=256, help="test examples per signature call")
    parser.add_argument("--champion-dir", type=Path, help="what the Champion step wrote (champion.json, model/)")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=0.0,
        help="how much worse than the champion the candidate may be on the gate's metric",
    )
    parser.add_argument("--baseline-dir", type=Path, help="a channel to draw the drift baseline from (validation)")
    parser.add_argument("--model-uri", help="where the model evaluated is stored (named in the baseline)")
    return parser


def evaluate(
    network_name: str,
    model_dir: Path,
    test_dir: Path,
    output_dir: Path,
    *,
    batch_size: int = 256,
    champion_dir: Path | None = None,
    tolerance: float = 0.0,
    baseline_dir: Path | None = None,
    model_uri: str | None = None,
) -> dict[str, Any]:
    """Writes `evaluation.json`, the task's plot and the explanations into `output_dir` (and the
    drift baseline, from `baseline_dir`); returns the evaluation document."""
    try:
        network = networks.get_network(network_name)
    except KeyError as error:
        raise contract.InputError(error.args[0]) from None
    spec = records.read_spec(test_dir, TEST_CHANNEL)
    candidate = load_model(network, model_dir, spec)
    output_dir.mkdir(parents=True, exist_ok=True)
    task = network.task
    # One stream, read again by each user: building a records pipeline costs seconds of tracing.
    test = test_stream(network, test_dir, spec, batch_size)
    metrics, details = task.evaluate(candidate.outputs, test, candidate.description, output_dir / f"{task.plot}.png")
    document = {
        "network": network.name,
        "metrics": {name: {"value": float(value)} for name, value in metrics.items()},
        **details,
    }
    if champion_dir is not None:
        document[champion_comparison.KEY] = _challenge(
            network, float(metrics[network.quality_gate.metric]), champion_dir, test, spec, output_dir, tolerance
        )
    started = time.perf_counter()
    explained = task.explain(candidate.outputs, test, candidate.description, output_dir)
    seconds = time.perf_counter() - started
    log.info(
        "explanations of %s in %.1f s: %s",
        network.name,
        seconds,
        "; ".join(
            f"{ranking['title']}: {', '.join(entry['name'] for entry in ranking['top'])}"
            for ranking in explained["summary"]
        ),
    )
    (output_dir / EXPLANATIONS_FILE).write_text(
        json.dumps({"network": network.name, "task": task.name, **explained, "seconds": seconds}, indent=2) + "\n"
    )
    if baseline_dir is not None:
        baseline.write_baseline(
            network,
            candidate.description,
            candidate.saved_model.signatures,
            baseline_dir,
            output_dir,
            model_uri=model_uri,
            batch_size=batch_size,
        )
    # Last: the quality gate reads it, so it exists only once the step's outputs are complete.
    (output_dir / EVALUATION_FILE).write_text(json.dumps(document, indent=2) + "\n")
    return document


@dataclass(frozen=True)
class SignatureOutputs:
    """A batch of inputs -> the outputs of the model's `serving_default`; the other signatures (a
    text model's tokens and embeddings, for its explanations) by name in `signatures`."""

    signatures: Any
    input_name: str

    def __call__(self, inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        return self.signatures["serving_default"](**{self.input_name: inputs})


@dataclass(frozen=True)
class LoadedModel:
    description: dict[str, Any]
    """serving.json, with the signature's `input_shape` and the input's `feature_names`."""
    outputs: SignatureOutputs
    saved_model: Any
    """The loaded SavedModel: it owns the variables `outputs` reads, so it must outlive every call."""


def load_model(network: networks.Network, model_dir: Path, spec: records.ChannelSpec) -> LoadedModel:
    """The unpacked model in `model_dir`, checked against the test channel before any batch is read."""
    description = _serving_description(model_dir, network)
    saved_model = _load_saved_model(model_dir)
    signature = saved_model.signatures["serving_default"]
    input_shape = _signature_input_shape(signature, network.input_name, model_dir)
    _check_test_channel(spec, network, description, input_shape)

    names = description.get("feature_names") or spec.metadata.get("feature_names") or []
    return LoadedModel(
        {**description, "input_shape": list(input_shape), "feature_names": list(names)},
        SignatureOutputs(saved_model.signatures, network.input_name),
        saved_model,
    )


def test_stream(
    network: networks.Network, test_dir: Path, spec: records.ChannelSpec, batch_size: int
) -> tf.data.Dataset:
    """The test channel as the tasks read it: batches of (inputs, targets)."""
    return records.dataset(
        test_dir,
        spec,
        TEST_CHANNEL,
        inputs=network.input_name,
        targets=network.task.target,
        batch_size=batch_size,
        num_classes=len(spec.class_names) if spec.class_names else None,
    )


def _challenge(
    network: networks.Network,
    challenger: float,
    champion_dir: Path,
    test: tf.data.Dataset,
    spec: records.ChannelSpec,
    output_dir: Path,
    tolerance: float,
) -> dict[str, Any]:
    """The champion scored on the same test channel (its plot as `champion_<plot>.png`), beside the candidate."""
    try:
        champion = champion_comparison.read_champion(champion_dir)
    except ValueError as error:
        raise contract.InputError(str(error)) from None
    champion_metrics = None
    if champion is not None:
        try:
            model = load_model(network, champion_dir / "model", spec)
        except (contract.InputError, records.DataError) as error:
            raise contract.InputError(
                f"the approved champion, version {champion.version} of {champion.group}, cannot be scored on this "
                f"test channel ({error}): reject it to let models of the new kind register"
            ) from None
        task = network.task
        scored, _ = task.evaluate(model.outputs, test, model.description, output_dir / f"champion_{task.plot}.png")
        champion_metrics = {name: float(value) for name, value in scored.items()}
    block = champion_comparison.compare(network.quality_gate, challenger, champion, champion_metrics, tolerance)
    log.info("champion and challenger: %s", block["summary"])
    return block


def _serving_description(model_dir: Path, network: networks.Network) -> dict[str, Any]:
    path = model_dir / "code" / "serving.json"
    try:
        description = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise contract.InputError(
            f"model dir {model_dir}: cannot read code/serving.json of an unpacked "
            f"model.tar.gz ({type(error).__name__}: {error})"
        ) from None
    if description.get("network") != network.name:
        raise contract.InputError(
            f"model dir {model_dir} holds a {description.get('network')!r} model, not {network.name!r}"
        )
    return description


def _load_saved_model(model_dir: Path) -> Any:
    saved_model = model_dir / contract.MODEL_VERSION
    try:
        loaded = tf.saved_model.load(str(saved_model))
        loaded.signatures["serving_default"]
        return loaded
    except (OSError, ValueError, KeyError, tf.errors.OpError) as error:
        raise contract.InputError(
            f"model dir {model_dir}: no servable SavedModel with a serving_default "
            f"signature in {contract.MODEL_VERSION}/ ({type(error).__name__})"
        ) from None


def _signature_input_shape(signature: Any, input_name: str, model_dir: Path) -> tuple[int, ...]:
    inputs = signature.structured_input_signature[1]
    if input_name not in inputs:
        raise contract.InputError(f"model dir {model_dir}: serving_default takes {sorted(inputs)}, not {input_name!r}")
    return tuple(inputs[input_name].shape[1:])


def _check_test_channel(
    spec: records.ChannelSpec, network: networks.Network, description: dict[str, Any], input_shape: tuple[int, ...]
) -> None:
    """The test records against the model, before any batch is read."""

    def fail(problem: str) -> records.DataError:
        return records.DataError(f"channel {TEST_CHANNEL!r}: {problem}")

    for name in (network.input_name, network.task.target):
        if name not in spec.features:
            raise fail(f"no feature {name!r} (has {', '.join(spec.features)})")
    if spec.shape(network.input_name) != input_shape:
        raise fail(
            f"{network.input_name!r} has shape {list(spec.shape(network.input_name))}, "
            f"but the model takes {list(input_shape)}"
        )
    problem = network.task.test_spec_problem(spec, description)
    if problem:
        raise fail(problem)


if __name__ == "__main__":
    main()
    contract.exit_at_once()
