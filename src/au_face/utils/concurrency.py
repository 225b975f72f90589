"""Concurrency helpers: reading ahead in a thread (:func:`read_ahead`: the next decoded frames are
produced while the current one is used; OpenCV releases the GIL while it decodes), and independent
items computed in forked processes as well as this one (:func:`forked_map`: MediaPipe holds the GIL,
so only processes use a second core for it). Threads and workers are daemons, so an interrupted run
exits at once, and their errors are raised again in the consumer.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import queue
import sys
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import suppress
from multiprocessing.connection import Connection, wait
from typing import TypeVar, cast

from au_face.errors import AUFaceError

T = TypeVar("T")


class WorkerError(AUFaceError, RuntimeError):
    """A worker process ended without an answer (killed, or crashed), or failed with an error that cannot be pickled."""


#: How much :func:`lower_priority` lowers the priority of work that may lag (the overlay) by default.
BACKGROUND_NICENESS = 10


def lower_priority(pid: int | None = None, niceness: int = BACKGROUND_NICENESS) -> bool:
    """Raise the nice value of process ``pid`` (None: the calling thread, on Linux, where it is a
    per-thread attribute) by ``niceness``, so that it takes the CPU the rest leaves. Returns whether
    it could (not on Windows, nor for a thread outside Linux: there it would slow the whole process).

    A nice value rather than Linux's ``SCHED_IDLE``: that policy kept more of the CPU for tracking on
    an idle machine, but on a busy one it starved the overlay (a 72-frame clip beside two busy
    processes: 73 s of waiting for the overlay against 12 s), and an unprivileged process cannot
    leave it once tracking is done (benchmarks/RESULTS.md)."""
    if not hasattr(os, "setpriority") or (pid is None and not sys.platform.startswith("linux")):
        return False
    target = threading.get_native_id() if pid is None else pid
    try:
        os.setpriority(os.PRIO_PROCESS, target, min(os.getpriority(os.PRIO_PROCESS, target) + niceness, 19))
    except OSError:
        return False
    return True


#: Seconds a blocked producer waits before it looks again whether its consumer has gone.
_POLL = 0.1


class _End:
    """Marks the end of a :func:`read_ahead` stream; carries the producer's error, if any."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


def read_ahead(items: Iterable[T], depth: int = 8) -> Generator[T, None, None]:
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


def forked_map(function: Callable[[int], T], count: int, processes: int) -> Iterator[tuple[int, T]]:
    """``(i, function(i))`` for every ``i < count``, in the order they are done: computed by this
    process and ``processes - 1`` forked ones, each taking the next ``i`` when it is free.

    The workers run their copy of ``function`` (and of what it holds): fork only from a fresh process
    (no threads, no native graphs or torch thread pool started yet). A worker's error is raised here;
    leaving the loop early ends the workers.
    """
    if processes <= 1 or count <= 1:
        yield from ((i, function(i)) for i in range(count))
        return
    context = multiprocessing.get_context("fork")
    counter = context.Value("q", 0)
    workers, conns = [], []
    for _ in range(processes - 1):
        conn, child = context.Pipe(duplex=False)
        worker = context.Process(target=_work, args=(function, count, counter, child, conn), daemon=True)
        worker.start()
        child.close()
        workers.append(worker)
        conns.append(conn)
    try:
        received = 0
        while received < count:
            mine = _take(counter, count)
            if mine is not None:
                yield mine, function(mine)
                received += 1
            for conn in cast(list[Connection], wait(conns, timeout=None if mine is None else 0)):
                try:
                    kind, *payload = conn.recv()
                except EOFError:
                    conns.remove(conn)
                    continue
                if kind == "error":
                    raise payload[0]
                yield payload[0], payload[1]
                received += 1
            if mine is None and not conns and received < count:
                raise WorkerError(f"a worker process ended unexpectedly (exit codes {[w.exitcode for w in workers]})")
    finally:
        for conn in conns:
            conn.close()
        for worker in workers:
            worker.join(0.5)
            if worker.is_alive():
                worker.kill()
                worker.join()


def _take(counter, count: int) -> int | None:
    """The next index of the shared ``counter`` (None when all ``count`` are taken)."""
    with counter.get_lock():
        index = counter.value
        if index >= count:
            return None
        counter.value = index + 1
    return index


def _work(function: Callable[[int], T], count: int, counter, conn: Connection, inherited: Connection) -> None:
    """A :func:`forked_map` worker: send ``("item", i, function(i))`` for every index it takes, or one ``("error", err)``.

    ``inherited`` is the parent's end of the pipe as the fork copied it, closed first."""
    inherited.close()
    try:
        while (index := _take(counter, count)) is not None:
            conn.send(("item", index, function(index)))
    except (KeyboardInterrupt, BrokenPipeError, EOFError):  # Ctrl-C or the parent has gone: just end
        pass
    except BaseException as err:
        with suppress(OSError):
            conn.send(("error", picklable(err)))
    finally:
        conn.close()


def picklable(err: BaseException) -> BaseException:
    """``err`` if it survives pickling (to be raised in another process), else a :class:`WorkerError` with its message."""
    try:
        pickle.loads(pickle.dumps(err))
    except Exception:
        return WorkerError(f"{type(err).__name__}: {err}")
    return err


__all__ = ["BACKGROUND_NICENESS", "WorkerError", "forked_map", "lower_priority", "picklable", "read_ahead"]
