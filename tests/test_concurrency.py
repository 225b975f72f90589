"""``au_face.utils.concurrency.read_ahead``: items in order, the producer's errors, stopping early."""

from __future__ import annotations

import threading

import pytest

from au_face.utils.concurrency import read_ahead


def test_read_ahead_keeps_order_and_ends() -> None:
    assert list(read_ahead(range(100), depth=3)) == list(range(100))
    assert list(read_ahead([], depth=3)) == []


def test_read_ahead_raises_the_producers_error_after_its_items() -> None:
    def items():
        yield from (1, 2)
        raise ValueError("bad frame")

    seen = []
    with pytest.raises(ValueError, match="bad frame"):
        seen.extend(read_ahead(items()))
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
