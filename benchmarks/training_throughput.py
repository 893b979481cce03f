"""The CNN entry point's training throughput against plain `model.fit`, and its peak memory against data size.

    .venv/bin/python benchmarks/training_throughput.py [--examples 60000] [--epochs 4] [--repeats 3]

Data: cnn_runs.digits_split, MNIST-sized images (28x28x1 uint8) made from sklearn digits
(upsampled 3x, randomly placed and speckled), written as records channels.

Throughput: `training/cnn.py` (records pipeline, per-epoch checkpoint, metrics line, its
`precision` left at `auto`) against `model.fit` of the same model (`cnn.build_model`, under the
numeric policy the entry point picks on this machine) on the same images as in-memory arrays,
each in its own process, `--repeats` times, alternating which goes first. An epoch's time is the
gap between two consecutive epoch-end lines (training plus validation in both); the first epoch
(tracing, warm-up) is excluded from both. Required: median entry point / median plain fit >= 0.95.
Each run's CPU time per sample (user + system, all threads, over the same epochs) is printed too:
other processes' load moves wall time a lot on a small machine, CPU time hardly.

Memory: peak RSS (VmHWM, sampled) of a whole entry-point run (1 epoch, evaluation, export) on
the data repeated 8x against 1x (`--memory-examples` training examples). Required: <= 1.25.

Measured on the 2-core build machine (AMD EPYC, AVX512_BF16: policy mixed_bfloat16), 28 Nov 2026,
`--epochs 6 --repeats 5`, 60,000 examples, batch 128, machine otherwise idle (load average 0.6-1.9):
    plain model.fit  24,328 samples/s (runs 20,014-24,766), 59.6 CPU us/sample
    entry point      27,324 samples/s (runs 25,657-31,606), 55.1 CPU us/sample
    ratio 1.123 (required >= 0.95); by CPU time 1.082
    peak RSS 746 MB with 20,000 examples, 755 MB with 160,000: ratio 1.012 (required <= 1.25)
The entry point's edge comes from its `steps_per_execution` (job.py); its records pipeline
costs a few CPU microseconds per sample more than in-memory arrays.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from cnn_runs import (
    CLASS_NAMES,
    ENTRY_POINT_EPOCH_MARKER,
    EpochEnds,
    digits_split,
    entry_point_command,
    epoch_ends,
    write_channels,
)


def knobs(arguments) -> dict[str, float | int]:
    from networks import get_network

    values = get_network("cnn").default_hyperparameters
    values.update(epochs=arguments.epochs, batch_size=arguments.batch_size, patience=arguments.epochs + 1)
    return values


def plain_fit(data: Path, values: dict) -> None:
    """The baseline, run as its own process: the same model, `model.fit` on in-memory arrays."""
    import keras

    import cnn
    import contract
    import records

    def arrays(channel):
        spec = records.read_spec(data / channel, channel)
        batches = list(records.dataset(data / channel, spec, channel, inputs="image", targets="label", batch_size=4096))
        return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])

    (x, y), validation = arrays("train"), arrays("validation")
    keras.utils.set_random_seed(values["seed"])
    # The numeric policy the entry point picks for the same `precision` knob on this machine:
    # the same model, computed the same way.
    precision = contract.choose_precision(values["precision"], contract.Hardware.detect())
    keras.mixed_precision.set_global_policy(precision.policy)
    model = cnn.build_model(x.shape[1:], len(CLASS_NAMES), SimpleNamespace(**values))
    report = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: print(f"epoch-end {epoch}", flush=True))
    model.fit(
        x,
        y,
        validation_data=validation,
        epochs=values["epochs"],
        batch_size=values["batch_size"],
        shuffle=True,
        verbose=0,
        callbacks=[report],
    )


def peak_rss(command: list[str]) -> int:
    """The process's peak resident set (VmHWM, bytes), sampled until it exits."""
    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    peak = 0
    errors: list[str] = []
    reader = threading.Thread(target=lambda: errors.extend(process.stderr or ()), daemon=True)
    reader.start()
    status = Path(f"/proc/{process.pid}/status")
    while process.poll() is None:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) * 1024)
        except (FileNotFoundError, ProcessLookupError):
            break
        time.sleep(0.05)
    if process.wait() != 0:
        reader.join()
        raise SystemExit(f"memory run failed:\n{''.join(errors[-40:])}")
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=60_000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-examples", type=int, default=20_000, help="training examples of the 1x run")
    parser.add_argument("--plain-fit", type=Path, help=argparse.SUPPRESS)  # internal: the baseline process
    arguments = parser.parse_args()
    values = knobs(arguments)
    if arguments.plain_fit:
        plain_fit(arguments.plain_fit, values)
        return

    with tempfile.TemporaryDirectory(prefix="throughput-") as scratch:
        work = Path(scratch)
        channels = write_channels(work / "data", digits_split(arguments.examples))
        plain_command = [
            sys.executable,
            __file__,
            "--plain-fit",
            str(work / "data"),
            "--epochs",
            str(arguments.epochs),
            "--batch-size",
            str(arguments.batch_size),
        ]
        measured: dict[str, list[EpochEnds]] = {"plain model.fit": [], "entry point": []}
        for repeat in range(arguments.repeats):
            arms = {
                "plain model.fit": (plain_command, "epoch-end"),
                "entry point": (entry_point_command(channels, work / f"run{repeat}", values), ENTRY_POINT_EPOCH_MARKER),
            }
            # Alternate which arm goes first, so that a drift of the machine's load falls on both alike.
            for name in sorted(arms, reverse=repeat % 2 == 1):
                measured[name].append(epoch_ends(*arms[name]))
            print(
                f"repeat {repeat + 1}: "
                + ", ".join(
                    f"{name} {runs[-1].samples_per_second(arguments.examples):,.0f} samples/s "
                    f"({runs[-1].cpu_microseconds_per_sample(arguments.examples):.1f} CPU us/sample)"
                    for name, runs in measured.items()
                ),
                flush=True,
            )
        plain, entry_point = (
            [run.samples_per_second(arguments.examples) for run in measured[name]]
            for name in ("plain model.fit", "entry point")
        )
        ratio = statistics.median(entry_point) / statistics.median(plain)
        print(
            f"throughput (medians): plain model.fit {statistics.median(plain):,.0f} samples/s, entry point "
            f"{statistics.median(entry_point):,.0f} samples/s, ratio {ratio:.3f} (required >= 0.95)"
        )
        plain_cpu, entry_point_cpu = (
            statistics.median(run.cpu_microseconds_per_sample(arguments.examples) for run in measured[name])
            for name in ("plain model.fit", "entry point")
        )
        print(
            f"CPU time per sample (medians): plain model.fit {plain_cpu:.1f} us, entry point {entry_point_cpu:.1f} us, "
            f"as a throughput ratio {plain_cpu / entry_point_cpu:.3f}"
        )

        memory_values = {**values, "epochs": 1}
        peaks = {}
        for repeat in (1, 8):
            data = write_channels(work / f"memory-{repeat}x", digits_split(arguments.memory_examples), repeat)
            peaks[repeat] = peak_rss(entry_point_command(data, work / f"memory-run-{repeat}x", memory_values))
            print(
                f"peak RSS with {arguments.memory_examples * repeat:,} training examples: "
                f"{peaks[repeat] / 2**20:,.0f} MB",
                flush=True,
            )
            for folder in data.values():
                for shard in folder.glob("*.tfrecord"):
                    shard.unlink()
        memory_ratio = peaks[8] / peaks[1]
        print(f"memory: peak RSS 8x / 1x = {memory_ratio:.3f} (required <= 1.25)")
    if ratio < 0.95 or memory_ratio > 1.25:
        raise SystemExit("below the required figures")


if __name__ == "__main__":
    main()
