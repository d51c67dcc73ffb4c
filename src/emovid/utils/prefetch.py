"""Run an iterator one step ahead in a background thread (decode the next frame while this one is processed).

Decoding (PyAV), OpenCV detection and torch inference all release the GIL, so a producer thread overlaps them on
separate cores; ``bench/analyze.py`` measures the effect on ``emovid analyze``.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

__all__ = ["prefetch"]

T = TypeVar("T")
_END = object()


def prefetch(iterable: Iterable[T], depth: int = 2, name: str = "emovid-prefetch") -> Iterator[T]:
    """Yield the items of ``iterable`` while a thread produces up to ``depth`` items ahead.

    The producer's exceptions are re-raised in the consumer at the position they occurred. Closing the returned
    generator (or leaving a ``for`` loop over it with ``break``/an exception and calling ``close()``) stops the
    thread and waits for it, and the source iterator is closed in the thread that ran it, so resources the source
    holds (an open video) may be released right after.
    """
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    yield from _run(iterable, depth, name)


def _run(iterable: Iterable[T], depth: int, name: str) -> Iterator[T]:
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        it = iter(iterable)
        try:
            for item in it:
                if not put((True, item)):
                    return
            put((True, _END))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            put((False, e))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    # Started on the first next(): a generator closed before it ran never leaves a thread behind.
    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    try:
        while True:
            ok, item = q.get()
            if not ok:
                raise item
            if item is _END:
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            with contextlib.suppress(queue.Empty):
                q.get(timeout=0.05)
        thread.join()
