"""The traffic window of `mlops local --drift`: capture records carry whole seconds, so a window
must not share a second with the traffic sent before it (the invoke phase's samples)."""

from __future__ import annotations

from datetime import UTC, datetime

from mlops.local.drift import send


def test_a_window_holds_its_own_requests_and_none_sent_just_before_it():
    sent_at = []

    def invoke(body: bytes) -> None:
        sent_at.append(datetime.now(UTC).replace(microsecond=0))  # as inferenceTime is written

    invoke(b"an earlier request, e.g. one of the invoke phase's samples")
    start, end = send([b"first", b"second"], invoke, flush_seconds=0)

    earlier, *own = sent_at
    assert earlier < start <= min(own) and max(own) < end
