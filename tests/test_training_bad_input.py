"""Bad input ends a run with exit code 2, a one-line message naming the culprit, and no model."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from training_support import run_entry_point

import records

# slow: runs the entry points as processes on real data.
pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _copy(channels, tmp_path):
    copied = {}
    for channel, folder in channels.items():
        copied[channel] = tmp_path / "data" / channel
        shutil.copytree(folder, copied[channel])
    return copied


def _without_test(channels, tmp_path):
    return {channel: folder for channel, folder in channels.items() if channel != "test"}


def _empty_validation(channels, tmp_path):
    (tmp_path / "empty").mkdir()
    return {**channels, "validation": tmp_path / "empty"}


def _smaller_validation_images(channels, tmp_path):
    images = np.zeros((5, 6, 6, 1))
    records.write_channel(
        tmp_path / "small",
        {"image": images, "label": np.arange(5)},
        dtypes={"image": "uint8", "label": "int64"},
        class_names=[str(d) for d in range(10)],
    )
    return {**channels, "validation": tmp_path / "small"}


def _validation_images_as_text(channels, tmp_path):
    records.write_channel(
        tmp_path / "text",
        {"image": np.array(["a picture of a seven"] * 5, dtype=object), "label": np.arange(5)},
        dtypes={"image": "string", "label": "int64"},
        class_names=[str(d) for d in range(10)],
    )
    return {**channels, "validation": tmp_path / "text"}


def _records_unlike_their_spec(channels, tmp_path):
    copied = _copy(channels, tmp_path)
    for folder in copied.values():  # the specs agree with each other, not with the records
        document = json.loads((folder / "spec.json").read_text())
        document["features"]["image"]["shape"] = [7, 7, 1]
        (folder / "spec.json").write_text(json.dumps(document))
    return copied


CNN_CASES = {
    "missing channel": (
        _without_test,
        (),
        ["error: channel 'test' is missing: set SM_CHANNEL_TEST or pass --test DIR"],
    ),
    "empty channel": (_empty_validation, (), ["error: channel 'validation' (", "no spec.json (the channel is empty)"]),
    "wrong shape": (
        _smaller_validation_images,
        (),
        ["error: channel 'validation': 'image' has shape [6, 6, 1], but the train channel has [28, 28, 1]"],
    ),
    "text where images belong": (
        _validation_images_as_text,
        (),
        ["error: channel 'validation': 'image' holds string values; image_classifier networks take float32 or uint8"],
    ),
    "records unlike their spec": (
        _records_unlike_their_spec,
        (),
        ["error: channel 'train': feature 'image' records do not hold shape [7, 7, 1]"],
    ),
    "bad hyperparameter": (
        lambda channels, tmp_path: channels,
        ("--epochs", "ten"),
        ["error: bad hyperparameter: epochs must be an integer, got 'ten'"],
    ),
}


@pytest.mark.parametrize("case", list(CNN_CASES))
def test_bad_cnn_input_is_named_and_leaves_no_model(tmp_path, small_data, case):
    break_channels, arguments, fragments = CNN_CASES[case]
    channels = break_channels(dict(small_data("cnn")), tmp_path)
    finished = run_entry_point("cnn", channels, tmp_path, args=arguments)
    assert finished.returncode == 2, finished.stdout[-2000:] + finished.stderr[-2000:]
    assert all(fragment in finished.stderr for fragment in fragments), finished.stderr[-2000:]
    assert "Traceback" not in finished.stderr
    assert not (tmp_path / "model").exists() or not any((tmp_path / "model").iterdir())


def test_nan_deep_in_a_channel_stops_the_run_naming_it(tmp_path, small_data):
    channels = dict(small_data("autoencoder"))
    spec = records.read_spec(channels["train"], "train")
    features = np.concatenate(
        [
            np.asarray(batch)
            for batch in records.dataset(
                channels["train"], spec, "train", inputs="features", targets=None, batch_size=64
            )
        ]
    )
    features[-1, 3] = np.nan  # past the first batch: found by the per-batch check in the stream
    records.write_channel(
        tmp_path / "train",
        {"features": features, "label": np.zeros(len(features))},
        dtypes={"features": "float32", "label": "int64"},
        class_names=spec.class_names,
    )
    finished = run_entry_point("autoencoder", {**channels, "train": tmp_path / "train"}, tmp_path, batch_size=16)
    assert finished.returncode == 2, finished.stdout[-2000:] + finished.stderr[-2000:]
    assert "error: channel 'train': feature 'features' holds NaN or Inf" in finished.stderr
    assert not (tmp_path / "model").exists() or not any((tmp_path / "model").iterdir())


def test_transfer_never_trains_on_random_base_weights_silently(tmp_path, small_data):
    """No `pretrained` channel, and ImageNet weights cannot be downloaded here: a clear error."""
    channels = {name: folder for name, folder in small_data("transfer").items() if name != "pretrained"}
    finished = run_entry_point(
        "transfer",
        channels,
        tmp_path,
        image_size=32,
        env={"KERAS_HOME": str(tmp_path / "keras"), "HTTPS_PROXY": "http://127.0.0.1:9"},
    )
    assert finished.returncode == 2, finished.stdout[-2000:] + finished.stderr[-2000:]
    assert (
        "error: no base weights: no 'pretrained' channel, and the ImageNet weights of VGG16 could not be loaded"
        in finished.stderr
    )
    assert not (tmp_path / "model").exists() or not any((tmp_path / "model").iterdir())


def test_transfer_refuses_weights_of_another_base(tmp_path, small_data):
    finished = run_entry_point("transfer", small_data("transfer"), tmp_path, base="ResNet50")
    assert finished.returncode == 2
    assert "error: channel 'pretrained' holds VGG16 weights, but hyperparameter base is ResNet50" in finished.stderr
