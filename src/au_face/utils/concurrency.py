"""Reading ahead in a thread: the next items (decoded frames) are produced while the current one
is used. OpenCV releases the GIL while it decodes. The thread is a daemon, so an interrupted run
exits at once, and its errors are raised again in the consumer.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

#: Seconds a blocked producer waits before it looks again whether its consumer has gone.
_POLL = 0.1


class _End:
    """Marks the end of a :func:`read_ahead` stream; carries the producer's error, if any."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


def read_ahead(items: Iterable[T], depth: int = 8) -> Iterator[T]:
    """Iterate over ``items`` in a daemon thread, at most ``depth`` items ahead of the consumer.

    For frame readers: the next frames are decoded while the current one is processed. The
    producer's exception is raised here; closing this iterator (or leaving a loop over it early)
    stops the producer and closes ``items``' iterator.
    """
    buffer: queue.Queue[T | _End] = queue.Queue(depth)
    stop = threading.Event()

    def put(item: T | _End) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        iterator = iter(items)
        try:
            for item in iterator:
                if not put(item):
                    return
            put(_End())
        except BaseException as err:
            put(_End(err))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="au_face-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item
    finally:
        stop.set()
        thread.join()


__all__ = ["read_ahead"]
