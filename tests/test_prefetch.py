"""emovid.utils.prefetch: order, errors, early close."""

from __future__ import annotations

import threading
import time

import pytest

from emovid.utils.prefetch import prefetch


def test_items_in_order_and_source_runs_ahead():
    produced = []

    def source():
        for i in range(20):
            produced.append(i)
            yield i

    it = prefetch(source(), depth=3)
    assert next(it) == 0
    deadline = time.monotonic() + 5
    while len(produced) < 4 and time.monotonic() < deadline:  # the thread fills the queue while we wait
        time.sleep(0.01)
    assert len(produced) >= 4
    assert [0, *it] == list(range(20))


def test_source_error_reaches_the_consumer_after_earlier_items():
    def source():
        yield 1
        yield 2
        raise ValueError("broken frame")

    got = []
    with pytest.raises(ValueError, match="broken frame"):
        for x in prefetch(source()):
            got.append(x)
    assert got == [1, 2]


def test_close_stops_the_thread_and_closes_the_source():
    closed = threading.Event()

    def source():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    before = threading.active_count()
    it = prefetch(source(), depth=2)
    assert next(it) == 0 and next(it) == 1
    it.close()
    assert closed.is_set() and threading.active_count() == before
    prefetch(source()).close()  # never started: no thread, nothing to stop
    assert threading.active_count() == before
