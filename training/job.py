"""The `Job`: one training run under SageMaker's contract (see contract.py), as an entry point sees it.
What the toolkit hands the script (arguments, `SM_*` variables) is read by arguments.py."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import keras
import tensorflow as tf

import checkpoints
import cluster
import export
import networks
import records
import scoring
from arguments import read_arguments
from precision import Hardware, Precision, choose_precision

log = logging.getLogger("training")

# Training steps per call of Keras' compiled train function (see `Job.steps_per_execution`).
STEPS_PER_EXECUTION = 16


@dataclass
class Job:
    network: networks.Network
    hyperparameters: SimpleNamespace
    channels: dict[str, Path]
    model_dir: Path
    output_dir: Path
    checkpoint_dir: Path
    strategy: tf.distribute.Strategy
    is_chief: bool
    multi_worker: bool
    precision: Precision
    specs: dict[str, records.ChannelSpec] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    _scratch: list[Path] = field(default_factory=list)
    _phases: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------------------ start

    @classmethod
    def from_arguments(cls, network: networks.Network, argv: Sequence[str]) -> Job:
        arguments = read_arguments(network, argv)
        hyperparameters, channels = arguments.hyperparameters, arguments.channels
        workers, task_index = cluster.workers_and_index()
        multi_worker = len(workers) > 1
        if multi_worker:
            cluster.work_around_keras_multi_worker_bugs()
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
            is_chief = task_index == 0
        else:
            strategy = tf.distribute.get_strategy()
            hosts = json.loads(os.environ.get("SM_HOSTS", "[]"))
            is_chief = not hosts or os.environ.get("SM_CURRENT_HOST") == hosts[0]
            if len(hosts) > 1:
                log.warning(
                    "%d hosts but no multi-worker TF_CONFIG: each trains alone, only %s saves", len(hosts), hosts[0]
                )
        keras.utils.set_random_seed(hyperparameters.seed)

        job = cls(
            network=network,
            hyperparameters=hyperparameters,
            channels=channels,
            model_dir=arguments.model_dir,
            output_dir=arguments.output_dir,
            checkpoint_dir=arguments.checkpoint_dir,
            strategy=strategy,
            is_chief=is_chief,
            multi_worker=multi_worker,
            precision=choose_precision(hyperparameters.precision, Hardware.detect()),
        )
        if not is_chief:
            # As in TensorFlow's multi-worker guide: every worker runs the same saving code
            # (it may involve collectives), only the chief's results are kept.
            job.model_dir, job.output_dir = job._scratch_dir("model"), job._scratch_dir("output")
        job._validate_channels()
        job.output_dir.mkdir(parents=True, exist_ok=True)
        log.info(
            "network %s, hyperparameters %s, channels %s, %s",
            network.name,
            vars(hyperparameters),
            {name: str(path) for name, path in channels.items()},
            f"worker {task_index} of {len(workers)}" if multi_worker else "single worker",
        )
        return job

    def use_precision(self) -> None:
        """Makes the chosen policy Keras' global one: every layer built after this computes in it.
        Process-wide, so `run` calls it once before the entry point builds its model."""
        keras.mixed_precision.set_global_policy(self.precision.policy)
        log.info("precision policy %s: %s", self.precision.policy, self.precision.reason)

    def _validate_channels(self) -> None:
        """Specs, shapes against the registry and each other, and one batch of each channel."""
        task, input_name = self.network.task, self.network.input_name
        for channel in self.network.required_channels:
            spec = records.read_spec(self.channels[channel], channel)
            for name in (input_name, task.target):
                if name not in spec.features and (name != task.target or task.target_required):
                    raise records.DataError(
                        f"channel {channel!r}: no feature {name!r} (has {', '.join(spec.features)})"
                    )
            self.specs[channel] = spec
        train = self.specs["train"]
        for channel, spec in self.specs.items():
            dtype = spec.features[input_name].dtype
            if dtype not in task.input_dtypes:
                accepted = " or ".join(task.input_dtypes)
                raise records.DataError(
                    f"channel {channel!r}: {input_name!r} holds {dtype} values; {task.name} networks take {accepted}"
                )
            if spec.shape(input_name) != train.shape(input_name):
                raise records.DataError(
                    f"channel {channel!r}: {input_name!r} has shape {list(spec.shape(input_name))}, "
                    f"but the train channel has {list(train.shape(input_name))}"
                )
            if spec.class_names != train.class_names:
                raise records.DataError(
                    f"channel {channel!r}: class names {list(spec.class_names)} differ "
                    f"from the train channel's {list(train.class_names)}"
                )
        problem = task.train_shape_problem(train.shape(input_name), train, self.hyperparameters)
        if problem:
            raise records.DataError(f"channel 'train': {problem}")
        for channel in self.specs:
            try:
                next(iter(self.dataset(channel, shuffle=False).take(1)))
            except tf.errors.InvalidArgumentError as error:
                raise records.DataError(
                    records.named_problem(error)
                    or f"channel {channel!r}: records do not match its spec.json: {error.message.splitlines()[0]}"
                ) from None

    # ------------------------------------------------------------------------------ data

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.specs["train"].shape(self.network.input_name)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.specs["train"].class_names

    def dataset(self, channel: str, *, targets: bool = True, shuffle: bool | None = None) -> tf.data.Dataset:
        """Batches of (inputs, targets), or of inputs alone; the train channel is shuffled."""
        spec = self.specs[channel]
        target = self.network.task.target
        return records.dataset(
            self.channels[channel],
            spec,
            channel,
            inputs=self.network.input_name,
            targets=target if targets and target in spec.features else None,
            batch_size=self.hyperparameters.batch_size,
            shuffle=channel == "train" if shuffle is None else shuffle,
            seed=self.hyperparameters.seed,
            num_classes=len(spec.class_names) if spec.class_names else None,
        )

    @property
    def steps_per_execution(self) -> int:
        """For `model.compile`: one call per step spends a Python round trip per batch; 16 steps
        per call cut the CNN entry point's CPU time per example by 15-20% on a 2-core CPU, in
        float32 and bfloat16 alike (callbacks here act per epoch, so they are unaffected). One
        under MultiWorkerMirroredStrategy, where Keras 3.15's multi-step loop fails ("You must
        feed a value for placeholder tensor")."""
        return 1 if self.multi_worker else STEPS_PER_EXECUTION

    def optional_channel(self, channel: str) -> Path | None:
        return self.channels.get(channel)

    def class_weight(self) -> dict[int, float] | None:
        """Inverse class frequency from the train spec's counts (no pass over the data)."""
        if self.hyperparameters.class_weight != "balanced":
            return None
        counts = self.specs["train"].class_counts
        total = sum(counts)
        return {index: total / (len(counts) * max(count, 1)) for index, count in enumerate(counts)}

    # ------------------------------------------------------------------------------ training

    def fit(
        self,
        model: keras.Model,
        train: tf.data.Dataset,
        validation: tf.data.Dataset,
        *,
        phase: str = "train",
        epochs: int | None = None,
        class_weight: dict[int, float] | None = None,
    ) -> None:
        """`model.fit` with early stopping on val_loss (best weights restored), a metrics line per
        epoch, and a spot-safe checkpoint per epoch; resumes from the newest complete checkpoint.
        Each phase (e.g. `head`, then `fine_tune`) checkpoints separately."""
        epochs = self.hyperparameters.epochs if epochs is None else epochs
        early_stopping = keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=self.hyperparameters.patience, restore_best_weights=True
        )
        checkpoint = checkpoints.SpotCheckpoint(
            read_dir=self.checkpoint_dir / phase,
            write_dir=self.checkpoint_dir / phase if self.is_chief else self._scratch_dir("checkpoints"),
            fingerprint=self._fingerprint(phase, epochs),
            early_stopping=early_stopping,
            epochs=epochs,
        )
        self._phases.append(phase)
        with self.strategy.scope():
            initial_epoch = checkpoint.restore(model)
            if self.multi_worker:
                model._distribute_strategy = None  # see cluster.work_around_keras_multi_worker_bugs
            model.fit(
                train,
                validation_data=validation,
                epochs=epochs,
                initial_epoch=initial_epoch,
                class_weight=class_weight,
                verbose=0,
                callbacks=[early_stopping, checkpoint, _MetricsLine(self, epoch_offset=len(self.history))],
            )
        offset = len(self.history)
        self.history += [{"epoch": offset + index + 1, **logs} for index, logs in enumerate(checkpoint.history)]
        kept = checkpoints.kept_validation_metrics(early_stopping, checkpoint.history, self.network.metrics)
        if kept:
            self.log_metrics(**kept)

    def _fingerprint(self, phase: str, epochs: int) -> str:
        """What a checkpoint must have been made with to be resumed: same knobs, same data."""
        data = {
            channel: [
                (self.channels[channel] / records.SPEC_FILE).read_text(),
                [(self.channels[channel] / shard).stat().st_size for shard in spec.shards],
            ]
            for channel, spec in self.specs.items()
        }
        # The resolved policy, not just the knob: `auto` may resolve differently on another
        # instance type, and mixed_float16 adds loss-scale state to the optimizer.
        document = {
            "network": self.network.name,
            "phase": phase,
            "epochs": epochs,
            "hyperparameters": vars(self.hyperparameters),
            "precision": self.precision.policy,
            "data": data,
        }
        return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()

    # ------------------------------------------------------------------------------ reporting

    def log_metrics(self, **values: float) -> None:
        """One metrics line (`[metrics] name=value ...`), scraped by SageMaker's MetricDefinitions."""
        if self.is_chief:
            text = " ".join(f"{name}={_number(value)}" for name, value in values.items())
            print(f"{networks.METRICS_LINE_PREFIX} {text}", flush=True)

    def report(self, test_metrics: dict[str, float], **details: Any) -> None:
        """Prints the test metrics line, writes `evaluation.json` (plus any `details`) and the
        training curves of every epoch, including those run before a resume."""
        self.log_metrics(**test_metrics)
        scoring.plot_training_curves(self.history, self.plot_path("training_curves"))
        document = {
            "network": self.network.name,
            "metrics": {name: {"value": float(value)} for name, value in test_metrics.items()},
            **details,
        }
        (self.output_dir / "evaluation.json").write_text(json.dumps(document, indent=2) + "\n")

    def plot_path(self, name: str) -> Path:
        return self.output_dir / f"{name}.png"

    # ------------------------------------------------------------------------------ model

    def save_model(
        self,
        serve: Callable[[tf.Tensor], dict[str, tf.Tensor]],
        *,
        track: Sequence[Any],
        serving: dict[str, Any],
        embedding: Callable[[tf.Tensor], tf.Tensor] | None = None,
        drift_features: Callable[[tf.Tensor], dict[str, tf.Tensor]] | None = None,
        signatures: dict[str, export.Signature] | None = None,
    ) -> Path:
        """Exports `serve` (the input, in the dtype the records give it -> the task's named outputs)
        as the TF-Serving SavedModel `1/` with signature `serving_default`, plus `code/` (serving
        handlers and serving.json: the task's serving description and the entry point's `serving`
        fields). `embedding` (the input -> the layer before the output) becomes the signature
        `embedding`, which the drift baseline and monitor read, as are `drift_features` (the input ->
        name -> one number per example, signature `drift_features`). `signatures` are further ones
        by name, each with its own input specs, which the task's explanations read. Built in a
        staging folder and moved into the model dir only once complete and reloaded."""
        task = self.network.task
        expected = task.outputs
        missing = [name for name in task.serving_fields if name not in serving]
        if missing:
            raise ValueError(f"{task.name} needs serving fields {', '.join(missing)} for serving.json")

        def endpoint(inputs: tf.Tensor) -> dict[str, tf.Tensor]:
            outputs = serve(inputs)
            if set(outputs) != set(expected):
                raise ValueError(f"{task.name} must return {expected}, got {tuple(outputs)}")
            return {name: tf.cast(outputs[name], tf.float32) for name in expected}

        input_dtype = records.model_dtype(self.specs["train"].features[self.network.input_name])
        input_spec = tf.TensorSpec([None, *self.input_shape], input_dtype, name=self.network.input_name)
        description = {
            "network": self.network.name,
            "input_name": self.network.input_name,
            "input_shape": list(self.input_shape),
            "input_dtype": input_dtype,
            "signature": "serving_default",
            **task.serving_description(),
            **serving,
        }
        further = dict(signatures or {})
        if drift_features is not None:
            further[export.DRIFT_FEATURES_SIGNATURE] = (
                lambda inputs: {name: tf.cast(value, tf.float32) for name, value in drift_features(inputs).items()},
                [input_spec],
            )
        export.write_model(
            self.model_dir,
            endpoint,
            input_spec,
            expected,
            track=track,
            description=description,
            embedding=embedding,
            signatures=further,
        )
        log.info("model written to %s", self.model_dir)
        return self.model_dir

    # ------------------------------------------------------------------------------ end

    def finish(self) -> None:
        """After a complete run the checkpoints are spent: a later job must not resume them."""
        if self.is_chief:
            for phase in self._phases:
                shutil.rmtree(self.checkpoint_dir / phase, ignore_errors=True)

    def _scratch_dir(self, purpose: str) -> Path:
        path = Path(tempfile.mkdtemp(prefix=f"{purpose}-"))
        self._scratch.append(path)
        return path

    def discard_scratch(self) -> None:
        for path in self._scratch:
            shutil.rmtree(path, ignore_errors=True)


def _number(value: float) -> str:
    value = float(value)
    return "nan" if math.isnan(value) else format(value, ".6g")


class _MetricsLine(keras.callbacks.Callback):
    """`[metrics] epoch=N train_loss=... val_loss=...`, keeping only the registry's metric names."""

    def __init__(self, job: Job, *, epoch_offset: int) -> None:
        super().__init__()
        self.job, self.epoch_offset = job, epoch_offset

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        metrics = checkpoints.epoch_metrics(logs)
        self.job.log_metrics(
            epoch=self.epoch_offset + epoch + 1,
            **{name: metrics[name] for name in self.job.network.metrics if name in metrics},
        )
