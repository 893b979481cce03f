"""The CNN entry point's training throughput against plain `model.fit`, and its peak memory against data size.

    .venv/bin/python benchmarks/training_throughput.py [--examples 60000] [--epochs 4] [--repeats 3]

Data: MNIST-sized images (28x28x1 uint8) made from sklearn digits (upsampled 3x, randomly placed
and speckled), written as a records channel; validation and test are a tenth of that each.

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
`--epochs 6 --repeats 5`, 60,000 examples, batch 128, twice, with other jobs running beside it:
    run 1 (load average 1.3-2.0 from other jobs)
        plain model.fit  24,208 samples/s (runs 20,123-24,851), 61.0 CPU us/sample
        entry point      26,723 samples/s (runs 25,333-27,945), 56.9 CPU us/sample
        ratio 1.104 (required >= 0.95); by CPU time 1.073
        peak RSS 748 MB with 20,000 examples, 755 MB with 160,000: ratio 1.008 (required <= 1.25)
    run 2 (started on an idle machine; other jobs resumed during it)
        plain model.fit  19,884 samples/s (runs 14,625-21,567), 63.7 CPU us/sample
        entry point      26,069 samples/s (runs 20,696-28,789), 58.4 CPU us/sample
        ratio 1.311; by CPU time 1.091
        peak RSS 753 MB and 754 MB: ratio 1.001
The entry point's edge comes from its `steps_per_execution` (contract.py); its records pipeline
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
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
TRAINING_DIR = REPO_ROOT / "training"
sys.path.insert(0, str(TRAINING_DIR))

CLASS_NAMES = [str(digit) for digit in range(10)]


def mnist_sized_digits(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """[count, 28, 28, 1] uint8 images and labels: each a digit, upsampled to 24x24, placed at
    a random offset, with light noise, so that no two examples are identical."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(digits.target), count)
    images = np.zeros((count, 28, 28), dtype=np.float32)
    upsampled = np.kron(digits.images[picks], np.ones((3, 3))) * (255 / 16)
    offsets = rng.integers(0, 5, size=(count, 2))
    for index, (row, column) in enumerate(offsets):
        images[index, row:row + 24, column:column + 24] = upsampled[index]
    images += rng.uniform(0, 40, size=images.shape)
    return np.clip(images, 0, 255).astype(np.uint8)[..., np.newaxis], digits.target[picks].astype(np.int64)


def write_dataset(root: Path, examples: int, repeat: int = 1) -> dict[str, Path]:
    """train/validation/test channels; `repeat` writes each channel that many times over, in chunks."""
    import records

    channels = {}
    for channel, count, seed in (("train", examples, 0), ("validation", examples // 10, 1), ("test", examples // 10, 2)):
        images, labels = mnist_sized_digits(count, seed)
        chunks = ({"image": images, "label": labels} for _ in range(repeat))
        records.write_channel(root / channel, chunks, dtypes={"image": "uint8", "label": "int64"},
                              class_names=CLASS_NAMES)
        channels[channel] = root / channel
    return channels


def knobs(arguments) -> dict[str, float | int]:
    from networks import get_network

    values = get_network("cnn").default_hyperparameters
    values.update(epochs=arguments.epochs, batch_size=arguments.batch_size, patience=arguments.epochs + 1)
    return values


@dataclass
class EpochEnds:
    """When each epoch ended: wall time, and the process's CPU time (user + system, all threads)."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def samples_per_second(self, train_examples: int) -> float:
        """Over the epochs after the first (tracing, warm-up)."""
        return train_examples * (len(self.wall) - 1) / (self.wall[-1] - self.wall[0])

    def cpu_microseconds_per_sample(self, train_examples: int) -> float:
        """The same epochs' CPU time per sample: unlike wall time, barely moved by other processes' load."""
        return 1e6 * (self.cpu[-1] - self.cpu[0]) / (train_examples * (len(self.cpu) - 1))


def epoch_ends(command: list[str], marker: str) -> EpochEnds:
    """Runs `command`, noting the times at which each line containing `marker` arrived."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"})
    ends, log = EpochEnds(), []
    assert process.stdout is not None
    for line in process.stdout:
        log.append(line)
        if marker in line:
            ends.wall.append(time.monotonic())
            ends.cpu.append(cpu_seconds(process.pid))
    if process.wait() != 0:
        raise SystemExit(f"{command[:3]} failed:\n{''.join(log[-40:])}")
    return ends


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process, all its threads (proc(5): fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def entry_point_command(channels: dict[str, Path], work: Path, values: dict) -> list[str]:
    command = [sys.executable, str(TRAINING_DIR / "cnn.py"), "--model_dir", str(work / "model"),
               "--output_dir", str(work / "output"), "--checkpoint_dir", str(work / "checkpoints")]
    for channel, folder in channels.items():
        command += [f"--{channel}", str(folder)]
    for name, value in values.items():
        command += [f"--{name}", str(value)]
    return command


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
    model.fit(x, y, validation_data=validation, epochs=values["epochs"], batch_size=values["batch_size"],
              shuffle=True, verbose=0, callbacks=[report])


def peak_rss(command: list[str]) -> int:
    """The process's peak resident set (VmHWM, bytes), sampled until it exits."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    peak = 0
    errors: list[str] = []
    reader = threading.Thread(target=lambda: errors.extend(process.stderr), daemon=True)
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
        channels = write_dataset(work / "data", arguments.examples)
        plain_command = [sys.executable, __file__, "--plain-fit", str(work / "data"), "--epochs", str(arguments.epochs),
                         "--batch-size", str(arguments.batch_size)]
        measured: dict[str, list[EpochEnds]] = {"plain model.fit": [], "entry point": []}
        for repeat in range(arguments.repeats):
            arms = {"plain model.fit": (plain_command, "epoch-end"),
                    "entry point": (entry_point_command(channels, work / f"run{repeat}", values), "[metrics] epoch=")}
            # Alternate which arm goes first, so that a drift of the machine's load falls on both alike.
            for name in sorted(arms, reverse=repeat % 2 == 1):
                measured[name].append(epoch_ends(*arms[name]))
            print(f"repeat {repeat + 1}: " + ", ".join(
                f"{name} {runs[-1].samples_per_second(arguments.examples):,.0f} samples/s "
                f"({runs[-1].cpu_microseconds_per_sample(arguments.examples):.1f} CPU us/sample)"
                for name, runs in measured.items()), flush=True)
        plain, entry_point = ([run.samples_per_second(arguments.examples) for run in measured[name]]
                              for name in ("plain model.fit", "entry point"))
        ratio = statistics.median(entry_point) / statistics.median(plain)
        print(f"throughput (medians): plain model.fit {statistics.median(plain):,.0f} samples/s, entry point "
              f"{statistics.median(entry_point):,.0f} samples/s, ratio {ratio:.3f} (required >= 0.95)")
        plain_cpu, entry_point_cpu = (statistics.median(run.cpu_microseconds_per_sample(arguments.examples)
                                                        for run in measured[name])
                                      for name in ("plain model.fit", "entry point"))
        print(f"CPU time per sample (medians): plain model.fit {plain_cpu:.1f} us, entry point {entry_point_cpu:.1f} us, "
              f"as a throughput ratio {plain_cpu / entry_point_cpu:.3f}")

        memory_values = {**values, "epochs": 1}
        peaks = {}
        for repeat in (1, 8):
            data = write_dataset(work / f"memory-{repeat}x", arguments.memory_examples, repeat=repeat)
            peaks[repeat] = peak_rss(entry_point_command(data, work / f"memory-run-{repeat}x", memory_values))
            print(f"peak RSS with {arguments.memory_examples * repeat:,} training examples: "
                  f"{peaks[repeat] / 2**20:,.0f} MB", flush=True)
            for folder in data.values():
                for shard in folder.glob("*.tfrecord"):
                    shard.unlink()
        memory_ratio = peaks[8] / peaks[1]
        print(f"memory: peak RSS 8x / 1x = {memory_ratio:.3f} (required <= 1.25)")
    if ratio < 0.95 or memory_ratio > 1.25:
        raise SystemExit("below the required figures")


if __name__ == "__main__":
    main()
