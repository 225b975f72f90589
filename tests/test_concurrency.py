"""``au_face.concurrency``: read-ahead and background values hand back items, values and errors."""

from __future__ import annotations

import threading
import time

import pytest

from au_face.concurrency import InBackground, read_ahead


def test_read_ahead_keeps_order_and_ends() -> None:
    assert list(read_ahead(range(100), depth=3)) == list(range(100))
    assert list(read_ahead([], depth=3)) == []


def test_read_ahead_raises_the_producers_error_after_its_items() -> None:
    def items():
        yield from (1, 2)
        raise ValueError("bad frame")

    seen = []
    with pytest.raises(ValueError, match="bad frame"):
        for item in read_ahead(items()):
            seen.append(item)
    assert seen == [1, 2]


def test_leaving_early_stops_and_closes_the_producer() -> None:
    closed = threading.Event()

    def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    stream = read_ahead(endless(), depth=2)
    assert [next(stream) for _ in range(5)] == [0, 1, 2, 3, 4]
    stream.close()
    assert closed.wait(5), "the producer's generator was not closed"
    assert not any(t.name == "au_face-read-ahead" and t.is_alive() for t in threading.enumerate())


def test_in_background_gives_the_value_or_the_error() -> None:
    started = threading.Event()

    def slow() -> int:
        started.set()
        time.sleep(0.05)
        return 42

    value = InBackground(slow)
    assert started.wait(5)
    assert value.result() == 42 and value.done()

    def broken() -> int:
        raise RuntimeError("no model")

    failing = InBackground(broken)
    with pytest.raises(RuntimeError, match="no model"):
        failing.result()
    assert failing.done()
