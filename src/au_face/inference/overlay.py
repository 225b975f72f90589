"""Pass 3 of :func:`~au_face.inference.pipeline.reconstruct`: the overlay video, drawn in threads
while the meshes are made (:class:`OverlayStream`)."""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Generator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import numpy as np

from au_face.coarse.stream import STORE_CHUNK, FrameStore
from au_face.inference.frame_tee import FrameTee, pack
from au_face.inference.passes import PipelineError, progress_bar
from au_face.io.sources import FrameReader, open_frames
from au_face.io.yuv import PackedFrame
from au_face.utils.concurrency import BACKGROUND_NICENESS, lower_priority, read_ahead
from au_face.viz.overlay import OverlayWriter

#: Threads drawing overlay frames (OpenCV releases the GIL while it draws); frames stay in order.
_DRAWING_THREADS = 2


class OverlayStream:
    """Pass 3 in a thread: draw the posed final mesh and AU bars on every processed frame while
    the main thread is still producing the meshes.

    The thread takes the frames pass 1 decoded from ``tee`` (or, without one or once it has
    overflowed, decodes the video again) and waits for each frame's row in ``store`` (``final``
    vertices, pose and, with ``aus``, ``au_probs``); :meth:`ready` says how many rows are there.
    It draws at ``size`` (width, height: :func:`~au_face.viz.overlay.overlay_size`, the size ``tee``
    keeps its frames at; default the video's).
    :data:`_DRAWING_THREADS` draw the frames, which are written in order. The thread, the drawing
    threads and the encoder run at a lower priority (:func:`~au_face.utils.concurrency.lower_priority`):
    tracking, which everything waits for, gets the CPU first, and the overlay the rest.
    :meth:`finish` waits for the video and publishes it (raising the thread's error, if any);
    :meth:`cancel` stops the thread and discards the partial video. The writer (and its ffmpeg
    process) is started here, in the calling thread.
    """

    def __init__(
        self,
        path: Path,
        source: Path,
        store: FrameStore,
        final: str,
        triangles: np.ndarray,
        aus: list[int],
        stride: int,
        max_frames: int | None,
        progress: bool,
        fps: float | None = None,
        style: str = "wire",
        tee: FrameTee | None = None,
        size: tuple[int, int] | None = None,
    ) -> None:
        self._store, self._final, self._aus, self._tee = store, final, aus, tee
        self._reader = open_frames(source, stride=stride, max_frames=max_frames, fps=fps)
        self._size = size or self._reader.size
        self._factor = np.array([self._size[0] / self._reader.size[0], self._size[1] / self._reader.size[1], 1.0])
        try:
            self._writer = OverlayWriter(
                path, self._reader.fps / stride, self._size, triangles, aus or None, style=style,
                niceness=BACKGROUND_NICENESS,
            )  # fmt: skip
        except BaseException:
            self._reader.close()
            raise
        self._progress = progress
        self._changed = threading.Condition()
        self._rows = 0
        self._total: int | None = None
        self._cancelled = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="au_face-overlay", daemon=True)
        self._thread.start()

    def ready(self, rows: int) -> None:
        """The first ``rows`` frames' rows are in the store. Raises the thread's error, if it has failed."""
        if self._error is not None:
            raise self._error
        with self._changed:
            self._rows = rows
            self._changed.notify_all()

    def finish(self, total: int) -> None:
        """All ``total`` rows are in the store: wait for the video to be written and published."""
        with self._changed:
            self._rows = self._total = total
            self._changed.notify_all()
        self._thread.join()
        if self._error is not None:
            raise self._error

    def cancel(self) -> None:
        """Stop drawing and discard the partial video (idempotent)."""
        with self._changed:
            self._cancelled = True
            self._changed.notify_all()
        self._thread.join()

    def _wait_for(self, index: int) -> bool:
        """Wait until frame ``index``'s row is stored (True) or the frames end before it (False)."""
        with self._changed:
            self._changed.wait_for(
                lambda: self._cancelled or self._rows > index or (self._total is not None and self._total <= index)
            )
            if self._cancelled:
                raise _Cancelled
            return self._rows > index

    def _wait_for_total(self) -> int:
        """Wait until :meth:`finish` says how many frames there are."""
        with self._changed:
            self._changed.wait_for(lambda: self._cancelled or self._total is not None)
            if self._cancelled or self._total is None:
                raise _Cancelled
            return self._total

    def _rows_from(self, start: int) -> dict[str, np.ndarray]:
        """The stored rows of frames ``start:`` (up to :data:`~au_face.coarse.stream.STORE_CHUNK` of them) that the drawing needs."""
        names = (self._final, "valid", "rotation", "translation", "scale", *(("au_probs",) if self._aus else ()))
        with self._changed:
            stop = min(self._rows, start + STORE_CHUNK)
        return {name: self._store.read(name, start, stop) for name in names}

    def _run(self) -> None:
        lower_priority()
        try:
            with (
                self._reader,
                self._writer as writer,
                ThreadPoolExecutor(_DRAWING_THREADS, "au_face-draw", initializer=lower_priority) as drawing,
                progress_bar(None, "overlay", self._progress) as bar,
                closing(overlay_frames(self._tee, self._reader, self._size)) as frames,
            ):
                rows: dict[str, np.ndarray] = {}
                start = 0
                drawn: deque[Future[np.ndarray]] = deque()
                for i, frame in enumerate(frames):
                    if not self._wait_for(i):
                        break
                    if i - start >= len(rows.get("valid", ())):
                        start, rows = i, self._rows_from(i)
                    j = i - start
                    probs = rows["au_probs"][j] if self._aus else None
                    drawn.append(
                        drawing.submit(writer.compose, frame.i420, self._posed(rows, j), probs, frame.timestamp)
                    )
                    while drawn and (len(drawn) > _DRAWING_THREADS or drawn[0].done()):
                        writer.write_composed(drawn.popleft().result())
                        bar.update(1)
                while drawn:
                    writer.write_composed(drawn.popleft().result())
                    bar.update(1)
                total = self._wait_for_total()
                if writer.frames_written != total:
                    raise PipelineError(
                        f"overlay: the video gave {writer.frames_written} frames on the second read, {total} on the first"
                    )
        except _Cancelled:
            pass
        except BaseException as err:
            self._error = err

    def _posed(self, rows: dict[str, np.ndarray], j: int) -> np.ndarray | None:
        """Image-space vertices of row ``j`` on the overlay's picture (None without a face)."""
        if not rows["valid"][j]:
            return None
        posed = rows["scale"][j] * rows[self._final][j] @ rows["rotation"][j].T + rows["translation"][j]
        return posed * self._factor


def overlay_frames(
    tee: FrameTee | None, reader: FrameReader, size: tuple[int, int] | None = None
) -> Generator[PackedFrame, None, None]:
    """The frames to draw, as I420: pass 1's from ``tee`` while it has them, then (no tee: from the
    start; overflowed: from the first frame it did not give) decoded again by ``reader`` and scaled
    to ``size`` (width, height; the tee scales its own)."""
    taken = 0
    if tee is not None:
        while (frame := tee.take(taken)) is not None:
            yield frame
            taken += 1
        if not tee.overflowed:  # pass 1 ended and every frame was taken
            return
    with closing(read_ahead(reader, depth=4)) as decoded:
        for again in itertools.islice(decoded, taken, None):
            yield pack(again, size)


class _Cancelled(Exception):
    """Raised in the overlay thread when :meth:`OverlayStream.cancel` stops it."""


__all__ = ["OverlayStream", "overlay_frames"]
