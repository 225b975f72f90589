"""One sliding window over a frame sequence: where windows go (the plan) and how their outputs blend.

Both whole-video paths use it: :meth:`au_face.training.task.AUFaceTask.refine` (in memory, batched) and
:class:`au_face.inference.passes.WindowStream` (streamed from disk), so they give the same meshes and
AU probabilities for the same video.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from au_face.errors import AUFaceError


class WindowError(AUFaceError, ValueError):
    """A window length or stride that is not a positive integer, or windows out of order."""


@dataclass(frozen=True)
class SlidingWindow:
    """Windows of ``length`` frames every ``stride`` frames (default: half a window).

    The last window is moved back to end at the last frame, so every window is full length
    unless the sequence is shorter than one window. Overlapping outputs are averaged with tent
    weights ``1 + min(i, n - 1 - i)``: a window's edge frames, which have the least temporal
    context, count least, and no seam appears at window borders.
    """

    length: int
    stride: int | None = None

    def __post_init__(self) -> None:
        if self.length < 1 or (self.stride is not None and self.stride < 1):
            raise WindowError(f"window length and stride must be positive, got {self.length} and {self.stride}")

    @property
    def hop(self) -> int:
        """Frames between window starts."""
        return self.stride if self.stride is not None else max(1, self.length // 2)

    def plan(self, num_frames: int) -> list[tuple[int, int]]:
        """Windows ``(start, stop)`` covering frames ``0..num_frames`` in increasing order."""
        if num_frames <= self.length:
            return [(0, num_frames)]
        starts = [*range(0, num_frames - self.length, self.hop), num_frames - self.length]
        return [(s, s + self.length) for s in starts]

    @staticmethod
    def weights(n: int) -> np.ndarray:
        """Tent weights ``[n]`` of a window of ``n`` frames."""
        i = np.arange(n)
        return 1.0 + np.minimum(i, n - 1 - i)

    def blend(self) -> WindowBlend:
        """A streaming blender for this window's outputs."""
        return WindowBlend()


class WindowBlend:
    """Tent-weighted average of window outputs that arrive in plan order, with bounded memory.

    :meth:`add` takes one window's outputs (arrays with time first) and returns the frames that no
    later window can reach any more (those before its start); :meth:`finish` returns the rest.
    Only the frames of the current overlap are held.
    """

    def __init__(self) -> None:
        self._offset = 0  # first frame not yet returned
        self._sums: list[np.ndarray] = []
        self._weight = np.zeros(0)

    def add(self, start: int, *outputs: np.ndarray) -> list[np.ndarray]:
        """Add the outputs of the window starting at frame ``start``; return the finished frames."""
        if start < self._offset or start > self._offset + len(self._weight):
            raise WindowError(
                f"window at frame {start} does not continue frames {self._offset}..{self._offset + len(self._weight)}"
            )
        done = self._release(start - self._offset)
        n = len(outputs[0])
        grow = n - len(self._weight)
        if not self._sums:
            self._sums = [np.zeros((0, *out.shape[1:])) for out in outputs]
        if grow > 0:
            self._weight = np.concatenate([self._weight, np.zeros(grow)])
            self._sums = [np.concatenate([s, np.zeros((grow, *s.shape[1:]))]) for s in self._sums]
        w = SlidingWindow.weights(n)
        self._weight[:n] += w
        for total, out in zip(self._sums, outputs):
            total[:n] += w.reshape(-1, *[1] * (out.ndim - 1)) * out
        return done

    def finish(self) -> list[np.ndarray]:
        """The remaining frames."""
        return self._release(len(self._weight))

    def _release(self, count: int) -> list[np.ndarray]:
        w = self._weight[:count]
        done = [(s[:count] / w.reshape(-1, *[1] * (s.ndim - 1))).astype(np.float32) for s in self._sums]
        self._sums = [s[count:] for s in self._sums]
        self._weight = self._weight[count:]
        self._offset += count
        return done


__all__ = ["SlidingWindow", "WindowBlend", "WindowError"]
