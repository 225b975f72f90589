"""What can be reconstructed: a video, one image, or a folder of videos or of image frames.

This is the one place such input is resolved. :func:`find_inputs` turns a path into the
sequences it holds; :func:`open_frames` streams one sequence's frames (a video through
:class:`~au_face.io.video.VideoReader`, images through :class:`ImageSequenceReader`, which has the
same interface).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

from au_face.io.video import DEFAULT_FPS, VideoError, VideoFrame, VideoNotFoundError, VideoReader

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


class InputNotFoundError(VideoNotFoundError):
    """The input path does not exist, or a folder holds no videos or images."""


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _natural_key(path: Path) -> list[int | str]:
    """``frame2.png`` before ``frame10.png``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name.lower())]


def list_images(folder: Path) -> list[Path]:
    """The image files directly in ``folder``, in natural name order (frame order)."""
    return sorted((p for p in folder.iterdir() if p.is_file() and is_image(p)), key=_natural_key)


def list_videos(folder: Path) -> list[Path]:
    """Video files under ``folder`` (searched recursively), sorted."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)


def find_inputs(path: str | Path) -> list[Path]:
    """The sequences ``path`` holds: a file is one sequence (a video or a single image); a folder
    with videos gives each video; a folder of images is one sequence of frames."""
    path = Path(path)
    if not path.exists():
        raise InputNotFoundError(f"video, image or folder not found: {path}")
    if not path.is_dir():
        return [path]
    videos = list_videos(path)
    if videos:
        return videos
    if list_images(path):
        return [path]
    raise InputNotFoundError(
        f"no videos ({', '.join(VIDEO_EXTENSIONS)}) or images ({', '.join(IMAGE_EXTENSIONS)}) in {path}"
    )


class ImageSequenceReader:
    """Frames from image files, with the interface of :class:`~au_face.io.video.VideoReader`.

    Timestamps are ``index / fps``; every ``stride``-th image is read, at most ``max_frames``.
    All images must have the size of the first.
    """

    def __init__(self, images: list[Path], fps: float = DEFAULT_FPS, stride: int = 1, max_frames: int | None = None) -> None:
        if not images:
            raise InputNotFoundError("no images to read")
        if stride < 1 or (max_frames is not None and max_frames < 1):
            raise VideoError(f"stride and max_frames must be positive, got {stride} and {max_frames}")
        self.path = images[0].parent if len(images) > 1 else images[0]
        self.images = images
        self.fps = float(fps)
        self.stride = stride
        self.max_frames = max_frames
        self.num_frames: int | None = len(images)
        self.truncated = False
        first = self._read(images[0])
        self.size = (first.shape[1], first.shape[0])

    @staticmethod
    def _read(path: Path) -> np.ndarray:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise VideoError(f"{path}: OpenCV cannot read it as an image")
        return bgr

    def __iter__(self) -> Iterator[VideoFrame]:
        chosen = list(enumerate(self.images))[:: self.stride][: self.max_frames]
        for index, path in chosen:
            bgr = self._read(path)
            if (bgr.shape[1], bgr.shape[0]) != self.size:
                raise VideoError(f"{path} is {bgr.shape[1]}x{bgr.shape[0]}, the first image {self.size[0]}x{self.size[1]}")
            yield VideoFrame(index, index / self.fps, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))

    def close(self) -> None:
        """Nothing to release (images are read one at a time)."""

    def __enter__(self) -> ImageSequenceReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


#: What :func:`open_frames` returns.
FrameReader = VideoReader | ImageSequenceReader


def open_frames(path: str | Path, stride: int = 1, max_frames: int | None = None) -> FrameReader:
    """A frame reader for one sequence of :func:`find_inputs`: a folder of images, one image, or a video."""
    path = Path(path)
    if path.is_dir():
        return ImageSequenceReader(list_images(path), stride=stride, max_frames=max_frames)
    if is_image(path) and path.is_file():
        return ImageSequenceReader([path], stride=stride, max_frames=max_frames)
    return VideoReader(path, stride=stride, max_frames=max_frames)


__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "FrameReader",
    "ImageSequenceReader",
    "InputNotFoundError",
    "find_inputs",
    "list_images",
    "list_videos",
    "open_frames",
]
