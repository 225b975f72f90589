"""Write BGR frames to an MP4 that browsers and notebooks play: H.264 through imageio-ffmpeg (a wheel
that ships its own ffmpeg), else OpenCV's ``mp4v`` with a warning.

x264 runs with :data:`X264_PRESET`: the overlay is a visual check, and on a two-core laptop the
encoder's CPU time competes with everything else a reconstruction does. ``ultrafast`` gives
Constrained Baseline H.264 (no B-frames, no CABAC), which every browser plays. Frames reach
ffmpeg as YUV 4:2:0 converted by OpenCV (BT.601, as ffmpeg's own conversion): ffmpeg converting
BGR itself took 5 ms of CPU a frame for an 840x360 overlay on the two-core machine, OpenCV takes
about 0.3 ms. An odd width or height is padded by one edge pixel (4:2:0 needs even sizes).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np

from au_face.errors import AUFaceError

#: x264 speed preset: ``ultrafast`` takes about 3/4 of ``superfast``'s CPU time (4.5 vs 6.1 ms for an
#: 840x360 frame here) for files about 2.2x as large (about 2 Mbit/s at 30 fps).
X264_PRESET = "ultrafast"


class VideoWriteError(AUFaceError, RuntimeError):
    """The video file cannot be written."""


class Mp4Writer:
    """Frames ``[H,W,3]`` uint8 BGR of one ``size = (width, height)`` to ``path``; :meth:`close` finishes the file."""

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int]) -> None:
        self.path = Path(path)
        self.codec = "h264"
        self._even = (size[0] + size[0] % 2, size[1] + size[1] % 2)
        self._ffmpeg = None
        self._cv2: cv2.VideoWriter | None = None
        try:
            import imageio_ffmpeg
        except ImportError:
            warnings.warn("imageio-ffmpeg is not installed: writing mp4v, which browsers do not play", stacklevel=2)
            self.codec = "mp4v"
            self._cv2 = cv2.VideoWriter(str(self.path), cv2.VideoWriter.fourcc(*"mp4v"), float(fps), size)
            if not self._cv2.isOpened():
                raise VideoWriteError(f"OpenCV cannot write an mp4v video at {self.path}") from None
        else:
            self._ffmpeg = imageio_ffmpeg.write_frames(
                str(self.path), self._even, pix_fmt_in="yuv420p", fps=float(fps), codec="libx264", quality=None,
                macro_block_size=2, ffmpeg_log_level="error",
                output_params=["-preset", X264_PRESET, "-crf", "23", "-movflags", "+faststart"],
            )  # fmt: skip
            self._ffmpeg.send(None)

    def write(self, bgr: np.ndarray) -> None:
        """Append one frame."""
        if self._ffmpeg is not None:
            self._ffmpeg.send(self._yuv420(bgr))
        elif self._cv2 is not None:
            self._cv2.write(bgr)
        else:
            raise VideoWriteError(f"{self.path}: writer is closed")

    def _yuv420(self, bgr: np.ndarray) -> np.ndarray:
        """The frame as planar YUV 4:2:0 (I420) at the even size, odd sizes padded by an edge pixel."""
        pad_x, pad_y = self._even[0] - bgr.shape[1], self._even[1] - bgr.shape[0]
        if pad_x or pad_y:
            bgr = cv2.copyMakeBorder(bgr, 0, pad_y, 0, pad_x, cv2.BORDER_REPLICATE)
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)

    def close(self) -> None:
        """Finish the file (idempotent)."""
        if self._ffmpeg is not None:
            self._ffmpeg.close()
            self._ffmpeg = None
        if self._cv2 is not None:
            self._cv2.release()
            self._cv2 = None


__all__ = ["Mp4Writer", "VideoWriteError"]
