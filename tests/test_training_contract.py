"""The SageMaker contract in-process: arguments as the toolkit builds them, environment, cluster."""

from __future__ import annotations

import json

import numpy as np
import pytest

import contract
import networks
import records

CNN = networks.get_network("cnn")


@pytest.fixture
def image_channels(tmp_path):
    rng = np.random.default_rng(0)
    folders = {}
    for channel in CNN.required_channels:
        labels = np.array([0, 0, 0, 1, 1, 2])
        records.write_channel(
            tmp_path / channel,
            {"image": rng.integers(0, 256, size=(6, 8, 8, 1)), "label": labels},
            dtypes={"image": "uint8", "label": "int64"},
            class_names=("a", "b", "c"),
        )
        folders[channel] = tmp_path / channel
    return folders


def _channel_arguments(folders):
    return [part for channel, folder in folders.items() for part in (f"--{channel}", str(folder))]


def _toolkit_arguments(tmp_path, monkeypatch, stored: dict[str, str]) -> list[str]:
    """What SageMaker's training toolkit passes a script for this hyperparameters.json."""
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path / "opt_ml"))  # its import creates folders there
    from sagemaker_training import environment, mapping, params

    (tmp_path / "hyperparameters.json").write_text(json.dumps(stored))
    monkeypatch.setattr(environment, "hyperparameters_file_dir", str(tmp_path / "hyperparameters.json"))
    user = mapping.split_by_criteria(
        environment.read_hyperparameters(), keys=params.SAGEMAKER_HYPERPARAMETERS, prefix=params.SAGEMAKER_PREFIX
    ).excluded
    return mapping.to_cmd_args(user)


@pytest.mark.parametrize("encoding", ["raw", "json"])
def test_hyperparameters_arrive_the_same_in_both_toolkit_encodings(tmp_path, monkeypatch, image_channels, encoding):
    """SDK v3 stores raw strings ("32", "balanced"), SDK v2 JSON-quoted ones ("\\"balanced\\"")."""
    values = {"epochs": 3, "learning_rate": 0.0005, "class_weight": "balanced", "l2": 1e-3, "dropout": 0.5}
    encode = json.dumps if encoding == "json" else str
    stored = {name: encode(value) for name, value in values.items()}
    stored.update(
        sagemaker_program=encode("cnn.py"),
        sagemaker_submit_directory=encode("s3://b/sourcedir.tar.gz"),
        sagemaker_multi_worker_mirrored_strategy_enabled=encode("true"),
        checkpoint_dir=encode(str(tmp_path / "ckpt")),
    )
    argv = _toolkit_arguments(tmp_path, monkeypatch, stored)
    assert not any(argument.startswith("--sagemaker_") for argument in argv)
    job = contract.Job.from_arguments(
        CNN,
        argv
        + _channel_arguments(image_channels)
        + ["--model_dir", str(tmp_path / "m"), "--output_dir", str(tmp_path / "o")],
    )
    assert {name: getattr(job.hyperparameters, name) for name in values} == values
    assert job.hyperparameters.batch_size == CNN.hyperparameter("batch_size").default
    assert job.checkpoint_dir == tmp_path / "ckpt"


@pytest.mark.parametrize(
    "given",
    [
        "s3://bucket/job/model",  # SDK v2's TF estimator: a place for TF checkpoints
        # SageMaker's TF toolkit, to a tuning job's trial (sagemaker_tensorflow_container training.py,
        # `_model_dir_with_training_job`): a relative folder SageMaker never uploads when none was given
        "None/tune-001-abc/model",
    ],
)
def test_sagemaker_extras_are_ignored_and_a_model_dir_does_not_replace_sm_model_dir(
    tmp_path, monkeypatch, image_channels, given
):
    for channel, folder in image_channels.items():
        monkeypatch.setenv(f"SM_CHANNEL_{channel.upper()}", str(folder))
    monkeypatch.setenv("SM_MODEL_DIR", str(tmp_path / "model"))
    monkeypatch.setenv("SM_OUTPUT_DATA_DIR", str(tmp_path / "output"))
    job = contract.Job.from_arguments(
        CNN, ["--model_dir", given, "--epochs", "2", "--some_framework_flag", "1", "--model", "x"]
    )
    assert job.model_dir == tmp_path / "model" and job.output_dir == tmp_path / "output"
    assert job.hyperparameters.epochs == 2
    assert job.channels == image_channels
    # Inside a job the checkpoints go where SageMaker syncs them; SAGEMAKER_BASE_DIR does not move it.
    assert str(job.checkpoint_dir) == "/opt/ml/checkpoints"
    assert job.is_chief and not job.multi_worker


def test_outside_sagemaker_checkpoints_default_beside_the_outputs(tmp_path, image_channels):
    job = contract.Job.from_arguments(CNN, [*_channel_arguments(image_channels), "--output_dir", str(tmp_path / "o")])
    assert job.checkpoint_dir == tmp_path / "o" / "checkpoints"


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--epochs", "abc"], "bad hyperparameter: epochs must be an integer, got 'abc'"),
        (["--epochs", "2.5"], "epochs must be an integer"),
        (["--dropout", "1.5"], "dropout must be at most 0.95"),
        (["--learning_rate", "nan"], "learning_rate must be a finite number"),
        (["--class_weight", "inverse"], "class_weight must be one of none, balanced"),
        (["--precision", "bfloat8"], "precision must be one of auto, float32, bfloat16, float16"),
    ],
)
def test_a_bad_hyperparameter_is_named(image_channels, arguments, message):
    with pytest.raises(contract.InputError, match=message):
        contract.Job.from_arguments(CNN, _channel_arguments(image_channels) + arguments)


def test_a_channel_given_nowhere_is_named(image_channels):
    del image_channels["test"]
    with pytest.raises(contract.InputError, match="channel 'test' is missing: set SM_CHANNEL_TEST or pass --test"):
        contract.Job.from_arguments(CNN, _channel_arguments(image_channels))


def test_balanced_class_weights_come_from_the_spec_counts(image_channels):
    job = contract.Job.from_arguments(CNN, [*_channel_arguments(image_channels), "--class_weight", "balanced"])
    assert job.class_weight() == pytest.approx({0: 6 / (3 * 3), 1: 6 / (3 * 2), 2: 6 / (3 * 1)})
    assert contract.Job.from_arguments(CNN, _channel_arguments(image_channels)).class_weight() is None


@pytest.mark.parametrize(
    "tf_config, expected",
    [
        (None, (["local"], 0)),
        ({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}, (["a:1"], 0)),
        ({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}, (["a:1", "b:1"], 1)),
        (
            {"cluster": {"chief": ["c:1"], "worker": ["a:1"]}, "task": {"type": "worker", "index": 0}},
            (["c:1", "a:1"], 1),
        ),
        (
            {"cluster": {"chief": ["c:1"], "worker": ["a:1"]}, "task": {"type": "chief", "index": 0}},
            (["c:1", "a:1"], 0),
        ),
    ],
)
def test_the_cluster_and_the_chief_come_from_tf_config(monkeypatch, tf_config, expected):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    assert contract.workers_and_index() == expected


def test_without_tf_config_only_the_first_sagemaker_host_is_chief(tmp_path, monkeypatch, image_channels):
    monkeypatch.setenv("SM_HOSTS", json.dumps(["algo-1", "algo-2"]))
    monkeypatch.setenv("SM_CURRENT_HOST", "algo-2")
    job = contract.Job.from_arguments(CNN, [*_channel_arguments(image_channels), "--model_dir", str(tmp_path / "m")])
    try:
        assert not job.is_chief
        assert job.model_dir != tmp_path / "m"  # a scratch folder, discarded at the end
    finally:
        job.discard_scratch()
    assert not job.model_dir.exists()
