"""Stream the frames of a video file with OpenCV, one at a time, with their timestamps."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

from au_face.errors import AUFaceError

#: Used when the container states no usable frame rate.
DEFAULT_FPS = 30.0
#: Frame rates outside this range are used as stated but warned about (a broken or mislabelled container).
PLAUSIBLE_FPS = (1.0, 240.0)


class VideoError(AUFaceError, ValueError):
    """A video that cannot be read: missing, not a video, corrupt, or without frames."""


class VideoNotFoundError(VideoError, FileNotFoundError):
    """The video file does not exist."""


class TruncatedVideoWarning(UserWarning):
    """Fewer frames decoded than the container states (a truncated or damaged file)."""


@dataclass(frozen=True)
class VideoFrame:
    """One decoded frame: ``index`` in the source video, ``timestamp`` in seconds, ``rgb`` ``[H,W,3]`` uint8."""

    index: int
    timestamp: float
    rgb: np.ndarray


class VideoReader:
    """Iterate over the frames of a video without loading it whole.

    Every ``stride``-th frame is yielded (frames between are skipped without conversion), at most
    ``max_frames`` of them. The file is opened and its first frame decoded on construction, so a
    missing, non-video or undecodable file fails here with a :class:`VideoError`. A file that
    stops decoding part-way yields what decodes and warns (:class:`TruncatedVideoWarning`).
    Each iteration starts again from the first frame. Use as a context manager, or call
    :meth:`close`, to release the decoder.
    """

    def __init__(self, path: str | Path, stride: int = 1, max_frames: int | None = None) -> None:
        self.path = Path(path)
        if not _positive_int(stride):
            raise VideoError(f"stride must be a positive integer, got {stride!r}")
        if max_frames is not None and not _positive_int(max_frames):
            raise VideoError(f"max_frames must be a positive integer or None, got {max_frames!r}")
        self.stride = stride
        self.max_frames = max_frames
        if not self.path.exists():
            raise VideoNotFoundError(f"video not found: {self.path}")
        if self.path.is_dir():
            raise VideoError(f"{self.path} is a folder, not a video file")
        if not self.path.is_file():
            raise VideoError(f"not a video file: {self.path} is a special file")
        #: frames decoded by the last complete pass (skipped ones included) and whether that is
        #: clearly fewer than the container states.
        self.frames_decoded = 0
        self.truncated = False
        self._capture: cv2.VideoCapture | None = self._open()
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        self._fps_stated = math.isfinite(fps) and 0.0 < fps <= 1000.0
        self.fps = float(fps) if self._fps_stated else DEFAULT_FPS
        count = self._capture.get(cv2.CAP_PROP_FRAME_COUNT)
        #: frame count stated by the container (may be approximate); None when it states none.
        self.num_frames: int | None = int(count) if math.isfinite(count) and count > 0 else None
        width, height = self._capture.get(cv2.CAP_PROP_FRAME_WIDTH), self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT)
        self.size = (int(width), int(height))
        self._first: np.ndarray | None = self._read(self._capture)
        if self._first is None:
            codec = fourcc(self._capture)
            self.close()
            raise VideoError(f"{self.path}: no frame could be decoded ({_undecodable(codec)})")
        self.size = (self._first.shape[1], self._first.shape[0])  # as displayed (rotation applied)
        if not self._fps_stated:
            warnings.warn(f"{self.path}: no frame rate in the container; assuming {DEFAULT_FPS} fps", stacklevel=2)
        elif not PLAUSIBLE_FPS[0] <= self.fps <= PLAUSIBLE_FPS[1]:
            warnings.warn(
                f"{self.path}: the container states {self.fps:g} fps, outside the plausible "
                f"{PLAUSIBLE_FPS[0]:g}-{PLAUSIBLE_FPS[1]:g}; timestamps and smoothing assume it is right",
                stacklevel=2,
            )

    def _open(self) -> cv2.VideoCapture:
        # FFmpeg's own console messages ("moov atom not found", ...) would duplicate our errors;
        # set OPENCV_FFMPEG_LOGLEVEL (e.g. 16) to see them.
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
        check_readable(self.path)
        capture = cv2.VideoCapture(str(self.path))
        # frames upright as players show them (a phone video's display matrix: -90, 90, 180 degrees)
        capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
        if not capture.isOpened():
            capture.release()
            raise VideoError(
                f"{self.path}: OpenCV cannot open it as a video (not a video file, an unsupported codec, "
                "or a corrupt/truncated container)"
            )
        return capture

    @staticmethod
    def _read(capture: cv2.VideoCapture) -> np.ndarray | None:
        ok, frame = capture.read()
        return frame if ok and frame is not None and frame.size else None

    def __iter__(self) -> Iterator[VideoFrame]:
        first, self._first = self._first, None
        if first is None or self._capture is None:  # a later pass, or closed: start again
            self.close()
            self._capture = self._open()
            first = self._read(self._capture)
            if first is None:
                self.close()
                raise VideoError(f"{self.path}: no frame could be decoded on a second pass (file changed?)")
        capture = self._capture
        index, yielded, previous = 0, 0, -math.inf
        frame: np.ndarray | None = first
        try:
            while True:
                if frame is not None:
                    timestamp = self._timestamp(capture, index, previous)
                    previous = timestamp
                    yield VideoFrame(index, timestamp, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
                    yielded += 1
                    if self.max_frames is not None and yielded >= self.max_frames:
                        return
                index += 1
                if index % self.stride == 0:  # decode and convert only the frames we yield
                    frame = self._read(capture)
                    if frame is None:
                        break
                else:
                    frame = None
                    if not capture.grab():
                        break
            self.frames_decoded = index
            stated = self.num_frames
            self.truncated = stated is not None and stated - index > max(1, stated // 100)
            if self.truncated:
                warnings.warn(
                    f"{self.path}: decoded {index} of the {stated} frames the container states; "
                    "the file may be truncated or damaged",
                    TruncatedVideoWarning,
                    stacklevel=2,
                )
        finally:
            self.close()

    def _timestamp(self, capture: cv2.VideoCapture, index: int, previous: float) -> float:
        """Container time of the frame just read when it is sane, else ``index / fps``; always increasing."""
        seconds = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
        if not (math.isfinite(seconds) and seconds >= 0.0 and seconds > previous):
            seconds = index / self.fps
        if seconds <= previous:
            seconds = previous + self.stride / self.fps
        return float(seconds)

    def close(self) -> None:
        """Release the decoder (iteration opens it again)."""
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        w, h = self.size
        return f"VideoReader({str(self.path)!r}, {w}x{h}, {self.fps:g} fps, frames={self.num_frames}, stride={self.stride})"


def check_readable(path: Path) -> None:
    """Raise :class:`VideoError` if ``path`` cannot be opened for reading (permission denied)."""
    try:
        with open(path, "rb"):
            pass
    except PermissionError as err:
        raise VideoError(f"{path}: permission denied (the file cannot be read)") from err


def fourcc(capture: cv2.VideoCapture) -> str:
    """The codec tag of an open capture (``avc1``, ``AV01``, ``webp``...), "" if it states none."""
    value = capture.get(cv2.CAP_PROP_FOURCC)
    code = int(value) if math.isfinite(value) and 0 < value < 2**32 else 0
    return code.to_bytes(4, "little").decode("ascii", "replace").strip("\x00 ")


def _undecodable(codec: str) -> str:
    """Why no frame decoded, given the stream's codec tag."""
    convert = "convert it, e.g. ffmpeg -i IN -c:v libx264 -pix_fmt yuv420p OUT.mp4"
    if codec.lower() == "av01":
        return f"an AV1 video, a codec this OpenCV build cannot decode; {convert}"
    if codec.lower() == "webp":
        return f"an animated WebP, a format this OpenCV build cannot decode; {convert}"
    named = f"codec {codec}: " if codec else ""
    return f"{named}a corrupt, truncated or empty video, or an unsupported codec"


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def iter_chunks(frames: Iterable[VideoFrame], size: int) -> Iterator[list[VideoFrame]]:
    """Consecutive lists of up to ``size`` frames."""
    if size < 1:
        raise VideoError(f"chunk size must be positive, got {size}")
    chunk: list[VideoFrame] = []
    for frame in frames:
        chunk.append(frame)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
