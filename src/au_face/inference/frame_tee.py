"""Frames of pass 1 kept for the overlay, so that a video is decoded once (:class:`FrameTee`).

The overlay (pass 3) draws frame ``i`` only once its final mesh is in, which with a refiner is a
few hundred frames after pass 1 decoded it (``S̄``'s first fit waits for
:data:`~au_face.model.reference.REFERENCE_WARMUP` frames with a face). Decoding the video a second
time for the overlay cost about 3 ms of CPU a frame (640x360, two cores), a sixth of a whole run.
The tee keeps pass 1's frames until the overlay takes them instead, as YUV 4:2:0 (I420, half of
RGB's bytes; the overlay draws on and encodes that form, :mod:`au_face.io.yuv`) within a byte
``budget``: memory stays flat in the video length. When pass 1 gets further ahead than the budget
holds (large frames, a slow refiner), the tee lets go of every frame and the overlay decodes the
video itself from where it is, as before.
"""

from __future__ import annotations

import threading
from collections import deque

import cv2

from au_face.io.video import VideoFrame
from au_face.io.yuv import PackedFrame, to_i420

#: Bytes of frames a tee holds at most by default: about 580 frames of 640x360 (1280x720 drawn halved), 260 of 960x540.
DEFAULT_BUDGET = 192 * 2**20


class FrameTee:
    """Frames in order from a producer (:meth:`add`, pass 1's decoding thread) to one consumer
    (:meth:`take`, the overlay).

    :meth:`take` returns frame ``i`` as I420 (odd sizes padded by an edge pixel) once it has been
    added, or None when the tee has overflowed (then it holds nothing more) or :meth:`close` was
    called before frame ``i`` came. With ``size`` (width, height), frames are kept scaled to it (:func:`pack`).
    """

    def __init__(self, budget: int = DEFAULT_BUDGET, size: tuple[int, int] | None = None) -> None:
        self.budget = budget
        self.size = size
        self._frames: deque[PackedFrame] = deque()
        self._bytes = 0
        self._added = 0
        self._changed = threading.Condition()
        self.overflowed = False
        self._closed = False
        #: most bytes held at once (for benchmarks and tests)
        self.peak_bytes = 0

    def add(self, frame: VideoFrame) -> None:
        """Keep the next frame for the consumer, or overflow if it does not fit."""
        if self.overflowed or self._closed:
            return
        packed = pack(frame, self.size)  # outside the lock: the consumer keeps taking meanwhile
        with self._changed:
            if self.overflowed or self._closed:
                return
            self._bytes += packed.i420.nbytes
            if self._bytes > self.budget:
                self._overflow()
                return
            self._frames.append(packed)
            self._added += 1
            self.peak_bytes = max(self.peak_bytes, self._bytes)
            self._changed.notify_all()

    def take(self, position: int) -> PackedFrame | None:
        """The ``position``-th frame added (0-based; taken in order, each once), waiting for it;
        None if the tee has overflowed or was closed first."""
        with self._changed:
            self._changed.wait_for(lambda: self.overflowed or self._closed or self._added > position)
            if self.overflowed or not self._frames:
                return None
            packed = self._frames.popleft()
            self._bytes -= packed.i420.nbytes
        return packed

    def close(self) -> None:
        """No more frames: a :meth:`take` waiting for one that did not come returns None."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def _overflow(self) -> None:
        self.overflowed = True
        self._frames.clear()
        self._bytes = 0
        self._changed.notify_all()


def pack(frame: VideoFrame, size: tuple[int, int] | None = None) -> PackedFrame:
    """``frame`` as I420, resized to ``size`` (width, height; area averaging) when it is another."""
    rgb = frame.rgb
    if size is not None and (rgb.shape[1], rgb.shape[0]) != tuple(size):
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    return PackedFrame(frame.index, frame.timestamp, to_i420(rgb, rgb=True))


__all__ = ["DEFAULT_BUDGET", "FrameTee", "pack"]
