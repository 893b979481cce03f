"""Image datasets: sklearn digits (offline, tiny), MNIST and CIFAR-10 (online), and what the
MNIST preparers (mlops/datasets/mnist.py, offline) share with them.

Images are stored as uint8 pixel values 0..255 with shape [height, width, channels]; labels as
int64 class indices.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mlops.datasets.common import Channels, limited, stratified_split, write_channels

IMAGE_DTYPES = {"image": "uint8", "label": "int64"}
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
PRETRAINED_WEIGHTS = "base.weights.h5"


def load_digits_images() -> tuple[np.ndarray, np.ndarray]:
    """sklearn's 8x8 digits (values 0..16) as uint8 images 0..255 [N, 8, 8, 1] and labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.rint(digits.images * (255 / 16)).astype(np.uint8)[..., np.newaxis]
    return images, digits.target.astype(np.int64)


def prepare_digits(out_dir: Path, *, limit: int | None = None, seed: int = 0) -> Channels:
    """1,797 digits split 60/20/20, stratified."""
    images, labels = load_digits_images()
    return _write_split(
        out_dir,
        images,
        labels,
        [str(digit) for digit in range(10)],
        limit=limit,
        seed=seed,
        source="sklearn.datasets.load_digits",
    )


def prepare_mnist(out_dir: Path, *, limit: int | None = None, seed: int = 0) -> Channels:
    """MNIST (downloads): 54,000 / 6,000 of its training set, its 10,000 test images."""
    import keras

    (train_images, train_labels), (test_images, test_labels) = keras.datasets.mnist.load_data()
    return write_online_split(
        out_dir,
        train_images[..., np.newaxis],
        train_labels,
        test_images[..., np.newaxis],
        test_labels,
        [str(digit) for digit in range(10)],
        limit=limit,
        seed=seed,
        source="mnist",
    )


def prepare_cifar10(
    out_dir: Path, *, limit: int | None = None, seed: int = 0, base: str = "VGG16", image_size: int = 64
) -> Channels:
    """CIFAR-10 (downloads), plus the ImageNet weights of `base` as the `pretrained` channel,
    which a network-isolated training job cannot download itself."""
    import keras

    (train_images, train_labels), (test_images, test_labels) = keras.datasets.cifar10.load_data()
    channels = write_online_split(
        out_dir,
        train_images,
        train_labels.reshape(-1),
        test_images,
        test_labels.reshape(-1),
        CIFAR10_CLASSES,
        limit=limit,
        seed=seed,
        source="cifar10",
    )
    application = getattr(keras.applications, base)
    pretrained = out_dir / "pretrained"
    pretrained.mkdir(parents=True)
    application(include_top=False, weights="imagenet").save_weights(pretrained / PRETRAINED_WEIGHTS)
    channels["pretrained"] = describe_pretrained(pretrained, base, image_size, source="ImageNet")
    return channels


def _write_split(
    out_dir: Path, images: np.ndarray, labels: np.ndarray, class_names, *, limit: int | None, seed: int, source: str
) -> Channels:
    splits = stratified_split(labels, [0.6, 0.2, 0.2], seed)
    kept = {
        name: limited(index, limit, seed) for name, index in zip(("train", "validation", "test"), splits, strict=True)
    }
    return write_channels(
        out_dir,
        {name: {"image": images[index], "label": labels[index]} for name, index in kept.items()},
        dtypes=IMAGE_DTYPES,
        class_names=class_names,
        metadata={"source": source},
    )


def write_online_split(
    out_dir: Path,
    train_images,
    train_labels,
    test_images,
    test_labels,
    class_names,
    *,
    limit: int | None,
    seed: int,
    source: str,
) -> Channels:
    train, validation = stratified_split(train_labels, [0.9, 0.1], seed)
    test = np.arange(len(test_labels))
    arrays = {}
    for name, images, labels, index in (
        ("train", train_images, train_labels, train),
        ("validation", train_images, train_labels, validation),
        ("test", test_images, test_labels, test),
    ):
        kept = limited(index, limit, seed)
        arrays[name] = {"image": images[kept], "label": labels[kept]}
    return write_channels(out_dir, arrays, dtypes=IMAGE_DTYPES, class_names=class_names, metadata={"source": source})


def describe_pretrained(
    folder: Path, base: str, image_size: int, *, source: str, output_layer: str | None = None
) -> Path:
    """`base.json`: what training/transfer.py checks before loading the weights beside it, and
    the layer whose output feeds its head (absent: the base's last layer)."""
    description = {
        "base": base,
        "weights": PRETRAINED_WEIGHTS,
        "input_shape": [image_size, image_size, 3],
        "source": source,
    }
    if output_layer:
        description["output_layer"] = output_layer
    (folder / "base.json").write_text(json.dumps(description, indent=2) + "\n")
    return folder
