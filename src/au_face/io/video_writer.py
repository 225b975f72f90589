"""Write BGR frames to an MP4 that browsers and notebooks play: H.264 through the ffmpeg that the
imageio-ffmpeg wheel ships, else OpenCV's ``mp4v`` with a warning.

x264 runs with :data:`X264_PRESET`: the overlay is a visual check, and on a two-core laptop the
encoder's CPU time competes with everything else a reconstruction does. ``ultrafast`` gives
Constrained Baseline H.264 (no B-frames, no CABAC), which every browser plays. Frames reach
ffmpeg as YUV 4:2:0 (I420, :mod:`au_face.io.yuv`): given as such (:meth:`Mp4Writer.write_i420`) or
converted by OpenCV (BT.601, as ffmpeg's own conversion): ffmpeg converting BGR itself took 5 ms of
CPU a frame for an 840x360 overlay on the two-core machine, OpenCV takes about 0.3 ms. An odd width
or height is padded by one edge pixel (4:2:0 needs even sizes).
"""

from __future__ import annotations

import subprocess
import tempfile
import warnings
from contextlib import suppress
from pathlib import Path

import cv2
import numpy as np

from au_face.errors import AUFaceError
from au_face.io.yuv import even_size, i420_size, to_bgr, to_i420
from au_face.utils.concurrency import lower_priority

#: x264 speed preset: ``ultrafast`` takes about 3/4 of ``superfast``'s CPU time (4.5 vs 6.1 ms for an
#: 840x360 frame here) for files about 2.2x as large (about 2 Mbit/s at 30 fps).
X264_PRESET = "ultrafast"


class VideoWriteError(AUFaceError, RuntimeError):
    """The video file cannot be written."""


class Mp4Writer:
    """Frames ``[H,W,3]`` uint8 BGR (or I420) of one ``size = (width, height)`` to ``path``; :meth:`close` finishes the file.

    H.264 is written by imageio-ffmpeg's ffmpeg binary, fed raw I420 through a pipe. ``niceness``
    lowers the encoder process's scheduling priority by that much (where the system has one):
    the overlay's encoder should take the CPU that tracking leaves, not share it.
    """

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int], niceness: int = 0) -> None:
        self.path = Path(path)
        self.codec = "h264"
        self.size = (int(size[0]), int(size[1]))
        self._even = even_size(self.size)
        self._ffmpeg: subprocess.Popen[bytes] | None = None
        self._cv2: cv2.VideoWriter | None = None
        try:
            import imageio_ffmpeg
        except ImportError:
            warnings.warn("imageio-ffmpeg is not installed: writing mp4v, which browsers do not play", stacklevel=2)
            self.codec = "mp4v"
            self._cv2 = cv2.VideoWriter(str(self.path), cv2.VideoWriter.fourcc(*"mp4v"), float(fps), size)
            if not self._cv2.isOpened():
                raise VideoWriteError(f"OpenCV cannot write an mp4v video at {self.path}") from None
            return
        command = [
            imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error",
            "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{self._even[0]}x{self._even[1]}", "-r", f"{float(fps)}",
            "-i", "-", "-an", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", X264_PRESET, "-crf", "23",
            "-movflags", "+faststart", "-f", "mp4", str(self.path),
        ]  # fmt: skip
        self._log = tempfile.TemporaryFile()
        self._ffmpeg = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._log)
        if niceness:
            lower_priority(self._ffmpeg.pid, niceness)

    @property
    def pid(self) -> int | None:
        """The encoder process's id (None when OpenCV writes the file)."""
        return self._ffmpeg.pid if self._ffmpeg is not None else None

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
            try:
                self._ffmpeg.stdin.write(np.ascontiguousarray(i420).data)  # type: ignore[union-attr]
            except (BrokenPipeError, OSError) as err:
                raise VideoWriteError(f"ffmpeg stopped writing {self.path}: {self._stop()}") from err
        elif self._cv2 is not None:
            self._cv2.write(np.ascontiguousarray(to_bgr(i420)[: self.size[1], : self.size[0]]))
        else:
            raise VideoWriteError(f"{self.path}: writer is closed")

    def close(self) -> None:
        """Finish the file (idempotent); raise :class:`VideoWriteError` if ffmpeg failed."""
        if self._ffmpeg is not None:
            with suppress(BrokenPipeError, OSError):
                self._ffmpeg.stdin.close()  # type: ignore[union-attr]
            if self._ffmpeg.wait() != 0:
                raise VideoWriteError(f"ffmpeg failed to write {self.path}: {self._stop()}")
            self._stop()
        if self._cv2 is not None:
            self._cv2.release()
            self._cv2 = None

    def _stop(self) -> str:
        """End the encoder process (if it still runs) and return the end of what it printed."""
        process, self._ffmpeg = self._ffmpeg, None
        if process is None:
            return ""
        if process.poll() is None:
            process.kill()
        process.wait()
        self._log.seek(0)
        message = self._log.read()[-2000:].decode(errors="replace").strip()
        self._log.close()
        return message or f"exit status {process.returncode}"


__all__ = ["Mp4Writer", "VideoWriteError"]
