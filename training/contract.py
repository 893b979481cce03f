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

This module is the entry point and its error policy; the parts live beside it, one concern each:
arguments.py (what the toolkit hands the script), job.py (the `Job`), precision.py, checkpoints.py,
export.py, cluster.py. The names entry points and tests use are re-exported here, so
`import contract` stays the one import an entry point needs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import NoReturn

import tensorflow as tf

import networks
import records
from arguments import InputError
from checkpoints import SpotCheckpoint
from cluster import workers_and_index
from export import MODEL_VERSION, layer_before_output
from job import Job
from precision import Hardware, Precision, choose_precision

__all__ = [
    "EXIT_BAD_INPUT",
    "MODEL_VERSION",
    "Hardware",
    "InputError",
    "Job",
    "Precision",
    "SpotCheckpoint",
    "choose_precision",
    "exit_at_once",
    "exits_on_bad_input",
    "layer_before_output",
    "run",
    "workers_and_index",
]

EXIT_BAD_INPUT = 2


def run(network_name: str, train: Callable[[Job], None], argv: Sequence[str] | None = None) -> None:
    """Runs `train` under the contract; bad input exits 2 with a one-line message on stderr.

    With `argv` None, `run` is the process's main program (the script SageMaker launched), and a
    finished job ends the process at once (`exit_at_once`)."""
    logging.basicConfig(
        level=logging.INFO, stream=sys.stdout, force=True, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
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
    if argv is None:
        exit_at_once()


def exit_at_once(status: int = 0) -> NoReturn:
    """Ends a process whose work is written, without Python's teardown: unloading TensorFlow's
    modules and stopping its threads takes 1.4-1.6 s on 2 cores, and nothing is left to save
    (every file is closed; what Python buffers, the streams and logging, is flushed here)."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


@contextlib.contextmanager
def exits_on_bad_input() -> Iterator[None]:
    """Bad input (a hyperparameter, a channel, its data) ends the process with exit code 2 and a
    one-line `error: ...` on stderr naming it; any other failure propagates."""
    try:
        yield
    except (InputError, records.DataError) as error:
        _exit_bad_input(str(error))
    except tf.errors.InvalidArgumentError as error:
        problem = records.named_problem(error)
        if problem is None:
            raise
        _exit_bad_input(problem)


def _exit_bad_input(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(EXIT_BAD_INPUT)
