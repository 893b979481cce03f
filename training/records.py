"""The channel format: a folder of TFRecord shards plus `spec.json`, read as a stream.

A channel folder (what SageMaker mounts at `SM_CHANNEL_<NAME>`) holds

    spec.json                  {"format", "count", "shards", "features", "class_names", "class_counts", "metadata"}
    part-00000.tfrecord ...    serialized `tf.train.Example`s, one feature per name in `features`

`features` maps a name to `{"shape": [...], "dtype": "float32" | "uint8" | "int64" | "string"}`: float32
values are stored as float lists, int64 as int lists, uint8 (image pixels) as raw bytes, which keeps
image records four times smaller, string (text) as UTF-8 bytes, one per value. `class_counts`
(classifiers) gives class weights without a pass over the data; `metadata` carries dataset facts
the entry point needs (e.g. a forecaster's `season`).

Reading never holds a dataset in memory: shards are streamed, shuffled with a bounded buffer,
batched, then parsed a batch at a time with `tf.io.parse_example`, and float features are
checked for NaN/Inf on each batch. Writing (data preparation, outside the container) is here
too so that both sides share one definition of the format.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

FORMAT = "tfrecord-examples/1"
SPEC_FILE = "spec.json"
DTYPES = ("float32", "uint8", "int64", "string")
# Serialized records held for shuffling: bounded, so memory does not grow with the dataset.
SHUFFLE_BUFFER = 10_000
EXAMPLES_PER_SHARD = 20_000


# The dtype `dataset` hands the model for each stored dtype (uint8 pixels arrive as float32), which
# is also the exported signature's input dtype.
MODEL_DTYPES = {"float32": "float32", "uint8": "float32", "int64": "int64", "string": "string"}


class DataError(ValueError):
    """A channel that cannot be trained on; the message names the channel and what is wrong."""


@dataclass(frozen=True)
class Feature:
    shape: tuple[int, ...]
    dtype: str

    def to_json(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "dtype": self.dtype}


def model_dtype(feature: Feature) -> str:
    return MODEL_DTYPES[feature.dtype]


@dataclass(frozen=True)
class ChannelSpec:
    count: int
    features: dict[str, Feature]
    shards: tuple[str, ...]
    class_names: tuple[str, ...] = ()
    class_counts: tuple[int, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)

    def shape(self, feature: str) -> tuple[int, ...]:
        return self.features[feature].shape

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "count": self.count,
            "shards": list(self.shards),
            "features": {name: feature.to_json() for name, feature in self.features.items()},
            "class_names": list(self.class_names),
            "class_counts": list(self.class_counts),
            "metadata": self.metadata,
        }


def read_spec(directory: Path, channel: str) -> ChannelSpec:
    """The channel's spec, checked against the folder; DataError names the channel on any problem."""

    def fail(problem: str) -> DataError:
        return DataError(f"channel {channel!r} ({directory}): {problem}")

    if not directory.is_dir():
        raise fail("the folder does not exist")
    spec_path = directory / SPEC_FILE
    if not spec_path.is_file():
        listing = sorted(path.name for path in directory.iterdir())[:5]
        raise fail(
            f"no {SPEC_FILE} (the channel is empty)"
            if not listing
            else f"no {SPEC_FILE}; found {', '.join(listing)}: not a records channel"
        )
    try:
        document = json.loads(spec_path.read_text())
        if document.get("format") != FORMAT:
            raise fail(f"{SPEC_FILE} has format {document.get('format')!r}, expected {FORMAT!r}")
        features = {
            name: Feature(tuple(int(size) for size in entry["shape"]), str(entry["dtype"]))
            for name, entry in document["features"].items()
        }
        spec = ChannelSpec(
            count=int(document["count"]),
            features=features,
            shards=tuple(document["shards"]),
            class_names=tuple(str(name) for name in document.get("class_names", ())),
            class_counts=tuple(int(count) for count in document.get("class_counts", ())),
            metadata=dict(document.get("metadata", {})),
        )
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as error:
        if isinstance(error, DataError):
            raise
        raise fail(f"{SPEC_FILE} is malformed: {error!r}") from None
    if spec.count <= 0:
        raise fail("it holds no examples (count is 0)")
    for name, feature in spec.features.items():
        if feature.dtype not in DTYPES:
            raise fail(f"feature {name!r} has dtype {feature.dtype!r}; supported: {', '.join(DTYPES)}")
        if any(size <= 0 for size in feature.shape):
            raise fail(f"feature {name!r} has an invalid shape {list(feature.shape)}")
    missing = [shard for shard in spec.shards if not (directory / shard).is_file()]
    if not spec.shards or missing:
        raise fail(f"shards listed in {SPEC_FILE} are missing: {', '.join(missing) or 'none listed'}")
    if spec.class_counts and len(spec.class_counts) != len(spec.class_names):
        raise fail(f"{len(spec.class_counts)} class counts for {len(spec.class_names)} class names")
    return spec


def dataset(
    directory: Path,
    spec: ChannelSpec,
    channel: str,
    *,
    inputs: str,
    targets: str | None,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    num_classes: int | None = None,
) -> tf.data.Dataset:
    """Batches of `(inputs, targets)` (or of inputs alone when `targets` is None), float inputs
    as float32. Shuffling mixes shard order and records within a bounded buffer each epoch.
    With `num_classes`, integer targets are checked to be class indices."""
    for name in (inputs, targets):
        if name is not None and name not in spec.features:
            raise DataError(f"channel {channel!r}: no feature {name!r} (has {', '.join(spec.features)})")
    paths = [str(directory / shard) for shard in spec.shards]
    if shuffle:
        records = tf.data.Dataset.from_tensor_slices(paths).shuffle(
            len(paths), seed=seed, reshuffle_each_iteration=True
        )
        # Read in turn, not in parallel: channel files are local (File mode), and a parallel
        # interleave's thread hand-offs cost ~6 us of CPU per record, a tenth of a CNN training step.
        records = records.interleave(tf.data.TFRecordDataset, cycle_length=min(len(paths), 4))
        records = records.shuffle(min(spec.count, SHUFFLE_BUFFER), seed=seed, reshuffle_each_iteration=True)
    else:
        # In written order: a forecaster's test windows are in time order.
        records = tf.data.TFRecordDataset(paths)
    wanted = {name: spec.features[name] for name in (inputs, targets) if name is not None}

    def parse(serialized: tf.Tensor):
        parsed = tf.io.parse_example(serialized, {name: _parse_spec(feature) for name, feature in wanted.items()})
        decoded = {name: _decode(parsed[name], feature, channel, name) for name, feature in wanted.items()}
        if targets is None:
            return decoded[inputs]
        if num_classes is not None:
            decoded[targets] = _checked_labels(decoded[targets], num_classes, channel, targets)
        return decoded[inputs], decoded[targets]

    batches = records.batch(batch_size).map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()
    # Every worker reads every shard and keeps its share of the batches: correct for any
    # number of shards (FILE sharding needs at least as many shards as workers).
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    # Without tf.data's autotuning, AUTOTUNE above keeps the untuned values TensorFlow starts from.
    # With it, Keras dropping an exhausted validation iterator waited about 2.4 s with the CPU idle,
    # in one to five of five CNN epochs (benchmarks/mnist_whole_process.py); the epochs are as fast.
    options.autotune.enabled = False
    return batches.with_options(options).prefetch(tf.data.AUTOTUNE)


def _parse_spec(feature: Feature) -> tf.io.FixedLenFeature:
    if feature.dtype == "uint8":
        return tf.io.FixedLenFeature([], tf.string)
    stored = {"float32": tf.float32, "int64": tf.int64, "string": tf.string}[feature.dtype]
    return tf.io.FixedLenFeature(feature.shape, stored)


def _decode(values: tf.Tensor, feature: Feature, channel: str, name: str) -> tf.Tensor:
    if feature.dtype == "uint8":
        pixels = tf.io.decode_raw(values, tf.uint8)
        size_check = tf.debugging.assert_equal(
            tf.shape(pixels)[1],
            math.prod(feature.shape),
            message=(f"channel {channel!r}: feature {name!r} records do not hold shape {list(feature.shape)}"),
        )
        with tf.control_dependencies([size_check]):
            return tf.cast(tf.reshape(pixels, [-1, *feature.shape]), tf.float32)
    if feature.dtype == "float32":
        return tf.debugging.check_numerics(values, f"channel {channel!r}: feature {name!r} holds NaN or Inf")
    return values


def named_problem(error: tf.errors.InvalidArgumentError) -> str | None:
    """The message of a stream check (NaN, record shape, label range), which names the channel."""
    # TF quotes an assertion's message as "[message] [Condition ...]" and a check_numerics one
    # as "message : Tensor had NaN values".
    found = re.search(r"channel '[^']+'.*?(?=\] \[| : Tensor|\n|$)", error.message.replace("\\'", "'"))
    return found.group(0).strip() if found else None


def _checked_labels(labels: tf.Tensor, num_classes: int, channel: str, name: str) -> tf.Tensor:
    message = f"channel {channel!r}: feature {name!r} holds a label outside 0..{num_classes - 1}"
    checks = [
        tf.debugging.assert_non_negative(labels, message=message),
        tf.debugging.assert_less(labels, tf.constant(num_classes, labels.dtype), message=message),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(labels)


# ------------------------------------------------------------------------------------ writing


def write_channel(
    directory: Path,
    batches: Mapping[str, np.ndarray] | Iterable[Mapping[str, np.ndarray]],
    *,
    dtypes: Mapping[str, str],
    class_names: Iterable[str] = (),
    label: str = "label",
    metadata: Mapping[str, Any] | None = None,
    examples_per_shard: int = EXAMPLES_PER_SHARD,
) -> ChannelSpec:
    """Writes one channel from a dict of arrays, or from an iterable of such dicts (so large
    datasets never need to be in memory at once). `dtypes` names every feature's stored dtype;
    with `class_names`, the integer feature `label` is counted per class."""
    directory.mkdir(parents=True, exist_ok=True)
    if any(directory.iterdir()):
        raise FileExistsError(f"{directory} is not empty")
    chunks = [batches] if isinstance(batches, Mapping) else batches
    class_names = tuple(class_names)
    class_counts = np.zeros(len(class_names), dtype=np.int64)
    features: dict[str, Feature] = {}
    shards: list[str] = []
    writer, in_shard, count = None, 0, 0
    try:
        for chunk in chunks:
            arrays = {
                name: np.asarray(values, dtype=object if dtypes[name] == "string" else None)
                for name, values in chunk.items()
            }
            sizes = {len(values) for values in arrays.values()}
            if len(sizes) != 1:
                raise ValueError(f"features have different lengths: { {n: len(v) for n, v in arrays.items()} }")
            for name, values in arrays.items():
                feature = Feature(tuple(int(size) for size in values.shape[1:]), dtypes[name])
                if features.setdefault(name, feature) != feature:
                    raise ValueError(f"feature {name!r} changes shape: {features[name]} then {feature}")
            if class_names:
                class_counts += np.bincount(arrays[label].astype(np.int64), minlength=len(class_names))
            for index in range(sizes.pop()):
                if writer is None or in_shard == examples_per_shard:
                    if writer is not None:
                        writer.close()
                    shards.append(f"part-{len(shards):05d}.tfrecord")
                    writer, in_shard = tf.io.TFRecordWriter(str(directory / shards[-1])), 0
                example = {name: _feature(values[index], features[name].dtype) for name, values in arrays.items()}
                writer.write(tf.train.Example(features=tf.train.Features(feature=example)).SerializeToString())
                in_shard += 1
                count += 1
    finally:
        if writer is not None:
            writer.close()
    spec = ChannelSpec(
        count=count,
        features=features,
        shards=tuple(shards),
        class_names=class_names,
        class_counts=tuple(int(n) for n in class_counts) if class_names else (),
        metadata=dict(metadata or {}),
    )
    (directory / SPEC_FILE).write_text(json.dumps(spec.to_json(), indent=2) + "\n")
    return spec


def _feature(value: np.ndarray, dtype: str) -> tf.train.Feature:
    # Text as objects: numpy's own string types drop trailing NUL characters.
    flat = np.asarray(value, dtype=object if dtype == "string" else None).reshape(-1)
    if dtype == "uint8":
        if flat.size and (flat.min() < 0 or flat.max() > 255):
            raise ValueError("uint8 features must lie in 0..255")
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[np.rint(flat).astype(np.uint8).tobytes()]))
    if dtype == "float32":
        return tf.train.Feature(float_list=tf.train.FloatList(value=flat.astype(np.float32)))
    if dtype == "int64":
        return tf.train.Feature(int64_list=tf.train.Int64List(value=flat.astype(np.int64)))
    if dtype == "string":
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[_utf8(text) for text in flat]))
    raise ValueError(f"unsupported dtype {dtype!r}; supported: {', '.join(DTYPES)}")


def _utf8(text: object) -> bytes:
    if isinstance(text, bytes):
        text.decode("utf-8")  # refused here, not when a job reads it
        return text
    if not isinstance(text, str):
        raise ValueError(f"string features hold text, got {type(text).__name__}")
    return text.encode("utf-8")
