"""SageMaker's training contract, in one place, for every entry point.

An entry point is a function of a `Job` handed to `run`:

    def train(job: contract.Job) -> None: ...
    if __name__ == "__main__":
        contract.run("cnn", train)

`run` reads what SageMaker's training toolkit gives a script:
- hyperparameters as `--name value` arguments (the registry's knobs; unknown extras are ignored,
  since SageMaker adds its own), each parsed by `Hyperparameter.parse`;
- `SM_MODEL_DIR`, `SM_OUTPUT_DATA_DIR`, `SM_CHANNEL_<NAME>` (each overridable by `--model_dir`,
  `--output_dir`, `--<channel>`, which is also how the script runs on local folders);
- `--checkpoint_dir` (SageMaker syncs `/opt/ml/checkpoints`, its default inside a job; it is not
  remapped by SAGEMAKER_BASE_DIR);
- `TF_CONFIG` (multi-worker: MultiWorkerMirroredStrategy when it names more than one worker),
  `SM_HOSTS` / `SM_CURRENT_HOST` (which host is the chief when there is no TF_CONFIG).

It gives the script the validated channels as streamed datasets, a `fit` with spot-safe
checkpoints and early stopping, one metrics line format, and an atomic model export. It picks
the numeric policy once, from the hardware (`choose_precision`), unless the `precision`
hyperparameter names one. Bad input (hyperparameter, channel, data) ends the run with exit code
2 and a one-line message naming it; the model dir is never left with a partial model.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import math
import os
import re
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import keras
import numpy as np
import tensorflow as tf

import evaluation
import networks
import records

log = logging.getLogger("training")

SAGEMAKER_CHECKPOINT_DIR = "/opt/ml/checkpoints"
MODEL_VERSION = "1"
EXIT_BAD_INPUT = 2
# Training steps per call of Keras' compiled train function (see `Job.steps_per_execution`).
STEPS_PER_EXECUTION = 16


class InputError(ValueError):
    """Bad input from whoever started the job: a hyperparameter, a missing channel, a shape."""


def run(network_name: str, train: Callable[[Job], None], argv: Sequence[str] | None = None) -> None:
    """Runs `train` under the contract; bad input exits 2 with a one-line message on stderr."""
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Datasets arrive shuffled and of unknown length by design; Keras warns about both.
    warnings.filterwarnings("ignore", message="`shuffle=True` was passed")
    warnings.filterwarnings("ignore", message="Your input ran out of data")
    job = None
    try:
        with exits_on_bad_input():
            job = Job.from_arguments(networks.get_network(network_name), sys.argv[1:] if argv is None else argv)
            job.use_precision()
            train(job)
            job.finish()
    finally:
        if job is not None:
            job.discard_scratch()


@contextlib.contextmanager
def exits_on_bad_input() -> Iterator[None]:
    """Bad input (a hyperparameter, a channel, its data) ends the process with exit code 2 and a
    one-line `error: ...` on stderr naming it; any other failure propagates."""
    try:
        yield
    except (InputError, records.DataError) as error:
        _exit_bad_input(str(error))
    except tf.errors.InvalidArgumentError as error:
        problem = _named_problem(error)
        if problem is None:
            raise
        _exit_bad_input(problem)


def _named_problem(error: tf.errors.InvalidArgumentError) -> str | None:
    """The message of a stream check (NaN, record shape, label range), which names the channel."""
    # TF quotes an assertion's message as "[message] [Condition ...]" and a check_numerics one
    # as "message : Tensor had NaN values".
    found = re.search(r"channel '[^']+'.*?(?=\] \[| : Tensor|\n|$)", error.message.replace("\\'", "'"))
    return found.group(0).strip() if found else None


def _exit_bad_input(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(EXIT_BAD_INPUT)


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
        arguments, extras = _parser(network).parse_known_args(list(argv))
        if extras:
            log.info("ignoring arguments this entry point does not know: %s", " ".join(extras))
        hyperparameters = SimpleNamespace()
        for knob in network.hyperparameters:
            try:
                setattr(hyperparameters, knob.name, knob.parse(getattr(arguments, knob.name)))
            except ValueError as error:
                raise InputError(f"bad hyperparameter: {error}") from None

        channels = {}
        for channel in network.channels:
            given = getattr(arguments, channel) or os.environ.get(f"SM_CHANNEL_{channel.upper()}")
            if given:
                channels[channel] = Path(given)
            elif channel in network.required_channels:
                raise InputError(f"channel {channel!r} is missing: set SM_CHANNEL_{channel.upper()} "
                                 f"or pass --{channel} DIR")
        model_dir = arguments.model_dir
        if model_dir and model_dir.startswith("s3://"):
            # SDK v2's TensorFlow estimator passes an S3 model_dir meant for TF checkpoints.
            log.info("model_dir %s is an S3 location; the model is written to SM_MODEL_DIR", model_dir)
            model_dir = None
        output_dir = Path(arguments.output_dir or os.environ.get("SM_OUTPUT_DATA_DIR", "output"))
        in_sagemaker = "SM_MODEL_DIR" in os.environ
        checkpoint_dir = Path(arguments.checkpoint_dir or (
            SAGEMAKER_CHECKPOINT_DIR if in_sagemaker else output_dir / "checkpoints"))

        workers, task_index = _cluster()
        multi_worker = len(workers) > 1
        if multi_worker:
            _work_around_keras_multi_worker_bugs()
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
            is_chief = task_index == 0
        else:
            strategy = tf.distribute.get_strategy()
            hosts = json.loads(os.environ.get("SM_HOSTS", "[]"))
            is_chief = not hosts or os.environ.get("SM_CURRENT_HOST") == hosts[0]
            if len(hosts) > 1:
                log.warning("%d hosts but no multi-worker TF_CONFIG: each trains alone, only %s saves",
                            len(hosts), hosts[0])
        keras.utils.set_random_seed(hyperparameters.seed)

        job = cls(network=network, hyperparameters=hyperparameters, channels=channels,
                  model_dir=Path(model_dir or os.environ.get("SM_MODEL_DIR", "model")), output_dir=output_dir,
                  checkpoint_dir=checkpoint_dir, strategy=strategy, is_chief=is_chief,
                  multi_worker=multi_worker,
                  precision=choose_precision(hyperparameters.precision, Hardware.detect()))
        if not is_chief:
            # As in TensorFlow's multi-worker guide: every worker runs the same saving code
            # (it may involve collectives), only the chief's results are kept.
            job.model_dir, job.output_dir = job._scratch_dir("model"), job._scratch_dir("output")
        job._validate_channels()
        job.output_dir.mkdir(parents=True, exist_ok=True)
        log.info("network %s, hyperparameters %s, channels %s, %s", network.name, vars(hyperparameters),
                 {name: str(path) for name, path in channels.items()},
                 f"worker {task_index} of {len(workers)}" if multi_worker else "single worker")
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
                    raise records.DataError(f"channel {channel!r}: no feature {name!r} "
                                            f"(has {', '.join(spec.features)})")
            self.specs[channel] = spec
        train = self.specs["train"]
        for channel, spec in self.specs.items():
            if spec.shape(input_name) != train.shape(input_name):
                raise records.DataError(
                    f"channel {channel!r}: {input_name!r} has shape {list(spec.shape(input_name))}, "
                    f"but the train channel has {list(train.shape(input_name))}")
            if spec.class_names != train.class_names:
                raise records.DataError(f"channel {channel!r}: class names {list(spec.class_names)} differ "
                                        f"from the train channel's {list(train.class_names)}")
        problem = task.train_shape_problem(train.shape(input_name), train, self.hyperparameters)
        if problem:
            raise records.DataError(f"channel 'train': {problem}")
        for channel in self.specs:
            try:
                next(iter(self.dataset(channel, shuffle=False).take(1)))
            except tf.errors.InvalidArgumentError as error:
                raise records.DataError(_named_problem(error) or f"channel {channel!r}: records do not match "
                                        f"its spec.json: {error.message.splitlines()[0]}") from None

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
            self.channels[channel], spec, channel, inputs=self.network.input_name,
            targets=target if targets and target in spec.features else None,
            batch_size=self.hyperparameters.batch_size,
            shuffle=channel == "train" if shuffle is None else shuffle, seed=self.hyperparameters.seed,
            num_classes=len(spec.class_names) if spec.class_names else None)

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

    def fit(self, model: keras.Model, train: tf.data.Dataset, validation: tf.data.Dataset, *,
            phase: str = "train", epochs: int | None = None, class_weight: dict[int, float] | None = None) -> None:
        """`model.fit` with early stopping on val_loss (best weights restored), a metrics line per
        epoch, and a spot-safe checkpoint per epoch; resumes from the newest complete checkpoint.
        Each phase (e.g. `head`, then `fine_tune`) checkpoints separately."""
        epochs = self.hyperparameters.epochs if epochs is None else epochs
        early_stopping = keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=self.hyperparameters.patience, restore_best_weights=True)
        checkpoint = SpotCheckpoint(
            read_dir=self.checkpoint_dir / phase,
            write_dir=self.checkpoint_dir / phase if self.is_chief else self._scratch_dir("checkpoints"),
            fingerprint=self._fingerprint(phase, epochs), early_stopping=early_stopping, epochs=epochs)
        self._phases.append(phase)
        with self.strategy.scope():
            initial_epoch = checkpoint.restore(model)
            if self.multi_worker:
                model._distribute_strategy = None  # see _work_around_keras_multi_worker_bugs
            model.fit(train, validation_data=validation, epochs=epochs, initial_epoch=initial_epoch,
                      class_weight=class_weight, verbose=0,
                      callbacks=[early_stopping, checkpoint, _MetricsLine(self, epoch_offset=len(self.history))])
        offset = len(self.history)
        self.history += [{"epoch": offset + index + 1, **logs} for index, logs in enumerate(checkpoint.history)]

    def _fingerprint(self, phase: str, epochs: int) -> str:
        """What a checkpoint must have been made with to be resumed: same knobs, same data."""
        data = {channel: [(self.channels[channel] / records.SPEC_FILE).read_text(),
                          [(self.channels[channel] / shard).stat().st_size for shard in spec.shards]]
                for channel, spec in self.specs.items()}
        # The resolved policy, not just the knob: `auto` may resolve differently on another
        # instance type, and mixed_float16 adds loss-scale state to the optimizer.
        document = {"network": self.network.name, "phase": phase, "epochs": epochs,
                    "hyperparameters": vars(self.hyperparameters), "precision": self.precision.policy,
                    "data": data}
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
        evaluation.plot_training_curves(self.history, self.plot_path("training_curves"))
        document = {"network": self.network.name,
                    "metrics": {name: {"value": float(value)} for name, value in test_metrics.items()},
                    **details}
        (self.output_dir / "evaluation.json").write_text(json.dumps(document, indent=2) + "\n")

    def plot_path(self, name: str) -> Path:
        return self.output_dir / f"{name}.png"

    # ------------------------------------------------------------------------------ model

    def save_model(self, serve: Callable[[tf.Tensor], dict[str, tf.Tensor]], *, track: Sequence[Any],
                   serving: dict[str, Any]) -> Path:
        """Exports `serve` (the input, in the dtype the records give it -> the task's named outputs)
        as the TF-Serving SavedModel `1/` with signature `serving_default`, plus `code/` (serving
        handlers and serving.json: the task's serving description and the entry point's `serving`
        fields). Built in a staging folder and moved into the model dir only once complete and reloaded."""
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
        description = {"network": self.network.name, "input_name": self.network.input_name,
                       "input_shape": list(self.input_shape), "input_dtype": input_dtype,
                       "signature": "serving_default", **task.serving_description(), **serving}
        self.model_dir.mkdir(parents=True, exist_ok=True)
        staging = _staging_dir(self.model_dir)
        try:
            archive = keras.export.ExportArchive()
            for resource in track:
                archive.track(resource)
            archive.add_endpoint("serving_default", endpoint, input_signature=[input_spec])
            archive.write_out(str(staging / MODEL_VERSION), verbose=False)
            _check_signature(staging / MODEL_VERSION, input_spec, expected)
            code_dir = staging / "code"
            code_dir.mkdir()
            _copy_model_code(code_dir)
            (code_dir / "serving.json").write_text(json.dumps(description, indent=2) + "\n")
            # `1/` goes last: a SavedModel in the model dir implies its code/ is there too.
            for name in ("code", MODEL_VERSION):
                target = self.model_dir / name
                if target.exists():
                    shutil.rmtree(target)
                shutil.move(staging / name, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
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


# ---------------------------------------------------------------------------------- precision

# The `precision` knob's explicit values, as Keras policies: variables stay float32, layers compute
# in the narrower type.
PRECISION_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
# /proc/cpuinfo flags of CPUs with bfloat16 arithmetic, which oneDNN uses for convolutions and
# matrix products: AVX512_BF16 (Intel Cooper Lake and later, AMD Zen 4 and later) and AMX-BF16
# (Intel Sapphire Rapids and later).
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# NVIDIA compute capabilities: bfloat16 tensor cores from Ampere (8.0); float16 tensor cores from
# Volta (7.0); below that Keras' mixed precision guide expects no math speed-up. Under
# mixed_float16 Keras' `compile` wraps the optimizer in a LossScaleOptimizer (float16 gradients
# underflow without loss scaling); bfloat16 has float32's range and needs none.
GPU_BF16_CAPABILITY = (8, 0)
GPU_FP16_CAPABILITY = (7, 0)


@dataclass(frozen=True)
class Hardware:
    """What the precision choice depends on: the CPU's flags and each GPU's compute capability."""

    cpu_flags: frozenset[str]
    gpu_capabilities: tuple[tuple[int, int], ...] = ()

    @classmethod
    def detect(cls, cpuinfo: Path = Path("/proc/cpuinfo")) -> Hardware:
        flags: frozenset[str] = frozenset()
        try:
            for line in cpuinfo.read_text().splitlines():
                if line.startswith("flags"):
                    flags = frozenset(line.partition(":")[2].split())
                    break
        except OSError:  # not Linux: no flags known, so no bfloat16 claimed
            pass
        capabilities = tuple(
            tuple(tf.config.experimental.get_device_details(gpu).get("compute_capability") or (0, 0))
            for gpu in tf.config.list_physical_devices("GPU"))
        return cls(flags, capabilities)


@dataclass(frozen=True)
class Precision:
    policy: str
    reason: str


def choose_precision(requested: str, hardware: Hardware) -> Precision:
    """The Keras policy for the `precision` knob on this hardware. `auto`: mixed_bfloat16 where the
    hardware computes in bfloat16 (GPUs of compute capability >= 8.0, else CPUs with AVX512_BF16
    or AMX), mixed_float16 on GPUs of capability 7.x, float32 otherwise. With GPUs the model runs
    on them, so they decide, and the least capable one decides for all."""
    automatic = _automatic_precision(hardware)
    if requested == "auto":
        return Precision(automatic.policy, f"auto: {automatic.reason}")
    return Precision(PRECISION_POLICIES[requested], f"precision={requested} was asked for "
                                                    f"(auto would pick {automatic.policy}: {automatic.reason})")


def _automatic_precision(hardware: Hardware) -> Precision:
    if hardware.gpu_capabilities:
        major, minor = weakest = min(hardware.gpu_capabilities)
        gpus = f"GPU compute capability {major}.{minor}"
        if weakest >= GPU_BF16_CAPABILITY:
            return Precision("mixed_bfloat16", f"{gpus} has bfloat16 tensor cores")
        if weakest >= GPU_FP16_CAPABILITY:
            return Precision("mixed_float16", f"{gpus} has float16 but no bfloat16 tensor cores")
        return Precision("float32", f"{gpus} has no tensor cores")
    found = [flag for flag in CPU_BF16_FLAGS if flag in hardware.cpu_flags]
    if found:
        return Precision("mixed_bfloat16", f"no GPU; the CPU has {', '.join(found)}")
    return Precision("float32", f"no GPU, and the CPU has none of {', '.join(CPU_BF16_FLAGS)}")


def _parser(network: networks.Network) -> argparse.ArgumentParser:
    # No abbreviations: SageMaker's extra arguments must never match a knob by prefix.
    parser = argparse.ArgumentParser(prog=network.entry_point, description=network.summary, allow_abbrev=False)
    for knob in network.hyperparameters:
        parser.add_argument(f"--{knob.name}", default=knob.default, help=knob.help)
    for channel in network.channels:
        parser.add_argument(f"--{channel}", help=f"{channel} channel folder (default: SM_CHANNEL_{channel.upper()})")
    parser.add_argument("--model_dir", help="where the model goes (default: SM_MODEL_DIR, else ./model)")
    parser.add_argument("--output_dir", help="evaluation.json and plots (default: SM_OUTPUT_DATA_DIR, else ./output)")
    parser.add_argument("--checkpoint_dir", help=f"spot-safe checkpoints (default in a job: {SAGEMAKER_CHECKPOINT_DIR}, "
                                                 f"else OUTPUT_DIR/checkpoints)")
    return parser


def _cluster() -> tuple[list[str], int]:
    """(worker addresses, this task's index) from TF_CONFIG; one anonymous worker without it."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    cluster = config.get("cluster", {})
    workers = cluster.get("chief", []) + cluster.get("worker", [])
    task = config.get("task", {})
    index = int(task.get("index", 0)) + (len(cluster.get("chief", [])) if task.get("type") == "worker" else 0)
    return (workers or ["local"]), index


def _work_around_keras_multi_worker_bugs() -> None:
    """Keras 3.15's `fit` fails under MultiWorkerMirroredStrategy (keras-team/keras#20585):
    (1) its symbolic build reduces a nested batch with `strategy.reduce`, which collective
    strategies reject; `fit` skips that build when the model holds no strategy of its own, so
    `Job.fit` clears it and runs inside `strategy.scope()` instead. (2) it reduces scalar step
    logs with `axis=0`; this reduces them over workers with no axis, the same mean."""
    from keras.src.backend.tensorflow import trainer

    reduce_per_replica = trainer.reduce_per_replica

    def reduce_scalars_without_axis(values, strategy, reduction):
        if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(strategy):
            return tf.nest.map_structure(
                lambda value: strategy.reduce("MEAN", value, axis=None)
                if isinstance(value, tf.distribute.DistributedValues) else value, values)
        return reduce_per_replica(values, strategy, reduction)

    trainer.reduce_per_replica = reduce_scalars_without_axis


def _number(value: float) -> str:
    value = float(value)
    return "nan" if math.isnan(value) else format(value, ".6g")


def _epoch_metrics(logs: dict[str, float] | None) -> dict[str, float]:
    """Keras' epoch logs under the metrics-line names: `loss` -> `train_loss`, `val_*` kept."""
    return {(name if name.startswith("val_") else f"train_{name}"): float(value)
            for name, value in (logs or {}).items()}


class _MetricsLine(keras.callbacks.Callback):
    """`[metrics] epoch=N train_loss=... val_loss=...`, keeping only the registry's metric names."""

    def __init__(self, job: Job, *, epoch_offset: int) -> None:
        super().__init__()
        self.job, self.epoch_offset = job, epoch_offset

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        metrics = _epoch_metrics(logs)
        self.job.log_metrics(epoch=self.epoch_offset + epoch + 1,
                             **{name: metrics[name] for name in self.job.network.metrics if name in metrics})


# ---------------------------------------------------------------------------------- checkpoints

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

    def __init__(self, *, read_dir: Path, write_dir: Path, fingerprint: str,
                 early_stopping: keras.callbacks.EarlyStopping, epochs: int) -> None:
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
        self.history.append(_epoch_metrics(logs))
        self.write_dir.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f".partial-epoch-{epoch + 1:04d}-", dir=self.write_dir))
        self.model.save_weights(partial / self.WEIGHTS)
        if self.early_stopping.best_weights is not None:
            np.savez(partial / self.BEST_WEIGHTS, *self.early_stopping.best_weights)
        stopping = self.early_stopping
        state = {"fingerprint": self.fingerprint, "epoch": epoch + 1, "stopped": bool(self.model.stop_training),
                 "early_stopping": {"wait": stopping.wait, "best": None if stopping.best is None else float(stopping.best),
                                    "best_epoch": stopping.best_epoch},
                 "history": self.history,
                 "files": {path.name: _file_digest(path) for path in sorted(partial.iterdir())}}
        (partial / self.STATE).write_text(json.dumps(state))
        for path in partial.iterdir():
            _fsync(path)
        final = self.write_dir / f"epoch-{epoch + 1:04d}"
        if final.exists():
            shutil.rmtree(final)
        os.rename(partial, final)
        _fsync(self.write_dir)
        for stale in sorted(self.write_dir.glob("epoch-*"))[:-self.KEEP]:
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


# ---------------------------------------------------------------------------------- export

def _staging_dir(model_dir: Path) -> Path:
    """Beside the model dir (same file system, so moves are renames), never inside it."""
    try:
        return Path(tempfile.mkdtemp(prefix=".model-staging-", dir=model_dir.resolve().parent))
    except OSError:
        return Path(tempfile.mkdtemp(prefix="model-staging-"))


def _check_signature(path: Path, input_spec: tf.TensorSpec, expected: tuple[str, ...]) -> None:
    """Reloads the SavedModel as TF Serving would and calls it once."""
    signature = tf.saved_model.load(str(path)).signatures["serving_default"]
    outputs = signature(**{input_spec.name: tf.zeros([2, *input_spec.shape[1:]], input_spec.dtype)})
    wrong = {name: (value.dtype.name, value.shape.as_list()) for name, value in outputs.items()
             if value.dtype != tf.float32 or value.shape[0] != 2}
    if sorted(outputs) != sorted(expected) or wrong:
        raise RuntimeError(f"exported signature gives {sorted(outputs)} (wrong: {wrong}), expected {list(expected)}")


def _copy_model_code(code_dir: Path) -> None:
    """The serving handlers: `model_code/` inside the bundle, `inference/model_code/` in a checkout."""
    here = Path(__file__).resolve().parent
    for source in (here / "model_code", here.parent / "inference" / "model_code"):
        files = [path for path in source.glob("*") if path.is_file()] if source.is_dir() else []
        if files:
            for path in files:
                shutil.copy2(path, code_dir / path.name)
            return
    log.warning("no serving handlers next to %s (model_code/ or ../inference/model_code/): "
                "the artifact's code/ holds serving.json only", here)
