"""Write BGR frames to an MP4 that browsers and notebooks play: H.264 through imageio-ffmpeg (a wheel
that ships its own ffmpeg), else OpenCV's ``mp4v`` with a warning.

x264 runs with :data:`X264_PRESET`: the overlay is a visual check, and on a two-core laptop the
encoder's CPU time competes with everything else a reconstruction does. ``ultrafast`` gives
Constrained Baseline H.264 (no B-frames, no CABAC), which every browser plays. Frames reach
ffmpeg as YUV 4:2:0 (I420, :mod:`au_face.io.yuv`): given as such (:meth:`Mp4Writer.write_i420`) or
converted by OpenCV (BT.601, as ffmpeg's own conversion): ffmpeg converting BGR itself took 5 ms of
CPU a frame for an 840x360 overlay on the two-core machine, OpenCV takes about 0.3 ms. An odd width
or height is padded by one edge pixel (4:2:0 needs even sizes).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np

from au_face.errors import AUFaceError
from au_face.io.yuv import even_size, i420_size, to_bgr, to_i420

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
        self.size = (int(size[0]), int(size[1]))
        self._even = even_size(self.size)
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
        """Append one BGR frame."""
        self.write_i420(to_i420(bgr))

    def write_i420(self, i420: np.ndarray) -> None:
        """Append one I420 frame of the even size (:func:`~au_face.io.yuv.even_size`)."""
        if i420_size(i420) != self._even or i420.ndim != 2:
            raise VideoWriteError(
                f"{self.path}: an I420 frame of {'x'.join(map(str, i420_size(i420)))}, the video is {self._even[0]}x{self._even[1]}"
            )
        if self._ffmpeg is not None:
            self._ffmpeg.send(i420)
        elif self._cv2 is not None:
            self._cv2.write(np.ascontiguousarray(to_bgr(i420)[: self.size[1], : self.size[0]]))
        else:
            raise VideoWriteError(f"{self.path}: writer is closed")

    def close(self) -> None:
        """Finish the file (idempotent)."""
        if self._ffmpeg is not None:
            self._ffmpeg.close()
            self._ffmpeg = None
        if self._cv2 is not None:
            self._cv2.release()
            self._cv2 = None


__all__ = ["Mp4Writer", "VideoWriteError"]
