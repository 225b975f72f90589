"""Small threading helpers that let a reconstruction use both of a laptop's cores.

Threads, not processes: the work that overlaps is decoding (OpenCV), Face Mesh (MediaPipe's
C++ graph), drawing (OpenCV), encoding (an ffmpeg process) and importing the model; the native
parts release the GIL. Every thread here is a daemon, so an interrupted run exits at once, and
every error raised in a thread is raised again in the thread that asks for the result.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

#: Seconds a blocked producer waits before it looks again whether its consumer has gone.
_POLL = 0.1


class InBackground(Generic[T]):
    """``make()`` started in a daemon thread at construction; :meth:`result` waits for its value.

    Used to load the model (seconds of imports) while the first frames are tracked.
    """

    def __init__(self, make: Callable[[], T], name: str = "au_face-background") -> None:
        self._make = make
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._make()
        except BaseException as err:  # handed to the thread that calls result()
            self._error = err

    def done(self) -> bool:
        """Whether ``make()`` has returned or raised."""
        return not self._thread.is_alive()

    def result(self) -> T:
        """The value of ``make()``, waiting for it; raises what ``make()`` raised."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


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
        except BaseException as err:  # handed to the consumer
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


__all__ = ["InBackground", "read_ahead"]
