"""Frames of pass 1 kept for the overlay, so that a video is decoded once (:class:`FrameTee`).

The overlay (pass 3) draws frame ``i`` only once its final mesh is in, which with a refiner is a
few hundred frames after pass 1 decoded it (``S̄``'s first fit waits for
:data:`~au_face.model.reference.REFERENCE_WARMUP` frames with a face). Decoding the video a second
time for the overlay cost about 3 ms of CPU a frame (640x360, two cores), a sixth of a whole run.
The tee keeps pass 1's frames until the overlay takes them instead, as YUV 4:2:0 (half of RGB's
bytes; the overlay is encoded as 4:2:0 anyway) within a byte ``budget``: memory stays flat in the
video length. When pass 1 gets further ahead than the budget holds (large frames, a slow refiner),
the tee lets go of every frame and the overlay decodes the video itself from where it is, as before.
"""

from __future__ import annotations

import threading
from collections import deque

import cv2
import numpy as np

from au_face.io.video import VideoFrame

#: Bytes of frames a tee holds at most by default: about 580 frames of 640x360 (1280x720 drawn halved), 260 of 960x540.
DEFAULT_BUDGET = 192 * 2**20


class FrameTee:
    """Frames in order from a producer (:meth:`add`, pass 1's decoding thread) to one consumer
    (:meth:`take`, the overlay).

    :meth:`take` returns frame ``i`` as RGB once it has been added, or None when the tee has
    overflowed (then it holds nothing more) or :meth:`close` was called before frame ``i`` came.
    With ``size`` (width, height), frames are kept scaled to it (:func:`scaled`).
    """

    def __init__(self, budget: int = DEFAULT_BUDGET, size: tuple[int, int] | None = None) -> None:
        self.budget = budget
        self.size = size
        self._frames: deque[tuple[int, float, np.ndarray]] = deque()
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
        packed = _pack(scaled(frame.rgb, self.size))  # outside the lock: the consumer keeps taking meanwhile
        with self._changed:
            if self.overflowed or self._closed:
                return
            self._bytes += packed.nbytes
            if self._bytes > self.budget:
                self._overflow()
                return
            self._frames.append((frame.index, frame.timestamp, packed))
            self._added += 1
            self.peak_bytes = max(self.peak_bytes, self._bytes)
            self._changed.notify_all()

    def take(self, position: int) -> VideoFrame | None:
        """The ``position``-th frame added (0-based; taken in order, each once), waiting for it;
        None if the tee has overflowed or was closed first."""
        with self._changed:
            self._changed.wait_for(lambda: self.overflowed or self._closed or self._added > position)
            if self.overflowed or not self._frames:
                return None
            index, timestamp, packed = self._frames.popleft()
            self._bytes -= packed.nbytes
        return VideoFrame(index, timestamp, _unpack(packed))

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


def scaled(rgb: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """``rgb`` resized to ``size`` (width, height; area averaging), or as it is without one."""
    if size is None or (rgb.shape[1], rgb.shape[0]) == tuple(size):
        return rgb
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def _pack(rgb: np.ndarray) -> np.ndarray:
    """RGB ``[H,W,3]`` as I420 ``[H*3/2,W]`` (even sizes) or an RGB copy (odd sizes)."""
    if rgb.shape[0] % 2 or rgb.shape[1] % 2:
        return rgb.copy()
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)


def _unpack(packed: np.ndarray) -> np.ndarray:
    """The RGB frame of :func:`_pack`'s output."""
    if packed.ndim == 3:
        return packed
    return cv2.cvtColor(packed, cv2.COLOR_YUV2RGB_I420)


__all__ = ["DEFAULT_BUDGET", "FrameTee", "scaled"]
