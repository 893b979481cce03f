"""The dataset prepared beside the CDK phases (mlops.local.early_data); its success path runs in
every `mlops local` of test_local_e2e.py."""

from __future__ import annotations

import time

import pytest

from mlops.local.early_data import EarlyPreparation


def test_a_failing_preparation_raises_its_last_line_and_keeps_its_stderr_in_a_note(tmp_path):
    preparation = EarlyPreparation("no-such-network", tmp_path / "data", limit=None, echo=print)
    with pytest.raises(
        RuntimeError,
        match=r"preparing the no-such-network dataset failed \(exit code 1\): "
        r"\S+Error: .*no-such-network",
    ) as raised:
        preparation.channels()
    assert "Traceback" in "".join(raised.value.__notes__)


@pytest.mark.slow
def test_stopping_a_preparation_ends_it_and_leaves_no_scratch_in_the_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("MLOPS_CACHE_DIR", str(cache))
    lines: list[str] = []
    preparation = EarlyPreparation("cnn", tmp_path / "data", limit=20, echo=lines.append)
    time.sleep(4)  # into the preparation (its imports take about that long), maybe into its scratch folder
    preparation.stop()
    assert preparation._child.poll() is not None
    assert not [path.name for path in cache.glob(".making-*")]
