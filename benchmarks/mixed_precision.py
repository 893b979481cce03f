"""The CNN entry point (precision=auto) against the seed's reference training, in one run.

    .venv/bin/python benchmarks/mixed_precision.py [--examples 60000] [--epochs 5] [--repeats 3]

Reference: the seed's way to train the CNN, plain Keras `model.fit` on in-memory float32 arrays
(pixels / 255), batch 128, Adam at its defaults, Conv2D 32 3x3 + MaxPool + Flatten + Dense 64 +
Dense 10 softmax, float32 throughout. Against it: `training/cnn.py` run as a process through the
training contract with the registry's defaults except `epochs`, `batch_size=128` and a patience
longer than the run (so both train the same number of epochs); `precision` is left at `auto`,
which picks mixed_bfloat16 on a CPU with AVX512_BF16 or AMX. A third arm runs the entry point
with `precision=float32`, to tell the gain of the policy from that of the rest.

Data: cnn_runs.digits_split, MNIST-sized images made from sklearn's digits, `--examples` of them
for training, the test digits drawn from digits never trained on. The entry point reads them as
records channels, the reference as arrays of the same images.

Each arm is its own process; the arms alternate within each repeat, and their order rotates from
one repeat to the next, so slow drift of the machine's load falls on all of them alike.
Throughput is training examples per second of wall time between the first and the last epoch end
(each epoch includes validation, in every arm; the first epoch, with tracing, is left out). Beside
it, examples per CPU-second the process used over the same epochs (all its threads): wall time
shows what a job gets on a machine of its own, CPU time what it costs, and the latter moves much
less when other processes share the cores.
Test accuracy: the reference's `model.evaluate` on the test arrays, the entry point's own
`evaluation.json` on the test channel; averaged over the repeats (each repeat uses its own seed).
Required: throughput ratio (median entry point auto / median reference) >= 1.25, and mean test
accuracy of the entry point at least the reference's - 0.003. Exits 1 otherwise.

Measured on the 2-core build machine (AMD EPYC; avx512_bf16 yes, amx no; no GPU: auto picks
mixed_bfloat16), 28 Nov 2026, defaults (60,000 examples, 5 epochs, 3 repeats), idle machine:
    reference             median 15,506 samples/s, 11,673 samples/cpu-s, mean test_accuracy 0.9813
    entry point float32   median 14,124 samples/s (x0.91), 11,611 samples/cpu-s (x0.99), 0.9853
    entry point auto      median 26,403 samples/s (x1.70), 17,082 samples/cpu-s (x1.46), 0.9845
    ratio x1.703 (required >= 1.25); test accuracy +0.0032 (required >= -0.003)
Run again the same way after its data and timing moved into cnn_runs.py: the same test accuracies
to the fourth decimal, throughput x1.774 (reference 16,250, auto 28,821 samples/s). No GPU was
used for these figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
from cnn_runs import (
    CLASS_NAMES,
    ENTRY_POINT_EPOCH_MARKER,
    digits_split,
    entry_point_command,
    epoch_ends,
    write_channels,
)

EPOCH_MARKER = "epoch-end"
REQUIRED_RATIO = 1.25
ACCURACY_TOLERANCE = 0.003
ARMS = ("reference", "entry point float32", "entry point auto")


def write_data(root: Path, examples: int) -> dict[str, Path]:
    """The records channels for the entry point, and the same images as `arrays.npz` for the reference."""
    split = digits_split(examples)
    channels = write_channels(root, split)
    np.savez(
        root / "arrays.npz",
        **{
            f"{name}_{part}": array
            for name, pair in split.items()
            for part, array in zip(("x", "y"), pair, strict=True)
        },
    )
    return channels


def reference(arrays: Path, epochs: int, seed: int) -> None:
    """The seed's reference training, run as its own process: prints a marker per epoch end, then
    `test_accuracy=...`."""
    import keras

    with np.load(arrays) as data:
        x, y = data["train_x"].astype("float32") / 255, data["train_y"]
        validation = (data["validation_x"].astype("float32") / 255, data["validation_y"])
        test = (data["test_x"].astype("float32") / 255, data["test_y"])
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input(x.shape[1:]),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(len(CLASS_NAMES), activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    marker = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: print(EPOCH_MARKER, flush=True))
    model.fit(x, y, batch_size=128, epochs=epochs, validation_data=validation, verbose=0, callbacks=[marker])
    _, accuracy = model.evaluate(*test, batch_size=1024, verbose=0)
    print(f"test_accuracy={accuracy}", flush=True)


def run_arm(arm: str, data: Path, channels: dict[str, Path], work: Path, arguments, seed: int) -> dict[str, float]:
    if arm == "reference":
        command = [
            sys.executable,
            __file__,
            "--reference",
            str(data / "arrays.npz"),
            "--epochs",
            str(arguments.epochs),
            "--seed",
            str(seed),
        ]
        ends = epoch_ends(command, EPOCH_MARKER)
        accuracy = float(ends.log.rsplit("test_accuracy=", 1)[1].split()[0])
    else:
        # The registry's defaults except these; a patience longer than the run, so every arm
        # trains the same number of epochs.
        values = {
            "epochs": arguments.epochs,
            "batch_size": 128,
            "patience": arguments.epochs + 1,
            "seed": seed,
            "precision": arm.rsplit(" ", 1)[1],
        }
        ends = epoch_ends(entry_point_command(channels, work, values), ENTRY_POINT_EPOCH_MARKER)
        evaluation = json.loads((work / "output" / "evaluation.json").read_text())
        accuracy = evaluation["metrics"]["test_accuracy"]["value"]
    if len(ends.wall) != arguments.epochs:
        raise SystemExit(f"{arm}: {len(ends.wall)} epoch ends seen, expected {arguments.epochs}")
    return {
        "samples_per_s": ends.samples_per_second(arguments.examples),
        "samples_per_cpu_s": 1e6 / ends.cpu_microseconds_per_sample(arguments.examples),
        "test_accuracy": accuracy,
    }


def cpu_description() -> str:
    import contract

    hardware = contract.Hardware.detect()
    model = next(
        (
            line.partition(":")[2].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    shown = ("avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
    flags = " ".join(f"{flag}={'yes' if flag in hardware.cpu_flags else 'no'}" for flag in shown)
    gpus = ", ".join(f"{major}.{minor}" for major, minor in hardware.gpu_capabilities) or "none"
    return (
        f"{model}, {os.cpu_count()} cores; {flags}; GPU compute capabilities: {gpus}; "
        f"precision=auto -> {contract.choose_precision('auto', hardware).policy}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=60_000, help="training images")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1, help=argparse.SUPPRESS)  # the reference process's seed
    parser.add_argument("--reference", type=Path, help=argparse.SUPPRESS)  # internal: run the reference arm
    arguments = parser.parse_args()
    if arguments.reference:
        reference(arguments.reference, arguments.epochs, arguments.seed)
        return

    print(f"command: {shlex.join([Path(sys.executable).name, *sys.argv])}")
    print(f"cpu: {cpu_description()}")
    print(f"load average before: {' '.join(f'{load:.2f}' for load in os.getloadavg())}", flush=True)
    results: dict[str, list[dict[str, float]]] = {arm: [] for arm in ARMS}
    with tempfile.TemporaryDirectory(prefix="mixed-precision-") as scratch:
        work = Path(scratch)
        channels = write_data(work / "data", arguments.examples)
        for repeat in range(arguments.repeats):
            seed = repeat + 1
            for arm in ARMS[repeat % len(ARMS) :] + ARMS[: repeat % len(ARMS)]:
                result = run_arm(
                    arm, work / "data", channels, work / f"run-{repeat}-{arm.replace(' ', '-')}", arguments, seed
                )
                results[arm].append(result)
                print(
                    f"repeat {repeat + 1} {arm:21} {result['samples_per_s']:8,.0f} samples/s  "
                    f"{result['samples_per_cpu_s']:8,.0f} samples/cpu-s  test_accuracy {result['test_accuracy']:.4f}",
                    flush=True,
                )
    print(f"load average after: {' '.join(f'{load:.2f}' for load in os.getloadavg())}")

    summary = {
        arm: {
            "samples_per_s": statistics.median(row["samples_per_s"] for row in rows),
            "samples_per_cpu_s": statistics.median(row["samples_per_cpu_s"] for row in rows),
            "test_accuracy": statistics.fmean(row["test_accuracy"] for row in rows),
        }
        for arm, rows in results.items()
    }
    baseline = summary["reference"]
    for arm, figures in summary.items():
        print(
            f"{arm:21} median {figures['samples_per_s']:8,.0f} samples/s "
            f"(x{figures['samples_per_s'] / baseline['samples_per_s']:.2f}), "
            f"{figures['samples_per_cpu_s']:8,.0f} samples/cpu-s "
            f"(x{figures['samples_per_cpu_s'] / baseline['samples_per_cpu_s']:.2f}), "
            f"mean test_accuracy {figures['test_accuracy']:.4f}"
        )
    ratio = summary["entry point auto"]["samples_per_s"] / baseline["samples_per_s"]
    accuracy_gap = summary["entry point auto"]["test_accuracy"] - baseline["test_accuracy"]
    print(
        f"entry point (auto) / reference: throughput x{ratio:.3f} (required >= {REQUIRED_RATIO}), "
        f"test accuracy {accuracy_gap:+.4f} (required >= -{ACCURACY_TOLERANCE})"
    )
    if ratio < REQUIRED_RATIO or accuracy_gap < -ACCURACY_TOLERANCE:
        raise SystemExit("below the required figures")


if __name__ == "__main__":
    main()
