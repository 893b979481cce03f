"""`TakingTurns`, the local endpoint's one-invocation-at-a-time gate: first come, first served."""

from __future__ import annotations

import threading
import time

import pytest

from inference.endpoint_app import TakingTurns


def _queued(turns: TakingTurns, count: int) -> None:
    deadline = time.monotonic() + 10
    while len(turns._waiting) < count:  # the only way to know a thread is waiting, not just started
        assert time.monotonic() < deadline, f"{count} threads did not queue"
        time.sleep(0.001)


def test_waiting_threads_get_their_turn_in_the_order_they_came():
    turns, served, inside = TakingTurns(), [], []

    def invocation(index: int) -> None:
        with turns:
            inside.append(index)
            assert len(inside) == 1, "two threads held the turn at once"
            served.append(index)
            inside.remove(index)

    threads = [threading.Thread(target=invocation, args=(index,)) for index in range(8)]
    with turns:  # held while the others come, one after another
        for index, thread in enumerate(threads):
            thread.start()
            _queued(turns, index + 1)
    for thread in threads:
        thread.join(10)
    assert served == list(range(8))


def test_a_failing_holder_passes_the_turn_on():
    turns, served = TakingTurns(), []

    def wait_for_the_turn() -> None:
        turns.__enter__()
        served.append("next")

    waiter = threading.Thread(target=wait_for_the_turn)
    with pytest.raises(RuntimeError), turns:
        waiter.start()
        _queued(turns, 1)
        raise RuntimeError("the handler failed")
    waiter.join(10)
    assert served == ["next"]
    turns.__exit__(None, None, None)
    with turns:  # free again
        pass
