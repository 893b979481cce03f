"""The pipeline's Evaluate step: the test metrics of an exported model, as its training run computes them.

SageMaker Pipelines runs this in a processing job on the training image, from the unpacked source
bundle, so the sibling modules import as top-level modules exactly as in training:

    python3 evaluate.py --network cnn --model-dir /opt/ml/processing/model \
        --test-dir /opt/ml/processing/test --output-dir /opt/ml/processing/evaluation \
        [--baseline-dir /opt/ml/processing/validation --model-uri s3://.../model.tar.gz]

`--model-dir` holds the unpacked model.tar.gz: the SavedModel `1/` and `code/serving.json`. What is
judged is the exported `serving_default` signature, the very thing an endpoint serves (no Keras
model is rebuilt, nothing is retrained), on the test channel streamed batch by batch. The metrics
come from the same functions as the training run's (evaluation.py), so the quality gate sees the
numbers the training job reported. Writes `evaluation.json` (`{"network": ..., "metrics": {name:
{"value": ...}}}`, read by the pipeline's quality gate) and the task's plot. Bad input (a missing
folder, a model of another network, test records that do not fit the model) exits 2 with a
one-line `error: ...`. With `--baseline-dir` (the validation channel) it also writes the model's
drift baseline (baseline.py) beside evaluation.json, naming `--model-uri` as the model it describes.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import tensorflow as tf

import baseline
import contract
import networks
import records

log = logging.getLogger("evaluate")
TEST_CHANNEL = "test"


def main(argv: Sequence[str] | None = None) -> None:
    arguments = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with contract.exits_on_bad_input():
        document = evaluate(arguments.network, arguments.model_dir, arguments.test_dir, arguments.output_dir,
                            batch_size=arguments.batch_size, baseline_dir=arguments.baseline_dir,
                            model_uri=arguments.model_uri)
    log.info("evaluation of %s written to %s: %s", arguments.network, arguments.output_dir,
             {name: metric["value"] for name, metric in document["metrics"].items()})


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evaluate.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--network", required=True, help=f"one of {', '.join(networks.NETWORKS)}")
    parser.add_argument("--model-dir", type=Path, required=True, help="the unpacked model.tar.gz (1/, code/)")
    parser.add_argument("--test-dir", type=Path, required=True, help="the test channel (records + spec.json)")
    parser.add_argument("--output-dir", type=Path, required=True, help="where evaluation.json and plots go")
    parser.add_argument("--batch-size", type=int, default=256, help="test examples per signature call")
    parser.add_argument("--baseline-dir", type=Path, help="a channel to draw the drift baseline from (validation)")
    parser.add_argument("--model-uri", help="where the model evaluated is stored (named in the baseline)")
    return parser


def evaluate(network_name: str, model_dir: Path, test_dir: Path, output_dir: Path, *,
             batch_size: int = 256, baseline_dir: Path | None = None, model_uri: str | None = None) -> dict[str, Any]:
    """Writes `evaluation.json` and the task's plot into `output_dir` (and the drift baseline,
    from `baseline_dir`); returns the evaluation document."""
    try:
        network = networks.get_network(network_name)
    except KeyError as error:
        raise contract.InputError(error.args[0]) from None
    description = _serving_description(model_dir, network)
    signatures = load_signatures(model_dir)
    signature = signatures["serving_default"]
    input_shape = _signature_input_shape(signature, network.input_name, model_dir)
    spec = records.read_spec(test_dir, TEST_CHANNEL)
    _check_test_channel(spec, network, description, input_shape)

    def outputs(inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        return signature(**{network.input_name: inputs})

    task = network.task
    test = records.dataset(test_dir, spec, TEST_CHANNEL, inputs=network.input_name, targets=task.target,
                           batch_size=batch_size,
                           num_classes=len(spec.class_names) if spec.class_names else None)
    output_dir.mkdir(parents=True, exist_ok=True)
    metrics, details = task.evaluate(outputs, test, {**description, "input_shape": list(input_shape)},
                                     output_dir / f"{task.plot}.png")
    document = {"network": network.name,
                "metrics": {name: {"value": float(value)} for name, value in metrics.items()},
                **details}
    if baseline_dir is not None:
        baseline.write_baseline(network, {**description, "input_shape": list(input_shape)}, signatures,
                                baseline_dir, output_dir, model_uri=model_uri, batch_size=batch_size)
    # Last: the quality gate reads it, so it exists only once the step's outputs are complete.
    (output_dir / "evaluation.json").write_text(json.dumps(document, indent=2) + "\n")
    return document


def _serving_description(model_dir: Path, network: networks.Network) -> dict[str, Any]:
    path = model_dir / "code" / "serving.json"
    try:
        description = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise contract.InputError(f"model dir {model_dir}: cannot read code/serving.json of an unpacked "
                                  f"model.tar.gz ({type(error).__name__}: {error})") from None
    if description.get("network") != network.name:
        raise contract.InputError(f"model dir {model_dir} holds a {description.get('network')!r} model, "
                                  f"not {network.name!r}")
    return description


def load_signatures(model_dir: Path) -> Any:
    """The SavedModel's signatures (serving_default, and `embedding` where exported)."""
    saved_model = model_dir / contract.MODEL_VERSION
    try:
        signatures = tf.saved_model.load(str(saved_model)).signatures
        if "serving_default" not in signatures:
            raise KeyError("serving_default")
        return signatures
    except (OSError, ValueError, KeyError, tf.errors.OpError) as error:
        raise contract.InputError(f"model dir {model_dir}: no servable SavedModel with a serving_default "
                                  f"signature in {contract.MODEL_VERSION}/ ({type(error).__name__})") from None


def _signature_input_shape(signature: Any, input_name: str, model_dir: Path) -> tuple[int, ...]:
    inputs = signature.structured_input_signature[1]
    if input_name not in inputs:
        raise contract.InputError(f"model dir {model_dir}: serving_default takes {sorted(inputs)}, "
                                  f"not {input_name!r}")
    return tuple(inputs[input_name].shape[1:])


def _check_test_channel(spec: records.ChannelSpec, network: networks.Network, description: dict[str, Any],
                        input_shape: tuple[int, ...]) -> None:
    """The test records against the model, before any batch is read."""
    def fail(problem: str) -> records.DataError:
        return records.DataError(f"channel {TEST_CHANNEL!r}: {problem}")

    for name in (network.input_name, network.task.target):
        if name not in spec.features:
            raise fail(f"no feature {name!r} (has {', '.join(spec.features)})")
    if spec.shape(network.input_name) != input_shape:
        raise fail(f"{network.input_name!r} has shape {list(spec.shape(network.input_name))}, "
                   f"but the model takes {list(input_shape)}")
    problem = network.task.test_spec_problem(spec, description)
    if problem:
        raise fail(problem)


if __name__ == "__main__":
    main()
