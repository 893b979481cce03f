"""What the CNN benchmarks (training_throughput.py, mixed_precision.py) share: their data, the
entry point's command line, and the timing of a training process's epochs.

Data: sklearn's 1,797 digits split 80/20 by image; each split upsampled (bilinear) from 8x8 to
24x24, placed at a random offset in 28x28 and speckled with noise, so train, validation (a
tenth of train) and test (a sixth) images are all distinct, and the test digits are drawn from
digits never trained on.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
TRAINING_DIR = REPO_ROOT / "training"
sys.path.insert(0, str(TRAINING_DIR))

CLASS_NAMES = [str(digit) for digit in range(10)]
# What the entry point prints at the end of each epoch.
ENTRY_POINT_EPOCH_MARKER = "[metrics] epoch="
Split = dict[str, tuple[np.ndarray, np.ndarray]]


def digits_split(examples: int) -> Split:
    """train/validation/test: [n, 28, 28, 1] uint8 images and int64 labels (see the module doc)."""
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(0).permutation(len(digits.target))
    cut = int(0.8 * len(order))
    pools = {"train": order[:cut], "validation": order[:cut], "test": order[cut:]}
    counts = {"train": examples, "validation": examples // 10, "test": examples // 6}
    upsampled = zoom(digits.images, (1, 3, 3), order=1) * (255 / 16)
    split = {}
    for seed, (name, pool) in enumerate(pools.items()):
        rng = np.random.default_rng(seed + 1)
        picks = rng.choice(pool, counts[name])
        images = np.zeros((counts[name], 28, 28), dtype=np.float32)
        for index, (row, column) in enumerate(rng.integers(0, 5, size=(counts[name], 2))):
            images[index, row : row + 24, column : column + 24] = upsampled[picks[index]]
        images += rng.uniform(0, 40, size=images.shape)
        split[name] = (np.clip(images, 0, 255).astype(np.uint8)[..., np.newaxis], digits.target[picks].astype(np.int64))
    return split


def write_channels(root: Path, split: Split, repeat: int = 1) -> dict[str, Path]:
    """The split as records channels; `repeat` writes each channel that many times over, in chunks."""
    import records

    channels = {}
    for name, (images, labels) in split.items():
        chunks = ({"image": images, "label": labels} for _ in range(repeat))
        records.write_channel(root / name, chunks, dtypes={"image": "uint8", "label": "int64"}, class_names=CLASS_NAMES)
        channels[name] = root / name
    return channels


def entry_point_command(channels: dict[str, Path], work: Path, values: dict) -> list[str]:
    """`training/cnn.py` on `channels`, writing under `work`, with the hyperparameters `values`."""
    command = [
        sys.executable,
        str(TRAINING_DIR / "cnn.py"),
        "--model_dir",
        str(work / "model"),
        "--output_dir",
        str(work / "output"),
        "--checkpoint_dir",
        str(work / "checkpoints"),
    ]
    for channel, folder in channels.items():
        command += [f"--{channel}", str(folder)]
    for name, value in values.items():
        command += [f"--{name}", str(value)]
    return command


@dataclass
class EpochEnds:
    """When each epoch of a run ended: wall time, and the process's CPU time (user + system, all
    threads); and the run's whole output."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    log: str = ""

    def samples_per_second(self, train_examples: int) -> float:
        """Over the epochs after the first (tracing, warm-up)."""
        return train_examples * (len(self.wall) - 1) / (self.wall[-1] - self.wall[0])

    def cpu_microseconds_per_sample(self, train_examples: int) -> float:
        """The same epochs' CPU time per sample: unlike wall time, barely moved by other processes' load."""
        return 1e6 * (self.cpu[-1] - self.cpu[0]) / (train_examples * (len(self.cpu) - 1))


def epoch_ends(command: list[str], marker: str) -> EpochEnds:
    """Runs `command`, noting when each line containing `marker` arrived."""
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"},
    )
    ends, log = EpochEnds(), []
    assert process.stdout is not None
    for line in process.stdout:
        log.append(line)
        if marker in line:
            ends.wall.append(time.monotonic())
            ends.cpu.append(cpu_seconds(process.pid))
    if process.wait() != 0:
        raise SystemExit(f"{command[:3]} failed:\n{''.join(log[-40:])}")
    ends.log = "".join(log)
    return ends


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process, all its threads (proc(5): fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
