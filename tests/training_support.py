"""Shared by the training tests: small offline data slices and running an entry point as a process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
TRAINING_DIR = REPO_ROOT / "training"

# Small slices: a couple of epochs of each run in seconds on two cores.
SMALL_DATA = {
    "cnn": {"limit": 120},
    "rnn": {"limit": 96},
    "autoencoder": {"limit": 80},
    "transfer": {"limit": 60, "labelled_per_class": 6, "pretrain_epochs": 1},
    "speech": {"limit": 90},
}
QUICK = {"epochs": 2, "batch_size": 32}


@pytest.fixture(scope="session")
def small_data(tmp_path_factory):
    """`small_data(network)` -> channel folders of a small slice of its offline dataset, made once."""
    from mlops.datasets import prepare

    root = tmp_path_factory.mktemp("data")
    made: dict[str, dict[str, Path]] = {}

    def channels(network: str) -> dict[str, Path]:
        if network not in made:
            made[network] = prepare(network, root / network, **SMALL_DATA[network])
        return made[network]

    return channels


def run_entry_point(network: str, channels: dict[str, Path], work: Path, *, env: dict[str, str] | None = None,
                    args: tuple[str, ...] = (), timeout: float = 240, **hyperparameters) -> subprocess.CompletedProcess:
    """`python training/<entry point> --<channel> DIR ... --model_dir ... --output_dir ...`."""
    from training.networks import get_network

    command = [sys.executable, str(TRAINING_DIR / get_network(network).entry_point),
               "--model_dir", str(work / "model"), "--output_dir", str(work / "output"),
               "--checkpoint_dir", str(work / "checkpoints")]
    for channel, folder in channels.items():
        command += [f"--{channel}", str(folder)]
    for name, value in {**QUICK, **hyperparameters}.items():
        command += [f"--{name}", str(value)]
    environment = {name: value for name, value in os.environ.items()
                   if not name.startswith(("SM_", "SAGEMAKER_")) and name != "TF_CONFIG"}
    environment.update(env or {})
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=timeout, env=environment)


def metrics_lines(log: str) -> list[dict[str, float]]:
    from mlops.local.training_job import parse_metrics

    return list(parse_metrics(log))


def serving_config(model_dir: Path) -> dict:
    return json.loads((model_dir / "code" / "serving.json").read_text())


def randomize_layer_by_layer(saved_model, seed: int = 0):
    """Cascading randomization (Adebayo et al., 2018, "Sanity checks for saliency maps"): the
    trainable variables of a loaded SavedModel replaced, layer by layer from the output down, by
    Gaussian values of each variable's own spread. Yields each layer's name once it (and every
    layer above it) is random."""
    import numpy as np

    layers: dict[str, list] = {}
    for variable in saved_model.trainable_variables:
        layers.setdefault(variable.name.rsplit("/", 1)[0], []).append(variable)
    rng = np.random.default_rng(seed)
    for layer in reversed(list(layers)):
        for variable in layers[layer]:
            values = variable.numpy()
            variable.assign(rng.normal(0.0, float(values.std()) or 0.05, values.shape).astype(values.dtype))
        yield layer


def attribution_rank_correlation(trained, randomized) -> float:
    """Mean over examples of Spearman's rank correlation of |attributions|, over the input values
    where either is non-zero: where an input equals its baseline (a black image's background),
    integrated gradients are zero for any weights, and those ties would correlate by themselves."""
    import numpy as np
    from scipy.stats import spearmanr

    found = []
    for first, second in zip(np.abs(trained.values), np.abs(randomized.values)):
        support = (first > 0) | (second > 0)
        found.append(spearmanr(first[support], second[support]).statistic)
    return float(np.mean(found))
