"""Two workers on one machine train one CNN together; only the chief exports it."""

from __future__ import annotations

import json

import pytest
import tensorflow as tf

# slow: trains with two workers.
pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_two_workers_train_one_cnn_and_only_the_chief_exports(tmp_path, small_data):
    from mlops.local.training_job import run_multi_worker_training_job

    chief, worker = run_multi_worker_training_job(
        "cnn", small_data("cnn"), tmp_path, workers=2, timeout=300, hyperparameters={"epochs": 2}
    )
    assert chief.succeeded, chief.log[-3000:]
    assert worker.succeeded, worker.log[-3000:]
    for result, index in ((chief, 0), (worker, 1)):
        assert f"worker {index} of 2" in result.log
        assert "group_size = 2" in result.log, "gradients all-reduced across both workers"
        config = json.loads((result.job_dir / "input" / "config" / "resourceconfig.json").read_text())
        assert config["hosts"] == ["127.0.0.1", "127.0.0.2"] and config["current_host"] == config["hosts"][index]

    assert chief.epochs == [1, 2] and "test_accuracy" in chief.final_metrics
    assert chief.metrics and not worker.metrics, "one set of metrics lines, from the chief"
    assert sorted(path.name for path in chief.model_dir.iterdir()) == ["1", "code"]
    assert (chief.output_dir / "evaluation.json").exists()
    assert not any(worker.model_dir.iterdir()) and not any(worker.output_dir.iterdir())
    assert not (chief.checkpoint_dir / "train").exists()

    image_shape = json.loads((small_data("cnn")["test"] / "spec.json").read_text())["features"]["image"]["shape"]
    signature = tf.saved_model.load(str(chief.model_dir / "1")).signatures["serving_default"]
    assert signature(image=tf.zeros([1, *image_shape]))["probabilities"].shape == (1, 10)
