"""Each entry point trains on a small offline slice in its own process and exports a servable model."""

from __future__ import annotations

import json
import re
import tarfile

import numpy as np
import pytest
import tensorflow as tf

import networks
from training_support import metrics_lines, run_entry_point, serving_config, small_data  # noqa: F401

pytestmark = pytest.mark.integration

SIGNATURE_OUTPUTS = {
    "image_classifier": {"probabilities"},
    "sequence_forecaster": {"forecast"},
    "anomaly_detector": {"reconstruction_error", "threshold", "embedding"},
}
PLOTS = {
    "cnn": {"training_curves.png", "confusion_matrix.png"},
    "transfer": {"training_curves.png", "confusion_matrix.png"},
    "rnn": {"training_curves.png", "forecast_vs_actual.png"},
    "autoencoder": {"training_curves.png", "reconstruction_error.png"},
}


def _sample_input(network: networks.Network, serving: dict, rows: int = 3) -> np.ndarray:
    rng = np.random.default_rng(0)
    if network.task == "image_classifier":
        return rng.uniform(0, 255, size=(rows, *serving["input_shape"])).astype(np.float32)
    if network.task == "sequence_forecaster":
        return (340 + rng.normal(size=(rows, *serving["input_shape"]))).astype(np.float32)
    return rng.uniform(0, 100, size=(rows, *serving["input_shape"])).astype(np.float32)


@pytest.mark.parametrize("name", list(networks.NETWORKS))
def test_entry_point_trains_and_exports_a_servable_model(tmp_path, small_data, name):  # noqa: F811
    network = networks.get_network(name)
    # transfer: 2 epochs of the head, then 2 fine-tuning the last base layers, numbered on.
    phases = {"fine_tune_epochs": 2} if name == "transfer" else {}
    finished = run_entry_point(name, small_data(name), tmp_path, **phases)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]

    lines = metrics_lines(finished.stdout)
    epochs = [line for line in lines if "epoch" in line]
    assert [line["epoch"] for line in epochs] == ([1, 2, 3, 4] if phases else [1, 2])
    assert set(epochs[0]) == {"epoch"} | {metric for metric in network.metrics if not metric.startswith("test_")}
    final = lines[-1]
    assert set(final) == {metric for metric in network.metrics if metric.startswith("test_")}
    for definition in network.metric_definitions:  # what SageMaker's MetricDefinitions scrape
        assert re.search(definition["Regex"], finished.stdout), definition

    output = tmp_path / "output"
    evaluation = json.loads((output / "evaluation.json").read_text())
    assert evaluation["network"] == name
    assert evaluation["metrics"] == {metric: {"value": pytest.approx(value, rel=1e-5)} for metric, value in final.items()}
    assert PLOTS[name] <= {path.name for path in output.glob("*.png")}

    model_dir = tmp_path / "model"
    assert sorted(path.name for path in model_dir.iterdir()) == ["1", "code"]
    assert {"inference.py", "requirements.txt", "serving.json"} <= {path.name for path in (model_dir / "code").iterdir()}
    serving = serving_config(model_dir)
    assert (serving["network"], serving["task"], serving["input_name"], serving["input_dtype"]) == (
        name, network.task, network.input_name, "float32")

    signature = tf.saved_model.load(str(model_dir / "1")).signatures["serving_default"]
    assert set(signature.structured_input_signature[1]) == {network.input_name}
    answer = signature(**{network.input_name: tf.constant(_sample_input(network, serving))})
    assert set(answer) == SIGNATURE_OUTPUTS[network.task]
    assert all(value.dtype == tf.float32 and value.shape[0] == 3 for value in answer.values())
    assert all(np.isfinite(value.numpy()).all() for value in answer.values())
    if network.task == "image_classifier":
        assert answer["probabilities"].shape == (3, len(serving["class_names"]))
        np.testing.assert_allclose(answer["probabilities"].numpy().sum(axis=1), 1.0, rtol=1e-5)
    elif network.task == "sequence_forecaster":
        assert (serving["window"], serving["n_features"]) == tuple(serving["input_shape"])
        assert answer["forecast"].shape == (3, serving["horizon"])
        # In the series' own units: next to the ~340 ppm it was given, not a standardized value.
        assert np.all(np.abs(answer["forecast"].numpy() - 340) < 20)
    else:
        assert answer["embedding"].shape == (3, serving["encoding_dim"])
        assert answer["reconstruction_error"].shape == (3,)
        np.testing.assert_allclose(answer["threshold"].numpy(), serving["threshold"], rtol=1e-6)
        assert evaluation["threshold"] == pytest.approx(serving["threshold"])


def test_cnn_through_sagemakers_own_launcher(tmp_path, small_data):  # noqa: F811
    """The toolkit's `train` script, SDK v2-style JSON-quoted hyperparameters, SM_* variables."""
    from mlops.local.training_job import run_training_job

    result = run_training_job("cnn", small_data("cnn"), tmp_path / "job", hyperparameter_encoding="json",
                              hyperparameters={"epochs": 2, "class_weight": "balanced", "learning_rate": 0.003})
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
