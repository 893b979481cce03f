"""Spot-safe checkpoints: a killed job resumes where it was, early stopping included."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from contract import SpotCheckpoint

# slow: trains, interrupts and resumes.
pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCRIPTED_VAL_LOSS = [1.0, 0.5, 0.6, 0.7, 0.8, 0.9]  # best at epoch 2; patience 2 stops after epoch 4


class _ScriptedValLoss(keras.callbacks.Callback):
    """Sets val_loss per epoch before EarlyStopping reads it, so when it stops is known."""

    def on_epoch_end(self, epoch, logs=None):
        logs["val_loss"] = SCRIPTED_VAL_LOSS[epoch]


class _Interrupted(Exception):
    pass


class _Recorder(keras.callbacks.Callback):
    """Weights after each epoch; raises after `stop_after` epochs, as a reclaimed instance would."""

    def __init__(self, stop_after=None):
        super().__init__()
        self.stop_after, self.weights, self.epochs = stop_after, {}, []

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(epoch + 1)
        self.weights[epoch + 1] = self.model.get_weights()
        if epoch + 1 == self.stop_after:
            raise _Interrupted


def _fit(folder: Path, recorder: _Recorder, *, fingerprint="same", epochs=6):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.Adam(0.05), "mse")
    stopping = keras.callbacks.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    checkpoint = SpotCheckpoint(
        read_dir=folder, write_dir=folder, fingerprint=fingerprint, early_stopping=stopping, epochs=epochs
    )
    x = np.random.default_rng(0).normal(size=(64, 3)).astype("float32")
    initial_epoch = checkpoint.restore(model)
    with contextlib.suppress(_Interrupted):
        model.fit(
            x,
            x.sum(axis=1),
            validation_data=(x, x.sum(axis=1)),
            epochs=epochs,
            initial_epoch=initial_epoch,
            batch_size=16,
            verbose=0,
            callbacks=[_ScriptedValLoss(), stopping, checkpoint, recorder],
        )
    return model, stopping, checkpoint, initial_epoch


def _same(first, second):
    return all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


def test_early_stopping_state_optimizer_and_epoch_resume(tmp_path):
    uninterrupted = _Recorder()
    model, stopping, _, _ = _fit(tmp_path / "whole", uninterrupted)
    assert uninterrupted.epochs == [1, 2, 3, 4] and stopping.stopped_epoch == 3

    first = _Recorder(stop_after=3)
    interrupted_model, _, _, _ = _fit(tmp_path / "spot", first)
    iterations = int(interrupted_model.optimizer.iterations.numpy())
    second = _Recorder()
    resumed_model, resumed_stopping, checkpoint, initial_epoch = _fit(tmp_path / "spot", second)

    assert initial_epoch == 3 and second.epochs == [4], "resumes after epoch 3 and stops where the whole run did"
    assert resumed_stopping.best_epoch == 1 and resumed_stopping.stopped_epoch == 3
    assert int(resumed_model.optimizer.iterations.numpy()) == iterations + 4  # 4 steps of 16 in epoch 4
    assert _same(resumed_model.get_weights(), first.weights[2]), "best weights (epoch 2) restored at the end"
    assert _same(resumed_model.get_weights(), model.get_weights())
    assert [row["val_loss"] for row in checkpoint.history] == SCRIPTED_VAL_LOSS[:4]


def test_a_finished_phase_is_not_trained_again(tmp_path):
    _fit(tmp_path, _Recorder())
    again = _Recorder()
    model, stopping, _, initial_epoch = _fit(tmp_path, again)
    assert initial_epoch == 6 and again.epochs == []
    assert stopping.best_epoch == 1 and model.get_weights() is not None


def test_only_complete_checkpoints_are_used(tmp_path, caplog):
    recorder = _Recorder(stop_after=3)
    _fit(tmp_path, recorder)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["epoch-0002", "epoch-0003"]
    newest = tmp_path / "epoch-0003" / SpotCheckpoint.WEIGHTS
    newest.write_bytes(newest.read_bytes()[:100])  # torn write, or a partial sync from S3
    (tmp_path / ".partial-epoch-0004-x").mkdir()  # killed while writing
    resumed = _Recorder(stop_after=3)
    _, _, _, initial_epoch = _fit(tmp_path, resumed)
    assert initial_epoch == 2 and resumed.epochs == [3]
    assert "epoch-0003 is incomplete" in caplog.text
    assert not (tmp_path / ".partial-epoch-0004-x").exists()


def test_checkpoints_of_other_hyperparameters_or_data_are_not_resumed(tmp_path, caplog):
    _fit(tmp_path, _Recorder(stop_after=3))
    fresh = _Recorder(stop_after=1)
    _, _, _, initial_epoch = _fit(tmp_path, fresh, fingerprint="other")
    assert initial_epoch == 0 and fresh.epochs == [1]
    assert "other hyperparameters or data" in caplog.text


def test_a_job_killed_after_its_second_checkpoint_resumes_through_the_launcher(tmp_path, small_data):
    from mlops.local.training_job import start_training_job

    channels = small_data("cnn")
    planned = 6
    hyperparameters = {"epochs": planned, "patience": planned, "batch_size": 16}
    job = start_training_job("cnn", channels, tmp_path / "job", hyperparameters=hyperparameters)
    second_checkpoint = job.checkpoint_dir / "train" / "epoch-0002"
    deadline = time.monotonic() + 120
    while not second_checkpoint.exists() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    job.kill()
    killed = job.wait()
    assert killed.exit_code == -9 and second_checkpoint.exists()
    assert not any((tmp_path / "job" / "model").iterdir()), "no partial model after the kill"

    resumed = start_training_job("cnn", channels, tmp_path / "job", hyperparameters=hyperparameters).wait(240)
    assert resumed.succeeded, resumed.log[-3000:]
    assert "resumed from" in resumed.log
    assert resumed.epochs[0] >= 3 and resumed.epochs[-1] == planned
    assert len(killed.epochs) + len(resumed.epochs) <= planned + 1
    assert (resumed.model_dir / "1" / "saved_model.pb").exists()
    assert not (job.checkpoint_dir / "train").exists(), "a finished job leaves no checkpoint to resume by mistake"
