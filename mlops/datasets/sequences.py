"""Labelled sequences: the UCI Japanese Vowels speakers, as zero-padded frame sequences.

The data are the `.ts` files (the UEA/UCR archive's text format) that the sktime wheel ships under
`sktime/datasets/data/JapaneseVowels/`. They are read as text, without importing sktime: its
1.2.0 metadata asks for pandas < 3.1, older than the one pinned here, so the wheel is installed
with --no-deps (requirements-toolkit.txt) for its data files alone.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import numpy as np

from mlops.datasets.common import Channels, limited, stratified_split, write_channels

SEQUENCE_DTYPES = {"frames": "float32", "label": "int64"}
ARCHIVE_FOLDER = "sktime/datasets/data/JapaneseVowels"


def ts_file(split: str) -> Path:
    """The wheel's JapaneseVowels_<TRAIN|TEST>.ts."""
    try:
        distribution = metadata.distribution("sktime")
    except metadata.PackageNotFoundError:
        raise FileNotFoundError(
            "the Japanese Vowels data come with the sktime wheel: pip install --no-deps -r requirements-toolkit.txt"
        ) from None
    return Path(str(distribution.locate_file(f"{ARCHIVE_FOLDER}/JapaneseVowels_{split}.ts")))


def read_ts(path: Path) -> tuple[list[np.ndarray], list[str], list[str]]:
    """(sequences [length, dimensions], their class labels, the header's class labels) of a
    multivariate `.ts` file: after `@data`, one case per line, dimensions separated by `:`, each
    a comma-separated series, the class label last."""
    sequences, labels, classes = [], [], []
    in_data = False
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            words = line.split()
            if words[0].lower() == "@classlabel" and words[1].lower() == "true":
                classes = words[2:]
            in_data = words[0].lower() == "@data"
            continue
        *dimensions, label = line.split(":")
        sequences.append(
            np.array([[float(value) for value in series.split(",")] for series in dimensions], dtype=np.float32).T
        )
        labels.append(label.strip())
    return sequences, labels, classes


def padded(sequences: list[np.ndarray], length: int) -> np.ndarray:
    """[cases, length, dimensions], each sequence's frames first, zero frames after."""
    batch = np.zeros((len(sequences), length, sequences[0].shape[1]), dtype=np.float32)
    for index, sequence in enumerate(sequences):
        batch[index, : len(sequence)] = sequence
    return batch


def prepare_japanese_vowels(
    out_dir: Path, *, limit: int | None = None, seed: int = 0, validation_fraction: float = 0.2
) -> Channels:
    """UCI's split (270 train, 370 test utterances by 9 speakers); validation drawn from train,
    stratified by speaker. Each utterance is 7 to 29 frames of 12 LPC cepstrum coefficients."""
    train_sequences, train_labels, classes = read_ts(ts_file("TRAIN"))
    test_sequences, test_labels, _ = read_ts(ts_file("TEST"))
    all_sequences = train_sequences + test_sequences
    if any(not sequence.any(axis=1).all() for sequence in all_sequences):
        raise ValueError("a Japanese Vowels frame is all zeros, which the model would read as padding")
    max_length = max(len(sequence) for sequence in all_sequences)
    index_of = {label: index for index, label in enumerate(classes)}
    frames = {"train": padded(train_sequences, max_length), "test": padded(test_sequences, max_length)}
    labels = {
        "train": np.array([index_of[label] for label in train_labels], dtype=np.int64),
        "test": np.array([index_of[label] for label in test_labels], dtype=np.int64),
    }
    train, validation = stratified_split(labels["train"], [1 - validation_fraction, validation_fraction], seed)
    splits = {
        "train": ("train", train),
        "validation": ("train", validation),
        "test": ("test", np.arange(len(labels["test"]))),
    }
    channels = {
        name: {
            "frames": frames[source][limited(index, limit, seed)],
            "label": labels[source][limited(index, limit, seed)],
        }
        for name, (source, index) in splits.items()
    }
    lengths = [len(sequence) for sequence in all_sequences]
    return write_channels(
        out_dir,
        channels,
        dtypes=SEQUENCE_DTYPES,
        class_names=[f"speaker {label}" for label in classes],
        metadata={
            "source": "UCI Japanese Vowels (Kudo, Toyama and Shimbo 1999), the sktime 1.2.0 wheel's .ts files",
            "feature_names": [f"lpc_cepstrum_{index}" for index in range(1, 13)],
            "min_length": min(lengths),
            "max_length": max_length,
            "padding": "zero frames after the last real frame",
            "seed": seed,
        },
    )
