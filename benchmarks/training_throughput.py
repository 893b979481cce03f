"""The CNN entry point's training throughput against plain `model.fit`, and its peak memory against data size.

    .venv/bin/python benchmarks/training_throughput.py [--examples 60000] [--epochs 4] [--batch-size 128]

Data: MNIST-sized images (28x28x1 uint8) made from sklearn digits (upsampled 3x, randomly placed
and speckled), written as a records channel; validation and test are a tenth of that each.

Throughput: `training/cnn.py` (records pipeline, per-epoch checkpoint, metrics line) against
`model.fit` of the same model (`cnn.build_model`) on the same images as in-memory arrays, each
in its own process, alternating, `--repeats` times. An epoch's time is the gap between two
consecutive epoch-end lines (training plus validation in both); the first epoch (tracing,
warm-up) is excluded from both. Required: entry point / plain fit >= 0.95.

Memory: peak RSS (VmHWM, sampled) of a whole entry-point run (1 epoch, evaluation, export) on
the data repeated 8x against 1x. Required: <= 1.25.

Measured on the 2-core build machine (Nov 2026), 60,000 examples, 4 epochs, batch 128, 2 repeats:
    plain model.fit          18,450 samples/s
    entry point (records)    18,390 samples/s    ratio 0.997 (required >= 0.95)
    peak RSS 1x 739 MB, 8x 744 MB (160,000 and 1,280,000 examples)    ratio 1.01 (required <= 1.25)
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


def epoch_end_times(command: list[str], marker: str) -> tuple[list[float], str]:
    """Runs `command`; the monotonic time at which each line containing `marker` arrived."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"})
    times, log = [], []
    assert process.stdout is not None
    for line in process.stdout:
        log.append(line)
        if marker in line:
            times.append(time.monotonic())
    if process.wait() != 0:
        raise SystemExit(f"{command[:3]} failed:\n{''.join(log[-40:])}")
    return times, "".join(log)


def throughput(times: list[float], train_examples: int) -> float:
    """Samples per second over the epochs after the first."""
    return train_examples * (len(times) - 1) / (times[-1] - times[0])


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
    import records

    def arrays(channel):
        spec = records.read_spec(data / channel, channel)
        batches = list(records.dataset(data / channel, spec, channel, inputs="image", targets="label", batch_size=4096))
        return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])

    (x, y), validation = arrays("train"), arrays("validation")
    keras.utils.set_random_seed(values["seed"])
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
    parser.add_argument("--repeats", type=int, default=2)
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
        plain, records_pipeline = [], []
        for repeat in range(arguments.repeats):
            times, _ = epoch_end_times([sys.executable, __file__, "--plain-fit", str(work / "data"),
                                        "--epochs", str(arguments.epochs), "--batch-size", str(arguments.batch_size)],
                                       "epoch-end")
            plain.append(throughput(times, arguments.examples))
            times, _ = epoch_end_times(entry_point_command(channels, work / f"run{repeat}", values), "[metrics] epoch=")
            records_pipeline.append(throughput(times, arguments.examples))
            print(f"repeat {repeat + 1}: plain model.fit {plain[-1]:,.0f} samples/s, "
                  f"entry point {records_pipeline[-1]:,.0f} samples/s", flush=True)
        ratio = statistics.median(records_pipeline) / statistics.median(plain)
        print(f"throughput: plain model.fit {statistics.median(plain):,.0f} samples/s, entry point "
              f"{statistics.median(records_pipeline):,.0f} samples/s, ratio {ratio:.3f} (required >= 0.95)")

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
