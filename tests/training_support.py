"""Shared by the training tests: small offline data slices, running an entry point as a process, and
one training run per network that every test module of the session reads."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
TRAINING_DIR = REPO_ROOT / "training"

# What a task cannot know of a dataset's small slice (mlops.datasets.prepare's keyword arguments),
# by offline dataset: the transfer task's few labels and its base pretrained for one epoch. Every
# other slice is its task's `quick_slice` examples per channel: a couple of epochs of each run in
# seconds on two cores.
DATASET_OPTIONS: dict[str, dict[str, Any]] = {
    "mnist_transfer": {"limit": 60, "labelled_per_class": 6, "pretrain_epochs": 1},
}


def small_data_options(network_name: str) -> dict[str, Any]:
    from training.networks import get_network

    network = get_network(network_name)
    return {"limit": network.task.quick_slice, **DATASET_OPTIONS.get(network.offline_dataset, {})}


QUICK: dict[str, Any] = {"epochs": 2, "batch_size": 32}
# transfer: 2 epochs of the head, then 2 fine-tuning the last base layers, so that what is judged
# and served is the fine-tuned model.
# transfer in float32: with the head on block 3, its bfloat16 gradients on this slice miss
# integrated gradients' completeness (5%) by far (0.18 at 64 nodes, 0.11 at 256); in float32, 64 do
# on the Intel build machine, 128 on an AMD EPYC (explanations.IG_MAX_STEPS).
TRAINED_PHASES: dict[str, dict[str, Any]] = {"transfer": {"fine_tune_epochs": 2, "precision": "float32"}}


@dataclass(frozen=True)
class TrainedRun:
    """A finished entry point run: its folder (`model/`, `output/`) and what the process printed."""

    work: Path
    returncode: int
    stdout: str
    stderr: str

    @property
    def model_dir(self) -> Path:
        return self.work / "model"

    @property
    def output_dir(self) -> Path:
        return self.work / "output"

    @property
    def log(self) -> str:
        return self.stdout[-3000:] + self.stderr[-3000:]


def session_folder(tmp_path_factory) -> Path:
    """A folder every pytest-xdist worker of this test session shares (the session's own otherwise)."""
    worker_root = tmp_path_factory.getbasetemp()
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    folder = worker_root.parent / f"shared-{run}" if run else worker_root / "shared"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextmanager
def _exclusive(lock_file: Path) -> Iterator[None]:
    """Held by one worker at a time: the others wait for what it makes instead of making it too."""
    with lock_file.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def small_data(tmp_path_factory):
    """`small_data(network)` -> channel folders of a small slice of its offline dataset, made once per
    test session whichever worker asks first. Read-only: a test that changes a channel copies it first."""
    from mlops.datasets import prepare

    root = session_folder(tmp_path_factory) / "data"
    root.mkdir(exist_ok=True)

    def channels(network: str) -> dict[str, Path]:
        made = root / f"{network}.json"
        with _exclusive(root / f"{network}.lock"):
            if not made.exists():
                folders = prepare(network, root / network, **small_data_options(network))
                made.write_text(json.dumps({channel: str(folder) for channel, folder in folders.items()}))
        return {channel: Path(folder) for channel, folder in json.loads(made.read_text()).items()}

    return channels


@pytest.fixture(scope="session")
def trained(tmp_path_factory, small_data):
    """`trained(network)` -> the TrainedRun of its entry point on its small slice (QUICK, plus
    TRAINED_PHASES), made once per test session whichever worker asks first. Read-only: a test
    that changes a model copies it first."""
    root = session_folder(tmp_path_factory) / "trained"
    root.mkdir(exist_ok=True)

    def run(network: str) -> TrainedRun:
        work, result = root / network, root / f"{network}.json"
        with _exclusive(root / f"{network}.lock"):
            if not result.exists():
                finished = run_entry_point(network, small_data(network), work, **TRAINED_PHASES.get(network, {}))
                result.write_text(
                    json.dumps(
                        {"returncode": finished.returncode, "stdout": finished.stdout, "stderr": finished.stderr}
                    )
                )
        return TrainedRun(work, **json.loads(result.read_text()))

    return run


def run_entry_point(
    network: str,
    channels: dict[str, Path],
    work: Path,
    *,
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
    timeout: float = 240,
    **hyperparameters,
) -> subprocess.CompletedProcess:
    """`python training/<entry point> --<channel> DIR ... --model_dir ... --output_dir ...`."""
    from training.networks import get_network

    command = [
        sys.executable,
        str(TRAINING_DIR / get_network(network).entry_point),
        "--model_dir",
        str(work / "model"),
        "--output_dir",
        str(work / "output"),
        "--checkpoint_dir",
        str(work / "checkpoints"),
    ]
    for channel, folder in channels.items():
        command += [f"--{channel}", str(folder)]
    for name, value in {**QUICK, **hyperparameters}.items():
        command += [f"--{name}", str(value)]
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("SM_", "SAGEMAKER_")) and name != "TF_CONFIG"
    }
    environment.update(env or {})
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=timeout, env=environment)


@contextmanager
def entry_point_logging() -> Iterator[None]:
    """Around an entry point called in-process: its `basicConfig(force=True)` replaces the root
    logger's handlers with one on this test's captured stdout, which is closed when the test ends;
    left in place, every later test's log records would print "--- Logging error ---" instead."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers, root.level = handlers, level


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
    for first, second in zip(np.abs(trained.values), np.abs(randomized.values), strict=True):
        support = (first > 0) | (second > 0)
        found.append(spearmanr(first[support], second[support]).statistic)
    return float(np.mean(found))
