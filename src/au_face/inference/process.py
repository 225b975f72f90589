"""The refiner in a process of its own, so that loading it overlaps with face tracking.

Loading the model imports torch and reads the checkpoint (no Lightning): seconds of CPU time on a
small machine, as much as tracking a clip of several seconds. MediaPipe holds the GIL while it tracks a frame, so a thread cannot run
those imports alongside; a forked process can, on the other core. The process then reads the
coarse frames from the work folder (:class:`~au_face.coarse.stream.FrameStore` files) as the
parent stores them, runs the same :class:`~au_face.inference.passes.WindowStream` as the
in-process path (same numbers), and appends the refined rows there, telling the parent how many
are ready so that it draws the overlay meanwhile.

Forking is safe only in a fresh process (no threads, torch's thread pool not started yet):
``au-face reconstruct`` run from the shell, which is where it is used.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from contextlib import suppress
from functools import partial
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING

import numpy as np

from au_face.coarse.base import SHOT_FIELD
from au_face.coarse.stream import FRAME_FIELDS
from au_face.inference.passes import FRAME_INPUTS, ArrayRefiner, Refiner, WindowStream, array_refiner, refine_photos
from au_face.utils.concurrency import WorkerError, picklable

if TYPE_CHECKING:
    from au_face.coarse.stream import FrameStore

#: Fields the refiner appends to the store.
REFINED_FIELDS = ("refined", "au_probs")
#: Seconds :meth:`RefinerProcess.close` waits for the process to end before killing it.
_CLOSE_TIMEOUT = 5.0


class RefinerProcessError(WorkerError):
    """The refiner process ended without an answer (killed, or crashed)."""


class RefinerProcess:
    """A refiner built by ``make()`` in a forked process, ready to refine stores of coarse frames.

    ``make()`` runs at once; :meth:`check` raises its error as soon as it has failed (without
    waiting), :attr:`topology_name` waits for it. Call :meth:`close` when done (also on errors).
    ``method`` is the :mod:`multiprocessing` start method: ``"spawn"`` (``make`` must then be
    picklable) starts a fresh interpreter, slower but safe after torch has run in this process.
    """

    def __init__(self, make: Callable[[], Refiner | ArrayRefiner], method: str = "fork") -> None:
        context = multiprocessing.get_context(method)
        self._conn, child = context.Pipe()
        inherited = self._conn if method == "fork" else None  # the child must close its copy of our end
        self._process = context.Process(
            target=_serve, args=(child, make, inherited), name="au_face-refiner", daemon=True
        )
        self._process.start()
        child.close()
        self._topology_name: str | None = None
        self._frame_inputs: tuple[str, ...] = FRAME_INPUTS
        self._store: FrameStore | None = None  # the coarse store last sent (the video being refined)
        self._video = 0  # its number: answers about an earlier one are passed over

    def check(self) -> bool:
        """Whether the refiner is loaded; raises the error of ``make()`` if it has failed. Never waits."""
        if self._topology_name is None and self._conn.poll():
            self._loaded()
        return self._topology_name is not None

    @property
    def topology_name(self) -> str:
        """The refiner's mesh topology (waits until it is loaded; raises its loading error)."""
        if self._topology_name is None:
            self._loaded()
        assert self._topology_name is not None
        return self._topology_name

    @property
    def frame_inputs(self) -> tuple[str, ...]:
        """The optional per-frame fields the refiner reads (all of them until it has loaded)."""
        return self._frame_inputs

    def _loaded(self) -> None:
        self._topology_name, self._frame_inputs = self._receive("loaded")[1]

    def stored(
        self,
        store: FrameStore,
        threads: int | None,
        rows: int,
        on_rows: Callable[[int, list[int]], None] | None,
        final: bool = False,
    ) -> tuple[np.ndarray, list[int]] | None:
        """``rows`` frames are in ``store`` (all of them with ``final``): the process refines what it can
        (:class:`~au_face.inference.passes.WindowStream`) and appends ``refined`` and ``au_probs`` rows.

        Refined rows that are ready meanwhile are reported to ``on_rows(rows, aus)`` without waiting
        (once the refiner has loaded). With ``final``, waits for the last row and returns ``S̄`` (the
        latest used) and the AU numbers; else returns None."""
        if store is not self._store:  # a new video (the last one may have finished or failed)
            self._video += 1
            self._conn.send(("begin", self._video, store, threads))
            self._store = store
        layout = {
            name: (store.dtype(name).str, store.shape(name)) for name in (*FRAME_FIELDS, SHOT_FIELD) if name in store
        }
        self._conn.send(("end" if final else "frames", layout))
        while final or (self.check() and self._conn.poll()):
            kind, (video, *payload) = self._receive("rows", "done", "failed")
            if video != self._video:  # about a video that failed here (its work folder is gone)
                continue
            if kind == "failed":
                raise payload[0]
            if kind == "done":
                reference, aus = payload
                return reference, aus
            refined, aus, refined_layout = payload
            for name, (dtype, shape) in refined_layout.items():
                store.note_rows(name, np.dtype(dtype), shape, refined)
            if on_rows is not None:
                on_rows(refined, aus)
        return None

    def refine_photos(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """:func:`~au_face.inference.passes.refine_photos` in the process (waits for the answer)."""
        self._conn.send(("photos", arrays))
        return self._receive("photos")[1][0]

    def close(self) -> None:
        """End the process (idempotent)."""
        if self._process.is_alive():
            try:
                self._conn.send(None)
            except OSError:  # it is gone already
                pass
            self._process.join(_CLOSE_TIMEOUT)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
        self._conn.close()

    def _receive(self, *expected: str) -> tuple[str, list]:
        """The next message's kind (one of ``expected``) and contents; raises the process's error."""
        try:
            kind, *payload = self._conn.recv()
        except (EOFError, OSError) as err:
            raise RefinerProcessError(
                f"the refiner process ended unexpectedly (exit code {self._process.exitcode})"
            ) from err
        if kind == "error":
            raise payload[0]
        if kind not in expected:
            raise RefinerProcessError(f"the refiner process answered {kind!r}, expected {' or '.join(expected)}")
        return kind, payload


def _serve(conn: Connection, make: Callable[[], Refiner | ArrayRefiner], inherited: Connection | None) -> None:
    """The process: build the refiner, then refine each store the parent sends as its frames arrive
    (``begin`` with the video's number, then ``frames`` after each chunk and ``end``), until the parent
    sends None. Answers about a video carry its number. A video whose refinement fails here (for one,
    its work folder deleted when it failed in the parent) is answered ``failed`` and the process goes
    on to the next.

    ``inherited`` is the parent's end of the pipe as a fork copies it: closed first, so that the
    pipe ends (and this process with it) when the parent dies, even by ``kill -9``.
    """
    if inherited is not None:
        inherited.close()
    try:
        refiner = make()
        conn.send(("loaded", refiner.topology_name, array_refiner(refiner).frame_inputs))
        stream: WindowStream | None = None
        store: FrameStore | None = None
        video = 0
        while (request := conn.recv()) is not None:
            kind, *payload = request
            if kind == "photos":
                conn.send(("photos", refine_photos(refiner, payload[0])))
                continue
            if kind == "begin":
                video, store, threads = payload
                stream = WindowStream(refiner, store, threads, partial(_rows_ready, conn, video, store))
                continue
            while kind == "frames" and conn.poll():  # only the latest count matters
                kind, *payload = conn.recv()
            if stream is None:  # this video failed here already
                continue
            try:
                (layout,) = payload
                for name, (dtype, shape) in layout.items():
                    store.note_rows(name, np.dtype(dtype), shape[1:], shape[0])
                stream.advance(store.shape("valid")[0], final=kind == "end")
            except Exception as err:  # the parent raises it, for this video only
                conn.send(("failed", video, picklable(err)))
                stream = None
                continue
            if kind == "end":
                conn.send(("done", video, stream.reference, stream.aus))
    except (KeyboardInterrupt, EOFError, BrokenPipeError):  # Ctrl-C or the parent has gone: just end
        pass
    except BaseException as err:
        with suppress(OSError):  # unless the parent has gone
            conn.send(("error", picklable(err)))
    finally:
        conn.close()


def _rows_ready(conn: Connection, video: int, store: FrameStore, rows: int, aus: list[int]) -> None:
    """Tell the parent that ``rows`` refined rows of video number ``video`` are in ``store``'s files, and their layout."""
    layout = {name: (store.dtype(name).str, store.shape(name)[1:]) for name in REFINED_FIELDS}
    conn.send(("rows", video, rows, aus, layout))


__all__ = ["REFINED_FIELDS", "RefinerProcess", "RefinerProcessError"]
