"""The channel format: what data preparation writes is what the entry points stream back."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

import records


def _quoted(message: str) -> str:
    """A regex for `message` inside a TF assertion error, which escapes its quotes."""
    return message.replace("'", r"\\?'")


def _write(directory, count=10, **options):
    rng = np.random.default_rng(0)
    arrays = {
        "image": rng.integers(0, 256, size=(count, 4, 3, 1)),
        "vector": rng.normal(size=(count, 5)),
        "label": rng.integers(0, 3, size=count),
    }
    spec = records.write_channel(
        directory,
        arrays,
        dtypes={"image": "uint8", "vector": "float32", "label": "int64"},
        class_names=("a", "b", "c"),
        metadata={"season": 12},
        **options,
    )
    return arrays, spec


def _read_all(directory, channel="train", inputs="image", targets="label", batch_size=4, **options):
    spec = records.read_spec(directory, channel)
    batches = list(
        records.dataset(directory, spec, channel, inputs=inputs, targets=targets, batch_size=batch_size, **options)
    )
    return [np.concatenate([np.asarray(batch[part]) for batch in batches]) for part in (0, 1)]


def test_round_trip_keeps_values_shapes_counts_and_metadata(tmp_path):
    arrays, spec = _write(tmp_path / "train", count=11, examples_per_shard=4)
    assert spec.count == 11 and len(spec.shards) == 3
    assert spec.class_counts == tuple(np.bincount(arrays["label"], minlength=3))
    read = records.read_spec(tmp_path / "train", "train")
    assert read == spec and read.metadata == {"season": 12} and read.shape("image") == (4, 3, 1)
    images, labels = _read_all(tmp_path / "train")
    assert images.dtype == np.float32 and images.shape == (11, 4, 3, 1)
    np.testing.assert_array_equal(images, arrays["image"])
    np.testing.assert_array_equal(labels, arrays["label"])
    vectors, _ = _read_all(tmp_path / "train", inputs="vector")
    np.testing.assert_allclose(vectors, arrays["vector"].astype(np.float32))


def test_writing_from_a_stream_of_chunks_equals_writing_at_once(tmp_path):
    rng = np.random.default_rng(1)
    chunks = [{"x": rng.normal(size=(3, 2)), "label": rng.integers(0, 2, size=3)} for _ in range(4)]
    spec = records.write_channel(
        tmp_path / "c",
        iter(chunks),
        dtypes={"x": "float32", "label": "int64"},
        class_names=("no", "yes"),
        examples_per_shard=5,
    )
    assert spec.count == 12 and spec.class_counts == tuple(
        np.bincount(np.concatenate([chunk["label"] for chunk in chunks]), minlength=2)
    )
    values, _ = _read_all(tmp_path / "c", inputs="x", batch_size=5)
    np.testing.assert_allclose(values, np.concatenate([chunk["x"] for chunk in chunks]).astype(np.float32))


def test_shuffling_is_seeded_and_reshuffles_each_epoch(tmp_path):
    _write(tmp_path / "train", count=40, examples_per_shard=10)
    spec = records.read_spec(tmp_path / "train", "train")
    dataset = records.dataset(
        tmp_path / "train", spec, "train", inputs="image", targets="label", batch_size=40, shuffle=True, seed=7
    )
    first, second = (next(iter(dataset))[1].numpy() for _ in range(2))
    assert sorted(first) == sorted(second) and not np.array_equal(first, second)
    again = records.dataset(
        tmp_path / "train", spec, "train", inputs="image", targets="label", batch_size=40, shuffle=True, seed=7
    )
    np.testing.assert_array_equal(next(iter(again))[1].numpy(), first)


@pytest.mark.parametrize(
    "break_it, message",
    [
        (lambda d: None, "the folder does not exist"),
        (lambda d: d.mkdir(), "no spec.json (the channel is empty)"),
        (lambda d: (d.mkdir(), (d / "data.csv").write_text("1,2")), "not a records channel"),
        (lambda d: (d.mkdir(), (d / "spec.json").write_text("{")), "spec.json is malformed"),
    ],
)
def test_a_missing_or_empty_channel_is_named(tmp_path, break_it, message):
    break_it(tmp_path / "validation")
    with pytest.raises(
        records.DataError, match=r"channel 'validation' .*" + message.replace("(", r"\(").replace(")", r"\)")
    ):
        records.read_spec(tmp_path / "validation", "validation")


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda spec: spec.update(count=0), "holds no examples"),
        (lambda spec: spec.update(shards=["part-00000.tfrecord", "part-00009.tfrecord"]), "missing: part-00009"),
        (lambda spec: spec["features"]["image"].update(dtype="float64"), "dtype 'float64'"),
        (lambda spec: spec["features"]["image"].update(shape=[4, 0, 1]), "invalid shape"),
        (lambda spec: spec.update(format="csv"), "format 'csv'"),
        (lambda spec: spec.update(class_counts=[1, 2]), "2 class counts for 3 class names"),
    ],
)
def test_spec_validation_names_the_problem(tmp_path, edit, message):
    _write(tmp_path / "test")
    document = json.loads((tmp_path / "test" / "spec.json").read_text())
    edit(document)
    (tmp_path / "test" / "spec.json").write_text(json.dumps(document))
    with pytest.raises(records.DataError, match=f"channel 'test' .*{message}"):
        records.read_spec(tmp_path / "test", "test")


def test_nan_in_the_stream_fails_naming_channel_and_feature(tmp_path):
    values = np.ones((9, 3), dtype=np.float32)
    values[7, 1] = np.nan
    records.write_channel(tmp_path / "train", {"x": values}, dtypes={"x": "float32"})
    spec = records.read_spec(tmp_path / "train", "train")
    batches = iter(records.dataset(tmp_path / "train", spec, "train", inputs="x", targets=None, batch_size=4))
    next(batches)  # the first batch is clean: the check is per batch, in the stream
    with pytest.raises(tf.errors.InvalidArgumentError, match="channel 'train': feature 'x' holds NaN or Inf"):
        list(batches)


def test_records_that_do_not_hold_the_spec_shape_fail_naming_channel(tmp_path):
    _write(tmp_path / "train")
    document = json.loads((tmp_path / "train" / "spec.json").read_text())
    document["features"]["image"]["shape"] = [4, 4, 1]
    (tmp_path / "train" / "spec.json").write_text(json.dumps(document))
    with pytest.raises(
        tf.errors.InvalidArgumentError, match=_quoted("channel 'train': feature 'image' records do not hold")
    ):
        _read_all(tmp_path / "train")


def test_labels_outside_the_class_names_fail(tmp_path):
    records.write_channel(
        tmp_path / "train",
        {"x": np.zeros((4, 2)), "label": np.array([0, 1, 2, 5])},
        dtypes={"x": "float32", "label": "int64"},
    )
    spec = records.read_spec(tmp_path / "train", "train")
    with pytest.raises(
        tf.errors.InvalidArgumentError, match=_quoted("channel 'train': feature 'label' holds a label outside 0..2")
    ):
        list(
            records.dataset(tmp_path / "train", spec, "train", inputs="x", targets="label", batch_size=4, num_classes=3)
        )


def test_writer_refuses_a_non_empty_folder_and_out_of_range_pixels(tmp_path):
    _write(tmp_path / "train")
    with pytest.raises(FileExistsError):
        _write(tmp_path / "train")
    with pytest.raises(ValueError, match=r"0\.\.255"):
        records.write_channel(tmp_path / "other", {"image": np.full((1, 2, 2, 1), 300)}, dtypes={"image": "uint8"})


def test_text_round_trips_as_utf8_strings(tmp_path):
    texts = ["Un film très réussi ✓", "", "a\nb", "日本語の感想", "emoji 🎬 and NUL \x00"]  # a list: NUL kept too
    spec = records.write_channel(
        tmp_path / "train",
        {"text": texts, "label": np.arange(5) % 2},
        dtypes={"text": "string", "label": "int64"},
        class_names=("fresh", "rotten"),
    )
    assert spec.features["text"] == records.Feature((), "string")
    assert records.model_dtype(spec.features["text"]) == "string"
    read, labels = _read_all(tmp_path / "train", inputs="text", batch_size=2)
    assert [text.decode("utf-8") for text in read] == list(texts)
    np.testing.assert_array_equal(labels, np.arange(5) % 2)


def test_text_that_is_not_utf8_is_refused_when_written(tmp_path):
    with pytest.raises(ValueError, match="utf-8"):
        records.write_channel(
            tmp_path / "train", {"text": np.array([b"\xff\xfe"], dtype=object)}, dtypes={"text": "string"}
        )
