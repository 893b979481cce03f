"""Each entry point trains on a small offline slice in its own process and exports a servable model."""

from __future__ import annotations

import json
import re
import tarfile

import numpy as np
import pytest
import tensorflow as tf
from training_support import QUICK, TRAINED_PHASES, metrics_lines, serving_config

import networks
import records
import tasks

# slow: trains every network.
pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _check_classes(answer, serving, evaluation, signature) -> None:
    assert answer["probabilities"].shape == (3, len(serving["class_names"]))
    np.testing.assert_allclose(answer["probabilities"].numpy().sum(axis=1), 1.0, rtol=1e-5)


def _check_forecast(answer, serving, evaluation, signature) -> None:
    assert (serving["window"], serving["n_features"]) == tuple(serving["input_shape"])
    assert answer["forecast"].shape == (3, serving["horizon"])
    # In the series' own units: next to the ~340 ppm it was given, not a standardized value.
    assert np.all(np.abs(answer["forecast"].numpy() - 340) < 20)


def _check_anomaly_scores(answer, serving, evaluation, signature) -> None:
    assert answer["embedding"].shape == (3, serving["encoding_dim"])
    assert answer["reconstruction_error"].shape == (3,)
    np.testing.assert_allclose(answer["threshold"].numpy(), serving["threshold"], rtol=1e-6)
    assert evaluation["threshold"] == pytest.approx(serving["threshold"])


def _check_sequence_classes(answer, serving, evaluation, signature) -> None:
    _check_classes(answer, serving, evaluation, signature)
    assert (serving["max_length"], serving["n_features"]) == tuple(serving["input_shape"])
    # Masked, not read: the padding's place does not matter (a GRU reading it would differ).
    frames = np.random.default_rng(1).normal(0, 0.5, (5, serving["n_features"])).astype(np.float32) + 0.1
    padding = np.zeros((serving["max_length"] - len(frames), serving["n_features"]), np.float32)
    after, before = (np.concatenate(parts)[np.newaxis] for parts in ((frames, padding), (padding, frames)))
    np.testing.assert_allclose(
        signature(frames=tf.constant(after))["probabilities"].numpy(),
        signature(frames=tf.constant(before))["probabilities"].numpy(),
        rtol=1e-4,
        atol=1e-6,
    )


def _check_text_classes(answer, serving, evaluation, signature) -> None:
    _check_classes(answer, serving, evaluation, signature)
    # The model tokenizes: raw text in, and the same text answers the same however it is spaced.
    texts = tf.constant(["A gem.", "  a   GEM . ", "dull"])
    probabilities = signature(**{serving["input_name"]: texts})["probabilities"].numpy()
    np.testing.assert_allclose(probabilities[0], probabilities[1], rtol=1e-5)


# Per task: what the exported signature's answer to its task's sample inputs must look like.
ANSWER_CHECKS = {
    "image_classifier": _check_classes,
    "sequence_forecaster": _check_forecast,
    "anomaly_detector": _check_anomaly_scores,
    "sequence_classifier": _check_sequence_classes,
    "text_classifier": _check_text_classes,
}


def test_every_task_has_its_answer_check():
    assert set(ANSWER_CHECKS) == set(tasks.TASKS)


@pytest.mark.parametrize("name", list(networks.NETWORKS))
def test_entry_point_trains_and_exports_a_servable_model(trained, small_data, name):
    network = networks.get_network(name)
    finished = trained(name)
    assert finished.returncode == 0, finished.log

    lines = metrics_lines(finished.stdout)
    epochs = [line for line in lines if "epoch" in line]
    phases = TRAINED_PHASES.get(name, {})
    assert [line["epoch"] for line in epochs] == list(range(1, QUICK["epochs"] + phases.get("fine_tune_epochs", 0) + 1))
    assert set(epochs[0]) == {"epoch"} | {metric for metric in network.metrics if not metric.startswith("test_")}
    final = lines[-1]
    assert set(final) == {metric for metric in network.metrics if metric.startswith("test_")}
    for definition in network.metric_definitions:  # what SageMaker's MetricDefinitions scrape
        assert re.search(definition["Regex"], finished.stdout), definition

    evaluation = json.loads((finished.output_dir / "evaluation.json").read_text())
    assert evaluation["network"] == name
    assert evaluation["metrics"] == {
        metric: {"value": pytest.approx(value, rel=1e-5)} for metric, value in final.items()
    }
    assert {"training_curves.png", f"{network.task.plot}.png"} <= {
        path.name for path in finished.output_dir.glob("*.png")
    }

    model_dir = finished.model_dir
    assert sorted(path.name for path in model_dir.iterdir()) == ["1", "code"]
    code = {path.name for path in (model_dir / "code").iterdir()}
    # code/lib: the serving container's packages, so that the endpoint installs nothing at start.
    assert {"inference.py", "request_forms.py", "serving.json", "lib"} <= code and "requirements.txt" not in code
    assert {"numpy", "PIL"} <= {path.name for path in (model_dir / "code" / "lib").iterdir()}
    serving = serving_config(model_dir)
    input_dtype = records.model_dtype(
        records.read_spec(small_data(name)["train"], "train").features[network.input_name]
    )
    assert (serving["network"], serving["input_name"], serving["input_dtype"]) == (
        name,
        network.input_name,
        input_dtype,
    )
    assert network.task.serving_description().items() <= serving.items()
    assert set(network.task.serving_fields) <= set(serving)

    signature = tf.saved_model.load(str(model_dir / "1")).signatures["serving_default"]
    assert set(signature.structured_input_signature[1]) == {network.input_name}
    sample = network.task.sample_inputs(serving, np.random.default_rng(0), 3)
    answer = signature(**{network.input_name: tf.constant(sample, input_dtype)})
    assert set(answer) == set(network.task.outputs)
    assert all(value.dtype == tf.float32 and value.shape[0] == 3 for value in answer.values())
    assert all(np.isfinite(value.numpy()).all() for value in answer.values())
    ANSWER_CHECKS[network.task.name](answer, serving, evaluation, signature)


def test_cnn_through_sagemakers_own_launcher(tmp_path, small_data):
    """The toolkit's `train` script, SDK v2-style JSON-quoted hyperparameters, SM_* variables."""
    from mlops.local.training_job import run_training_job

    result = run_training_job(
        "cnn",
        small_data("cnn"),
        tmp_path / "job",
        hyperparameter_encoding="json",
        hyperparameters={"epochs": 2, "class_weight": "balanced", "learning_rate": 0.003},
    )
    assert result.succeeded, result.log[-3000:]
    assert "Invoking script with the following command" in result.log
    assert "--class_weight balanced" in result.log and "'class_weight': 'balanced'" in result.log
    assert result.epochs == [1, 2]
    assert 0.0 <= result.final_metrics["test_accuracy"] <= 1.0
    assert (result.model_dir / "1" / "saved_model.pb").exists()
    assert (result.model_dir / "code" / "inference.py").exists()
    assert (result.output_dir / "evaluation.json").exists()
    assert (result.job_dir / "output" / "success").exists()
    with tarfile.open(result.model_tarball(tmp_path / "model.tar.gz")) as archive:
        assert {"1/saved_model.pb", "code/serving.json", "code/inference.py"} <= set(archive.getnames())
