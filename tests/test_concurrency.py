"""``au_face.utils.concurrency``: ``read_ahead`` (items in order, the producer's errors, stopping early),
``forked_map`` (every item once, from every process, errors raised here) and ``utils.lazy.defer_import``."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from au_face.utils.concurrency import WorkerError, forked_map, lower_priority, read_ahead


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


def _square_and_pid(i: int) -> tuple[int, int]:
    return i * i, os.getpid()


def test_forked_map_does_every_item_once_in_this_and_the_forked_processes() -> None:
    done = list(forked_map(_square_and_pid, 200, processes=3))
    assert sorted(i for i, _ in done) == list(range(200))
    assert all(square == i * i for i, (square, _) in done)
    assert list(forked_map(_square_and_pid, 3, processes=1)) == [(i, (i * i, os.getpid())) for i in range(3)]


class _Unpicklable(Exception):
    def __reduce__(self):
        raise TypeError("cannot pickle")


_PARENT = os.getpid()


def _fails_in_workers(error: type[Exception]):
    def run(i: int) -> int:
        time.sleep(0.001)
        if os.getpid() != _PARENT:
            raise error(f"photo {i} is broken")
        return i

    return run


@pytest.mark.parametrize(("error", "raised"), [(ValueError, ValueError), (_Unpicklable, WorkerError)])
def test_forked_map_raises_a_workers_error_here(error: type[Exception], raised: type[Exception]) -> None:
    with pytest.raises(raised, match=r"photo \d+ is broken"):
        for _ in forked_map(_fails_in_workers(error), 5000, processes=2):
            pass


def test_a_deferred_import_is_a_stand_in_until_first_use() -> None:
    code = (
        "import sys; from au_face.faces.mediapipe import import_mediapipe; import_mediapipe();"
        "from mediapipe.python.solutions import drawing_utils;"
        "assert 'matplotlib.pyplot' in sys.modules and 'matplotlib.figure' not in sys.modules, 'pyplot imported';"
        "import matplotlib.pyplot as plt; figure = plt.figure; assert callable(figure);"
        "assert drawing_utils.plt.figure is figure and sys.modules['matplotlib.pyplot'].figure is figure"
    )
    pytest.importorskip("mediapipe")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "MPLBACKEND": "Agg"})


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="niceness is per thread on Linux only")
def test_lower_priority_lowers_the_calling_thread_alone() -> None:
    seen: dict[str, int] = {}

    def background() -> None:
        seen["before"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        assert lower_priority(niceness=3)
        seen["after"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    thread = threading.Thread(target=background)
    thread.start()
    thread.join()
    assert seen["after"] == min(seen["before"] + 3, 19)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == seen["before"], "the caller keeps its priority"
