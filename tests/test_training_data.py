"""Data preparation: offline datasets as channels, their upload, and `mlops data prepare`."""

from __future__ import annotations

import json

import boto3
import numpy as np
import pytest
from moto import mock_aws
from training_support import DATASET_OPTIONS
from typer.testing import CliRunner

import records
from mlops.datasets import PREPARERS, prepare, preparer_for, upload_channels
from mlops.datasets.series import monthly_co2
from training.networks import NETWORKS


def _read(folder, channel, inputs, targets):
    spec = records.read_spec(folder, channel)
    batches = list(records.dataset(folder, spec, channel, inputs=inputs, targets=targets, batch_size=1000))
    return spec, np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


def test_every_network_has_an_offline_and_an_online_preparer():
    for network in NETWORKS.values():
        assert not preparer_for(network.name, "offline").needs_internet
        assert preparer_for(network.name, "online").name in PREPARERS


def test_digits_are_uint8_images_split_stratified(tmp_path):
    channels = PREPARERS["digits"].prepare(tmp_path)
    counts = {}
    for channel, folder in channels.items():
        spec, images, labels = _read(folder, channel, "image", "label")
        assert spec.features["image"].dtype == "uint8" and spec.shape("image") == (8, 8, 1)
        assert images.min() >= 0 and images.max() == 255
        assert spec.class_names == tuple(str(digit) for digit in range(10))
        assert spec.class_counts == tuple(np.bincount(labels, minlength=10))
        counts[channel] = spec.count
    assert sum(counts.values()) == 1797 and counts["train"] == pytest.approx(0.6 * 1797, abs=2)


def test_co2_windows_split_by_time_with_the_last_fifth_as_test(tmp_path):
    channels = prepare("rnn", tmp_path)
    series = monthly_co2()[:, 0]
    test_start = len(series) - round(0.2 * len(series))
    spec, history, target = _read(channels["test"], "test", "history", "target")
    assert spec.shape("history") == (24, 1) and spec.metadata["season"] == 12
    assert spec.count == len(series) - test_start
    np.testing.assert_allclose(target[:, 0], series[test_start:], rtol=1e-6)
    np.testing.assert_allclose(history[0, :, 0], series[test_start - 24 : test_start], rtol=1e-6)
    _, _, train_target = _read(channels["train"], "train", "history", "target")
    _, _, validation_target = _read(channels["validation"], "validation", "history", "target")
    assert train_target[-1, 0] == pytest.approx(series[24 + len(train_target) - 1])
    assert validation_target[-1, 0] == pytest.approx(series[test_start - 1])


def test_breast_cancer_trains_on_benign_only_and_tests_on_both(tmp_path):
    channels = prepare("autoencoder", tmp_path)
    labels = {channel: _read(folder, channel, "features", "label")[2] for channel, folder in channels.items()}
    assert not labels["train"].any() and not labels["validation"].any()
    assert labels["test"].sum() == 212 and (labels["test"] == 0).sum() == 357 - len(labels["train"]) - len(
        labels["validation"]
    )


def test_japanese_vowels_are_zero_padded_sequences_with_validation_from_train(tmp_path):
    channels = prepare("speech", tmp_path)
    read = {channel: _read(folder, channel, "frames", "label") for channel, folder in channels.items()}
    assert {channel: spec.count for channel, (spec, _, _) in read.items()} == {
        "train": 216,
        "validation": 54,
        "test": 370,
    }
    spec, frames, _ = read["train"]
    assert spec.class_names == tuple(f"speaker {index}" for index in range(1, 10))
    assert frames.shape[1:] == (29, 12) and spec.metadata["min_length"] == 7
    # Stratified: each speaker's 30 training utterances split 24 / 6.
    assert spec.class_counts == (24,) * 9 and read["validation"][0].class_counts == (6,) * 9
    for _, sequences, _ in read.values():
        real = sequences.any(axis=2)
        lengths = real.sum(axis=1)
        assert lengths.min() >= 7 and lengths.max() <= 29
        assert all(
            real[index, :length].all() and not real[index, length:].any() for index, length in enumerate(lengths)
        ), "padding must come after the real frames, only"


@pytest.mark.slow
def test_transfer_task_has_few_labels_and_base_weights_from_the_source_task(small_data):
    channels = small_data("transfer")
    described = json.loads((channels["pretrained"] / "base.json").read_text())
    assert described["base"] == "VGG16" and described["input_shape"] == [32, 32, 3]
    assert described["output_layer"] == "block3_pool", "the head reads block 3, before the 0-4 specialized blocks"
    assert (channels["pretrained"] / described["weights"]).stat().st_size > 1_000_000
    train = records.read_spec(channels["train"], "train")
    assert train.class_names == ("5", "6", "7", "8", "9")
    assert train.class_counts == (DATASET_OPTIONS["mnist_transfer"]["labelled_per_class"],) * 5


@pytest.mark.slow
def test_a_limit_caps_every_channel(tmp_path):
    channels = prepare("cnn", tmp_path, limit=25)
    assert {channel: records.read_spec(folder, channel).count for channel, folder in channels.items()} == {
        "train": 25,
        "validation": 25,
        "test": 25,
    }
    with pytest.raises(FileExistsError, match="already holds train"):
        prepare("cnn", tmp_path, limit=25)


@mock_aws
def test_upload_puts_each_channel_under_network_and_channel(tmp_path):
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="data")
    channels = prepare("autoencoder", tmp_path, limit=10)
    uris = upload_channels(channels, bucket="data", network="autoencoder", s3_client=s3)
    assert uris == {channel: f"s3://data/autoencoder/{channel}/" for channel in ("train", "validation", "test")}
    keys = {item["Key"] for item in s3.list_objects_v2(Bucket="data")["Contents"]}
    assert {
        "autoencoder/train/spec.json",
        "autoencoder/train/part-00000.tfrecord",
        "autoencoder/test/spec.json",
    } <= keys


@mock_aws
def test_cli_prepares_and_uploads(tmp_path):
    from mlops.cli import app
    from mlops.errors import UsageError

    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="data")
    runner = CliRunner()
    result = runner.invoke(
        app, ["data", "prepare", "rnn", "--out", str(tmp_path / "rnn"), "--limit", "30", "--upload-bucket", "data"]
    )
    assert result.exit_code == 0, result.output
    assert "uploaded to s3://data/rnn/test/" in result.output
    assert records.read_spec(tmp_path / "rnn" / "train", "train").count == 30
    again = runner.invoke(app, ["data", "prepare", "rnn", "--out", str(tmp_path / "rnn")])
    assert isinstance(again.exception, UsageError) and "already holds" in str(again.exception)
    unknown = runner.invoke(app, ["data", "prepare", "gan", "--out", str(tmp_path / "gan")])
    assert isinstance(unknown.exception, UsageError) and "unknown network 'gan'" in str(unknown.exception)
