"""S̄ of a video whose frames are still arriving: fitted on the first frames, refitted as more come.

The refinement of a window needs ``S̄``. Waiting for the whole video's ``S̄`` would hold every
window back until the last frame is tracked, so ``S̄`` follows a schedule that depends on the
frames alone (never on timing), and the in-memory and streamed paths give the same numbers:

- it is first fitted when :data:`REFERENCE_WARMUP` frames with a face are in (on the frames up to
  there), then refitted each time twice as many are in (256, 512, ...); a video with fewer
  faces than that gets one fit over all its frames, exactly as before;
- each fit uses at most :data:`REFERENCE_FRAMES` evenly spaced frames of those in so far;
- an update moves no vertex of ``S̄`` by more than :data:`REFERENCE_STEP` from the previous one
  (:func:`bounded_update`), so AU readings never jump where ``S̄`` changes;
- a window is refined with the latest fit made at or before its last frame (the first fit for the
  windows before it).
"""

from __future__ import annotations

import numpy as np

#: Frames with a face on which S̄ is first fitted (about 4 s at 30 fps); refitted at 2x, 4x, ... as many.
REFERENCE_WARMUP = 128
#: The most one update moves any vertex of S̄ (template units, about cm).
REFERENCE_STEP = 0.2
#: Frames, evenly spaced over those in so far, that one fit of S̄ uses at most (memory and time stay flat).
REFERENCE_FRAMES = 256


def fit_frames(count: int) -> np.ndarray:
    """Indices of the at most :data:`REFERENCE_FRAMES` evenly spaced frames of ``0..count`` one fit uses."""
    return np.unique(np.linspace(0, count - 1, min(count, REFERENCE_FRAMES)).round().astype(np.int64))


def bounded_update(previous: np.ndarray | None, fitted: np.ndarray, step: float = REFERENCE_STEP) -> np.ndarray:
    """``fitted [V,3]``, except that no vertex moves more than ``step`` from ``previous`` (the first fit as it is)."""
    fitted = np.asarray(fitted, dtype=np.float32)
    if previous is None:
        return fitted
    change = fitted - previous
    length = np.linalg.norm(change, axis=-1, keepdims=True)
    shrink = np.minimum(1.0, step / np.maximum(length, 1e-12))
    return (previous + change * shrink).astype(np.float32)


class ReferenceSchedule:
    """Where S̄ is fitted, from the ``valid`` flags of the frames as they arrive (:meth:`add`).

    :attr:`points` are frame counts ``u``: S̄ is fitted on frames ``0..u`` once the
    ``REFERENCE_WARMUP · 2^k``-th frame with a face is in. :meth:`point_for` says which fit a
    window uses.
    """

    def __init__(self, warmup: int = REFERENCE_WARMUP) -> None:
        if warmup < 1:
            raise ValueError(f"warmup must be positive, got {warmup}")
        self.points: list[int] = []
        self._frames = 0
        self._faces = 0
        self._next = warmup

    @property
    def frames(self) -> int:
        """Frames added so far."""
        return self._frames

    def add(self, valid: np.ndarray) -> None:
        """The ``valid`` flags of the next frames."""
        counts = self._faces + np.cumsum(np.asarray(valid, dtype=bool))
        while counts.size and counts[-1] >= self._next:
            self.points.append(self._frames + int(np.searchsorted(counts, self._next)) + 1)
            self._next *= 2
        self._frames += len(counts)
        self._faces = int(counts[-1]) if counts.size else self._faces

    def point_for(self, stop: int, total: int | None = None) -> int | None:
        """The fit (frame count) for a window ending at frame ``stop``: the latest point at or before
        ``stop``, else the first point; with no point yet, ``total`` (the video's length once known)
        or None (wait for more frames)."""
        if not self.points:
            return total
        earlier = [u for u in self.points if u <= stop]
        return earlier[-1] if earlier else self.points[0]


__all__ = [
    "REFERENCE_FRAMES",
    "REFERENCE_STEP",
    "REFERENCE_WARMUP",
    "ReferenceSchedule",
    "bounded_update",
    "fit_frames",
]
