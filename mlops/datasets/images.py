"""Image datasets: sklearn digits (offline), MNIST and CIFAR-10 (online), and the transfer task.

Images are stored as uint8 pixel values 0..255 with shape [height, width, channels]; labels as
int64 class indices.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from mlops.datasets.common import Channels, limited, stratified_split, write_channels

log = logging.getLogger(__name__)

IMAGE_DTYPES = {"image": "uint8", "label": "int64"}
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SOURCE_CLASSES = (0, 1, 2, 3, 4)
TARGET_CLASSES = (5, 6, 7, 8, 9)
PRETRAINED_WEIGHTS = "base.weights.h5"
# Bumped whenever pretraining changes, so a cached base is never reused across versions.
PRETRAINING_VERSION = 1
# The base layer whose output feeds the head (base.json `output_layer`). Trained to tell 0-4
# apart, the last block discards what tells 5-9 apart: on the validation channel, block 4's
# features (the whole base fine-tuned) gave a validation loss of 0.08, block 5's 0.11.
DIGITS_TRANSFER_OUTPUT_LAYER = {"VGG16": "block4_pool", "VGG19": "block4_pool"}


def load_digits_images() -> tuple[np.ndarray, np.ndarray]:
    """sklearn's 8x8 digits (values 0..16) as uint8 images 0..255 [N, 8, 8, 1] and labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.rint(digits.images * (255 / 16)).astype(np.uint8)[..., np.newaxis]
    return images, digits.target.astype(np.int64)


def prepare_digits(out_dir: Path, *, limit: int | None = None, seed: int = 0) -> Channels:
    """1,797 digits split 60/20/20, stratified."""
    images, labels = load_digits_images()
    return _write_split(out_dir, images, labels, [str(digit) for digit in range(10)], limit=limit, seed=seed,
                        source="sklearn.datasets.load_digits")


def prepare_mnist(out_dir: Path, *, limit: int | None = None, seed: int = 0) -> Channels:
    """MNIST (downloads): 54,000 / 6,000 of its training set, its 10,000 test images."""
    import keras

    (train_images, train_labels), (test_images, test_labels) = keras.datasets.mnist.load_data()
    return _write_online(out_dir, train_images[..., np.newaxis], train_labels, test_images[..., np.newaxis],
                         test_labels, [str(digit) for digit in range(10)], limit=limit, seed=seed, source="mnist")


def prepare_cifar10(out_dir: Path, *, limit: int | None = None, seed: int = 0, base: str = "VGG16",
                    image_size: int = 64) -> Channels:
    """CIFAR-10 (downloads), plus the ImageNet weights of `base` as the `pretrained` channel,
    which a network-isolated training job cannot download itself."""
    import keras

    (train_images, train_labels), (test_images, test_labels) = keras.datasets.cifar10.load_data()
    channels = _write_online(out_dir, train_images, train_labels.reshape(-1), test_images, test_labels.reshape(-1),
                             CIFAR10_CLASSES, limit=limit, seed=seed, source="cifar10")
    application = getattr(keras.applications, base)
    pretrained = out_dir / "pretrained"
    pretrained.mkdir(parents=True)
    application(include_top=False, weights="imagenet").save_weights(pretrained / PRETRAINED_WEIGHTS)
    channels["pretrained"] = _describe_pretrained(pretrained, base, image_size, source="ImageNet")
    return channels


def prepare_digits_transfer(out_dir: Path, *, limit: int | None = None, seed: int = 0, base: str = "VGG16",
                            image_size: int = 32, labelled_per_class: int = 10, pretrain_epochs: int = 30,
                            cache_dir: Path | None = None) -> Channels:
    """A transfer task made offline from digits.

    Source task: digits 0-4, on which `base` (at image_size x image_size x 3) is trained from
    scratch; its weights become the `pretrained` channel (cached: it takes minutes).
    Target task: digits 5-9 with only `labelled_per_class` labelled training (and as many
    validation) images per class; every other 5-9 image is the test set.
    """
    images, labels = load_digits_images()
    source = np.isin(labels, SOURCE_CLASSES)
    source_images, source_labels = images[source], labels[source]
    if limit is not None:
        keep = limited(np.arange(len(source_labels)), limit, seed)
        source_images, source_labels = source_images[keep], source_labels[keep]
    weights_file = _pretrained_base(source_images, source_labels, base=base, image_size=image_size,
                                    epochs=pretrain_epochs, seed=seed, cache_dir=cache_dir)

    target = np.isin(labels, TARGET_CLASSES)
    target_images, target_labels = images[target], labels[target] - TARGET_CLASSES[0]
    rng = np.random.default_rng(seed)
    train, validation = [], []
    for label in range(len(TARGET_CLASSES)):
        members = rng.permutation(np.flatnonzero(target_labels == label))
        train.append(members[:labelled_per_class])
        validation.append(members[labelled_per_class:2 * labelled_per_class])
    train_index, validation_index = np.sort(np.concatenate(train)), np.sort(np.concatenate(validation))
    test_index = limited(np.setdiff1d(np.arange(len(target_labels)), np.concatenate([train_index, validation_index])),
                         limit, seed)
    splits = {"train": train_index, "validation": validation_index, "test": test_index}
    channels = write_channels(
        out_dir, {name: {"image": target_images[index], "label": target_labels[index]} for name, index in splits.items()},
        dtypes=IMAGE_DTYPES, class_names=[str(digit) for digit in TARGET_CLASSES],
        metadata={"source": "sklearn.datasets.load_digits, digits 5-9",
                  "pretrained_on": "digits 0-4", "labelled_per_class": labelled_per_class})
    pretrained = out_dir / "pretrained"
    pretrained.mkdir(parents=True)
    shutil.copy(weights_file, pretrained / PRETRAINED_WEIGHTS)
    channels["pretrained"] = _describe_pretrained(pretrained, base, image_size,
                                                  source="digits 0-4 (sklearn), trained from scratch",
                                                  output_layer=DIGITS_TRANSFER_OUTPUT_LAYER.get(base))
    return channels


def _pretrained_base(images: np.ndarray, labels: np.ndarray, *, base: str, image_size: int, epochs: int, seed: int,
                     cache_dir: Path | None) -> Path:
    """The base's weights after training on the source task, from the cache when present."""
    cache_dir = cache_dir or Path(os.environ.get("MLOPS_CACHE_DIR", Path.home() / ".cache" / "mlops"))
    key = hashlib.sha256(json.dumps([PRETRAINING_VERSION, base, image_size, epochs, seed,
                                     hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()]).encode())
    cached = cache_dir / f"digits-{base}-{image_size}px-{key.hexdigest()[:16]}.weights.h5"
    if cached.is_file():
        log.info("pretrained %s base from cache %s", base, cached)
        return cached
    log.info("pretraining %s on %d source images for up to %d epochs (cached afterwards)", base, len(labels), epochs)
    weights = _train_source_task(images, labels, base=base, image_size=image_size, epochs=epochs, seed=seed)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as scratch:
        partial = Path(scratch) / cached.name
        weights.save_weights(partial)
        os.replace(partial, cached)
    return cached


def _train_source_task(images: np.ndarray, labels: np.ndarray, *, base: str, image_size: int, epochs: int,
                       seed: int):
    """Trains `base` from scratch with the same input path as training/transfer.py (resize,
    grey to RGB, the base's preprocess_input), so its features fit what the target sees."""
    import sys

    import keras

    keras.utils.set_random_seed(seed)
    application = getattr(keras.applications, base)
    preprocess_input = sys.modules[application.__module__].preprocess_input
    backbone = application(include_top=False, weights=None, input_shape=(image_size, image_size, 3))
    image = keras.Input(images.shape[1:])
    x = keras.layers.RandomTranslation(0.125, 0.125, fill_mode="constant")(image)
    x = keras.layers.Resizing(image_size, image_size)(x)
    x = keras.layers.Concatenate()([x, x, x]) if images.shape[-1] == 1 else x
    x = keras.layers.Lambda(preprocess_input)(x)
    x = keras.layers.GlobalAveragePooling2D()(backbone(x))
    model = keras.Model(image, keras.layers.Dense(len(np.unique(labels)), activation="softmax")(x))
    model.compile(keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy", metrics=["accuracy"])
    train, validation = stratified_split(labels, [0.85, 0.15], seed)
    targets = np.searchsorted(np.unique(labels), labels)
    history = model.fit(images[train].astype(np.float32), targets[train],
                        validation_data=(images[validation].astype(np.float32), targets[validation]),
                        epochs=epochs, batch_size=32, verbose=0,
                        callbacks=[keras.callbacks.EarlyStopping(patience=5, restore_best_weights=True)])
    log.info("source task: validation accuracy %.4f after %d epochs",
             max(history.history["val_accuracy"]), len(history.history["val_accuracy"]))
    return backbone


def _write_split(out_dir: Path, images: np.ndarray, labels: np.ndarray, class_names, *, limit: int | None, seed: int,
                 source: str) -> Channels:
    splits = stratified_split(labels, [0.6, 0.2, 0.2], seed)
    kept = {name: limited(index, limit, seed) for name, index in zip(("train", "validation", "test"), splits)}
    return write_channels(
        out_dir, {name: {"image": images[index], "label": labels[index]} for name, index in kept.items()},
        dtypes=IMAGE_DTYPES, class_names=class_names, metadata={"source": source})


def _write_online(out_dir: Path, train_images, train_labels, test_images, test_labels, class_names, *,
                  limit: int | None, seed: int, source: str) -> Channels:
    train, validation = stratified_split(train_labels, [0.9, 0.1], seed)
    test = np.arange(len(test_labels))
    arrays = {}
    for name, images, labels, index in (("train", train_images, train_labels, train),
                                        ("validation", train_images, train_labels, validation),
                                        ("test", test_images, test_labels, test)):
        kept = limited(index, limit, seed)
        arrays[name] = {"image": images[kept], "label": labels[kept]}
    return write_channels(out_dir, arrays, dtypes=IMAGE_DTYPES, class_names=class_names, metadata={"source": source})


def _describe_pretrained(folder: Path, base: str, image_size: int, *, source: str,
                         output_layer: str | None = None) -> Path:
    """`base.json`: what training/transfer.py checks before loading the weights beside it, and
    the layer whose output feeds its head (absent: the base's last layer)."""
    description = {"base": base, "weights": PRETRAINED_WEIGHTS, "input_shape": [image_size, image_size, 3],
                   "source": source}
    if output_layer:
        description["output_layer"] = output_layer
    (folder / "base.json").write_text(json.dumps(description, indent=2) + "\n")
    return folder
