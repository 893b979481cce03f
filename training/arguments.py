"""What SageMaker's training toolkit hands an entry point, read once: the hyperparameters as
`--name value` arguments (the registry's knobs), the channels and folders from `SM_*` variables
(each overridable by an argument, which is also how a script runs on local folders)."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import networks

log = logging.getLogger("training")

SAGEMAKER_CHECKPOINT_DIR = "/opt/ml/checkpoints"


class InputError(ValueError):
    """Bad input from whoever started the job: a hyperparameter, a missing channel, a shape."""


@dataclass(frozen=True)
class Arguments:
    hyperparameters: SimpleNamespace
    channels: dict[str, Path]
    model_dir: Path
    output_dir: Path
    checkpoint_dir: Path


def read_arguments(network: networks.Network, argv: Sequence[str]) -> Arguments:
    """InputError for a bad hyperparameter or a required channel that is missing."""
    arguments, extras = _parser(network).parse_known_args(list(argv))
    if extras:
        log.info("ignoring arguments this entry point does not know: %s", " ".join(extras))
    hyperparameters = SimpleNamespace()
    for knob in network.hyperparameters:
        try:
            setattr(hyperparameters, knob.name, knob.parse(getattr(arguments, knob.name)))
        except ValueError as error:
            raise InputError(f"bad hyperparameter: {error}") from None

    channels = {}
    for channel in network.channels:
        given = getattr(arguments, channel) or os.environ.get(f"SM_CHANNEL_{channel.upper()}")
        if given:
            channels[channel] = Path(given)
        elif channel in network.required_channels:
            raise InputError(
                f"channel {channel!r} is missing: set SM_CHANNEL_{channel.upper()} or pass --{channel} DIR"
            )
    model_dir = arguments.model_dir
    in_sagemaker = "SM_MODEL_DIR" in os.environ
    # SageMaker uploads SM_MODEL_DIR only. SDK v2's TF estimator passes an S3 model_dir for TF
    # checkpoints, and the TF toolkit gives a tuning job's trials `<model_dir>/<job name>/model`.
    if model_dir and (model_dir.startswith("s3://") or (in_sagemaker and model_dir != os.environ["SM_MODEL_DIR"])):
        log.info("model_dir %s is not SM_MODEL_DIR; the model is written to SM_MODEL_DIR", model_dir)
        model_dir = None
    output_dir = Path(arguments.output_dir or os.environ.get("SM_OUTPUT_DATA_DIR", "output"))
    checkpoint_dir = Path(
        arguments.checkpoint_dir or (SAGEMAKER_CHECKPOINT_DIR if in_sagemaker else output_dir / "checkpoints")
    )
    return Arguments(
        hyperparameters=hyperparameters,
        channels=channels,
        model_dir=Path(model_dir or os.environ.get("SM_MODEL_DIR", "model")),
        output_dir=output_dir,
        checkpoint_dir=checkpoint_dir,
    )


def _parser(network: networks.Network) -> argparse.ArgumentParser:
    # No abbreviations: SageMaker's extra arguments must never match a knob by prefix.
    parser = argparse.ArgumentParser(prog=network.entry_point, description=network.summary, allow_abbrev=False)
    for knob in network.hyperparameters:
        parser.add_argument(f"--{knob.name}", default=knob.default, help=knob.help)
    for channel in network.channels:
        parser.add_argument(f"--{channel}", help=f"{channel} channel folder (default: SM_CHANNEL_{channel.upper()})")
    parser.add_argument("--model_dir", help="where the model goes (default: SM_MODEL_DIR, else ./model)")
    parser.add_argument("--output_dir", help="evaluation.json and plots (default: SM_OUTPUT_DATA_DIR, else ./output)")
    parser.add_argument(
        "--checkpoint_dir",
        help=f"spot-safe checkpoints (default in a job: {SAGEMAKER_CHECKPOINT_DIR}, else OUTPUT_DIR/checkpoints)",
    )
    return parser
