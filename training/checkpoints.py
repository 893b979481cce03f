"""Spot-safe checkpoints: the training state after every epoch, complete or ignored."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import keras
import numpy as np

log = logging.getLogger("training")


def epoch_metrics(logs: dict[str, float] | None) -> dict[str, float]:
    """Keras' epoch logs under the metrics-line names: `loss` -> `train_loss`, `val_*` kept."""
    return {
        (name if name.startswith("val_") else f"train_{name}"): float(value) for name, value in (logs or {}).items()
    }


def kept_validation_metrics(
    early_stopping: keras.callbacks.EarlyStopping, history: list[dict[str, float]], metrics: tuple[str, ...]
) -> dict[str, float]:
    """The validation `metrics` of the epoch whose weights EarlyStopping restored when training
    ended (Keras 3 restores its best epoch's whenever it has them), or {} if it kept none. Printed
    last, they are what FinalMetricDataList and a tuning job's objective take (the last value of
    each metric): the saved model's, not the last epoch's."""
    if early_stopping.best_weights is None or not 0 <= early_stopping.best_epoch < len(history):
        return {}
    kept = history[early_stopping.best_epoch]
    return {name: kept[name] for name in metrics if name.startswith("val_") and name in kept}


class SpotCheckpoint(keras.callbacks.Callback):
    """The training state after every epoch, so a spot interruption costs at most one epoch.

    Keras' BackupAndRestore restores weights, optimizer and epoch, but not EarlyStopping's
    state (its wait count and best weights restart from scratch), it overwrites one file in
    place (a kill mid-write leaves a torn checkpoint), and it writes from every worker. This
    one saves weights with optimizer state, the epoch and EarlyStopping's state, each into a
    fresh folder renamed into place when complete; `state.json`, written last, lists every
    file's size and SHA-256, so a folder that SageMaker synced only partly is skipped as well.
    The newest complete checkpoint with the same fingerprint (knobs, data) wins; older ones are
    kept until a newer one is complete.
    """

    KEEP = 2
    WEIGHTS = "state.weights.h5"
    BEST_WEIGHTS = "best_weights.npz"
    STATE = "state.json"

    def __init__(
        self,
        *,
        read_dir: Path,
        write_dir: Path,
        fingerprint: str,
        early_stopping: keras.callbacks.EarlyStopping,
        epochs: int,
    ) -> None:
        super().__init__()
        self.read_dir, self.write_dir = read_dir, write_dir
        self.fingerprint, self.early_stopping, self.epochs = fingerprint, early_stopping, epochs
        self.history: list[dict[str, float]] = []
        self._restored: dict[str, Any] | None = None
        self._restored_best_weights: list[np.ndarray] | None = None

    def restore(self, model: keras.Model) -> int:
        """Loads the newest complete checkpoint into `model`; returns the epoch to start from."""
        for folder in sorted(self.read_dir.glob("epoch-*"), reverse=True):
            state = self._complete_state(folder)
            if state is None:
                log.warning("checkpoint %s is incomplete; trying an older one", folder)
                continue
            if state["fingerprint"] != self.fingerprint:
                log.warning("checkpoints in %s come from other hyperparameters or data; starting fresh", self.read_dir)
                return 0
            if model.optimizer is not None and not model.optimizer.built:
                model.optimizer.build(model.trainable_variables)
            model.load_weights(folder / self.WEIGHTS)
            if (folder / self.BEST_WEIGHTS).exists():
                with np.load(folder / self.BEST_WEIGHTS) as best:
                    self._restored_best_weights = [best[f"arr_{index}"] for index in range(len(best.files))]
            self._restored = state
            self.history = state["history"]
            finished = state["stopped"] or state["epoch"] >= self.epochs
            log.info("resumed from %s (%d epochs done%s)", folder, state["epoch"], ", finished" if finished else "")
            return self.epochs if finished else state["epoch"]
        return 0

    def on_train_begin(self, logs: dict | None = None) -> None:
        # Runs after EarlyStopping.on_train_begin, which resets its state.
        if self._restored is not None:
            for name, value in self._restored["early_stopping"].items():
                setattr(self.early_stopping, name, value)
            self.early_stopping.best_weights = self._restored_best_weights

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.history.append(epoch_metrics(logs))
        self.write_dir.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f".partial-epoch-{epoch + 1:04d}-", dir=self.write_dir))
        self.model.save_weights(partial / self.WEIGHTS)
        if self.early_stopping.best_weights is not None:
            np.savez(partial / self.BEST_WEIGHTS, *self.early_stopping.best_weights)
        stopping = self.early_stopping
        state = {
            "fingerprint": self.fingerprint,
            "epoch": epoch + 1,
            "stopped": bool(self.model.stop_training),
            "early_stopping": {
                "wait": stopping.wait,
                "best": None if stopping.best is None else float(stopping.best),
                "best_epoch": stopping.best_epoch,
            },
            "history": self.history,
            "files": {path.name: _file_digest(path) for path in sorted(partial.iterdir())},
        }
        (partial / self.STATE).write_text(json.dumps(state))
        for path in partial.iterdir():
            _fsync(path)
        final = self.write_dir / f"epoch-{epoch + 1:04d}"
        if final.exists():
            shutil.rmtree(final)
        os.rename(partial, final)
        _fsync(self.write_dir)
        for stale in sorted(self.write_dir.glob("epoch-*"))[: -self.KEEP]:
            shutil.rmtree(stale, ignore_errors=True)
        for leftover in self.write_dir.glob(".partial-*"):
            if leftover != partial:
                shutil.rmtree(leftover, ignore_errors=True)

    def _complete_state(self, folder: Path) -> dict[str, Any] | None:
        try:
            state = json.loads((folder / self.STATE).read_text())
            files = state["files"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if self.WEIGHTS not in files:
            return None
        for name, digest in files.items():
            if not (folder / name).is_file() or _file_digest(folder / name) != digest:
                return None
        return state


def _file_digest(path: Path) -> dict[str, Any]:
    sha256 = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha256.update(block)
    return {"size": path.stat().st_size, "sha256": sha256.hexdigest()}


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
