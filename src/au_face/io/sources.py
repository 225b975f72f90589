"""What can be reconstructed: a video, one image, or a folder of videos or of image frames.

This is the one place such input is resolved. :func:`find_inputs` turns a path into the
sequences it holds; :func:`open_frames` streams one sequence's frames (a video through
:class:`~au_face.io.video.VideoReader`, images through :class:`ImageSequenceReader`, which has the
same interface).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

from au_face.io.video import DEFAULT_FPS, VideoError, VideoFrame, VideoNotFoundError, VideoReader

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


class InputNotFoundError(VideoNotFoundError):
    """The input path does not exist or is empty, or a folder holds no videos or images."""


class IgnoredImagesWarning(UserWarning):
    """A folder holds videos and images: the videos are reconstructed, the images are not."""


#: Files au_face writes that are also videos or images (``<name>_overlay.mp4``, ``<name>_aus.png``).
OUTPUT_SUFFIXES = ("_overlay.mp4", "_aus.png")


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _hidden(path: Path, folder: Path) -> bool:
    """Whether ``path`` (under ``folder``) is hidden: a dot file such as macOS's ``._clip.mp4`` and
    ``.DS_Store``, or inside a dot folder (au_face's work folders among them)."""
    return any(part.startswith(".") for part in path.relative_to(folder).parts)


def _is_output(path: Path, exclude: Path | None) -> bool:
    """Whether ``path`` lies in the output folder ``exclude``: below it, or beside the inputs as an
    au_face output file when the output folder is the input folder itself."""
    if exclude is None:
        return False
    parent, out = path.parent.resolve(), exclude.resolve()
    if parent == out:
        return path.name.endswith(OUTPUT_SUFFIXES)
    return parent.is_relative_to(out)


def sequence_name(source: str | Path) -> str:
    """The name outputs of one sequence get: a file's stem, a folder's own name (also for ``.``)."""
    path = Path(source)
    if path.is_dir():
        return path.resolve().name or "input"
    return path.stem


def _natural_key(path: Path) -> list[int | str]:
    """``frame2.png`` before ``frame10.png``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name.lower())]


def list_images(folder: Path, exclude: Path | None = None) -> list[Path]:
    """The image files directly in ``folder``, in natural name order (frame order); hidden files
    and au_face's own outputs in the output folder ``exclude`` are left out."""
    found = (p for p in _listing(folder, folder.iterdir) if p.is_file() and is_image(p) and not p.name.startswith("."))
    return sorted((p for p in found if not _is_output(p, exclude)), key=_natural_key)


def list_videos(folder: Path, exclude: Path | None = None) -> list[Path]:
    """Video files under ``folder`` (searched recursively), sorted; hidden files and folders and
    what lies in the output folder ``exclude`` are left out."""
    found = (p for p in _listing(folder, lambda: folder.rglob("*")) if p.suffix.lower() in VIDEO_EXTENSIONS)
    return sorted(p for p in found if not _hidden(p, folder) and p.is_file() and not _is_output(p, exclude))


def _listing(folder: Path, entries: Callable[[], Iterable[Path]]) -> list[Path]:
    """``entries()`` as a list; a folder that cannot be read is an :class:`InputNotFoundError`."""
    try:
        return list(entries())
    except PermissionError as err:
        raise InputNotFoundError(f"{err.filename or folder}: permission denied (cannot list the folder)") from err


def are_photos(path: str | Path) -> bool:
    """Whether ``path`` is an image, or a folder with images and no videos."""
    path = Path(path)
    if path.is_dir():
        return bool(list_images(path)) and not list_videos(path)
    return is_image(path)


def find_inputs(path: str | Path, exclude: str | Path | None = None) -> list[Path]:
    """The sequences ``path`` holds: a file is one sequence (a video or a single image); a folder
    with videos gives each video; a folder of images is one sequence of frames. Nothing in the
    output folder ``exclude`` is an input (so a rerun does not reconstruct its own overlays)."""
    if not str(path).strip():
        raise InputNotFoundError("no input: the path is empty (an unset variable?)")
    path = Path(path)
    exclude = Path(exclude) if exclude is not None else None
    if not path.exists():
        raise InputNotFoundError(f"video, image or folder not found: {path}")
    if not path.is_dir():
        return [path]
    videos = list_videos(path, exclude)
    images = list_images(path, exclude)
    if videos:
        if images:
            warnings.warn(
                f"{path} holds videos and {len(images)} images; only the videos are reconstructed "
                "(give a folder of frames as its own INPUT)",
                IgnoredImagesWarning,
                stacklevel=2,
            )
        return videos
    if images:
        return [path]
    raise InputNotFoundError(
        f"no videos ({', '.join(VIDEO_EXTENSIONS)}) or images ({', '.join(IMAGE_EXTENSIONS)}) in {path}"
    )


def jpeg_complete(data: bytes) -> bool:
    """Whether a JPEG's markers lead, through its image data, to the end-of-image marker.

    A cut file (a half-copied photo) ends inside the image data: decoders fill the rest in grey
    without an error. Bytes after the marker (a phone's trailer, a motion photo's video) are fine.
    """
    i, n = 2, len(data)  # after the start-of-image marker
    while i + 1 < n:
        if data[i] != 0xFF:
            return False
        marker = data[i + 1]
        if marker == 0xD9:
            return True
        if marker == 0xFF or 0xD0 <= marker <= 0xD7 or marker == 0x01:  # fill byte, restart, TEM: no length
            i += 1 if marker == 0xFF else 2
            continue
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
        if marker == 0xDA:  # start of scan: entropy-coded data up to the next marker that is not FF00 or a restart
            while True:
                i = data.find(b"\xff", i)
                if i < 0 or i + 1 >= n:
                    return False
                if data[i + 1] == 0xFF or data[i + 1] == 0 or 0xD0 <= data[i + 1] <= 0xD7:
                    i += 1 if data[i + 1] == 0xFF else 2
                    continue
                break
    return False


def read_image(path: Path) -> np.ndarray:
    """The BGR pixels of an image file; :class:`~au_face.io.video.VideoError` for one that cannot be
    read, is a truncated JPEG, or is not an image OpenCV decodes."""
    try:
        data = path.read_bytes()
    except PermissionError as err:
        raise VideoError(f"{path}: permission denied (the file cannot be read)") from err
    if path.suffix.lower() in (".jpg", ".jpeg") and data[:2] == b"\xff\xd8" and not jpeg_complete(data):
        raise VideoError(
            f"{path}: a truncated JPEG (the image data stops before its end marker; the picture is cut off)"
        )
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise VideoError(f"{path}: OpenCV cannot read it as an image")
    return bgr


class FrameRateAssumedWarning(UserWarning):
    """Image frames were given no frame rate: :data:`~au_face.io.video.DEFAULT_FPS` is used."""


class ImageSequenceReader:
    """Frames from image files, with the interface of :class:`~au_face.io.video.VideoReader`.

    Timestamps are ``index / fps``; every ``stride``-th image is read, at most ``max_frames``.
    All images must have the size of the first. Without ``fps``, several images are taken at
    :data:`~au_face.io.video.DEFAULT_FPS`, with a :class:`FrameRateAssumedWarning`.
    """

    def __init__(
        self, images: list[Path], fps: float | None = None, stride: int = 1, max_frames: int | None = None
    ) -> None:
        if not images:
            raise InputNotFoundError("no images to read")
        if stride < 1 or (max_frames is not None and max_frames < 1):
            raise VideoError(f"stride and max_frames must be positive, got {stride} and {max_frames}")
        if fps is not None and not fps > 0:
            raise VideoError(f"the frame rate must be positive, got {fps}")
        self.path = images[0].parent if len(images) > 1 else images[0]
        self.images = images
        if fps is None and len(images) > 1:
            warnings.warn(
                f"{self.path}: image frames carry no frame rate; assuming {DEFAULT_FPS:g} fps "
                "(give --fps, or fps= in Python; a folder of unrelated photos wants --photos)",
                FrameRateAssumedWarning,
                stacklevel=2,
            )
        self.fps = float(fps if fps is not None else DEFAULT_FPS)
        self.stride = stride
        self.max_frames = max_frames
        self.num_frames: int | None = len(images)
        self.truncated = False
        first = self._read(images[0])
        self.size = (first.shape[1], first.shape[0])

    @staticmethod
    def _read(path: Path) -> np.ndarray:
        return read_image(path)

    def __iter__(self) -> Iterator[VideoFrame]:
        chosen = list(enumerate(self.images))[:: self.stride][: self.max_frames]
        for index, path in chosen:
            bgr = self._read(path)
            if (bgr.shape[1], bgr.shape[0]) != self.size:
                raise VideoError(
                    f"{path} is {bgr.shape[1]}x{bgr.shape[0]}, the first image {self.size[0]}x{self.size[1]}"
                )
            yield VideoFrame(index, index / self.fps, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))

    def close(self) -> None:
        """Nothing to release (images are read one at a time)."""

    def __enter__(self) -> ImageSequenceReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


#: What :func:`open_frames` returns.
FrameReader = VideoReader | ImageSequenceReader


def open_frames(
    path: str | Path, stride: int = 1, max_frames: int | None = None, fps: float | None = None
) -> FrameReader:
    """A frame reader for one sequence of :func:`find_inputs`: a folder of images, one image, or a
    video. ``fps`` is the frame rate of image frames (see :class:`ImageSequenceReader`); a video
    has its own."""
    path = Path(path)
    if path.is_dir():
        return ImageSequenceReader(list_images(path), fps=fps, stride=stride, max_frames=max_frames)
    if is_image(path) and path.is_file():
        return ImageSequenceReader([path], fps=fps, stride=stride, max_frames=max_frames)
    if fps is not None:
        raise VideoError(f"{path}: a frame rate is given for image frames; a video has its own")
    return VideoReader(path, stride=stride, max_frames=max_frames)


__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "FrameRateAssumedWarning",
    "FrameReader",
    "IgnoredImagesWarning",
    "ImageSequenceReader",
    "InputNotFoundError",
    "find_inputs",
    "jpeg_complete",
    "list_images",
    "list_videos",
    "open_frames",
    "sequence_name",
]
