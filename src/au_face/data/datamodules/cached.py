"""The shared part of the DataModules over real videos: coarse frames from the coarse cache
(``au-face preprocess``; a miss names the exact command), label alignment, the cached topology
checked against the geometry. BP4D, DISFA, Aff-Wild2, Multiface and the generic folder build on it.
Also: frame folders (BP4D, Multiface ship images) encoded as videos for the cache (``au-face frames``).
"""

from __future__ import annotations

import abc
import hashlib
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from au_face.coarse.base import read_npz_array
from au_face.coarse.registry import reconstructor_version
from au_face.data.cache import CacheMissError, CoarseCache
from au_face.data.clips import SequenceRecord
from au_face.data.datamodules.base import SequenceDataModule, count_frames
from au_face.data.labels import LabelTrack, align_labels, align_to_frames
from au_face.errors import AUFaceError
from au_face.io.sources import IMAGE_EXTENSIONS, list_videos

STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("predict",)}


class DatasetLayoutError(AUFaceError, ValueError):
    """A dataset folder, split or setting that does not fit the expected layout."""


@dataclass(frozen=True)
class VideoSequence:
    """One video of a dataset before the cache look-up.

    Attributes:
        name: unique id. subject: subject id (splits are by subject).
        video: the video file the coarse cache is keyed by.
        track: its labels (None: prediction only).
        frame_offset: source frame number of the video's first frame.
        frame_numbers: explicit source frame numbers of the video's frames (an image sequence
            turned into a video); overrides ``frame_offset``.
        gt_path: npz with ground-truth ``vertices`` in the coarse topology, if any.
    """

    name: str
    subject: str
    video: Path
    track: LabelTrack | None = None
    frame_offset: int = 0
    frame_numbers: np.ndarray | None = field(default=None, compare=False)
    gt_path: Path | None = None


def image_frame_numbers(folder: str | Path) -> np.ndarray:
    """Frame numbers of an image sequence: the integer file stems (``0001.jpg`` → 1), sorted."""
    folder = Path(folder)
    numbers = []
    for path in folder.iterdir():
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            if not path.stem.isdigit():
                raise DatasetLayoutError(f"{path}: image names must be frame numbers such as 0001.jpg")
            numbers.append(int(path.stem))
    if not numbers:
        raise DatasetLayoutError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {folder}")
    return np.array(sorted(numbers), dtype=np.int64)


def encode_image_folder(folder: str | Path, video: str | Path, fps: float) -> Path:
    """Write the frames of an image-sequence folder, in frame-number order, as an MJPG ``.avi``.

    ``au-face preprocess`` reads video files; BP4D and Multiface ship frames as images. Pair the
    video with :func:`image_frame_numbers` of the same folder to keep the source frame numbers.
    """
    folder, video = Path(folder), Path(video)
    numbers = image_frame_numbers(folder)
    by_number = {int(p.stem): p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS}
    video.parent.mkdir(parents=True, exist_ok=True)
    writer = None
    try:
        for number in numbers:
            image = cv2.imread(str(by_number[number]), cv2.IMREAD_COLOR)
            if image is None:
                raise DatasetLayoutError(f"cannot read image {by_number[number]}")
            if writer is None:
                size = (image.shape[1], image.shape[0])
                writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"MJPG"), fps, size)
                if not writer.isOpened():
                    raise DatasetLayoutError(f"cannot open {video} for writing (OpenCV MJPG)")
            writer.write(image)
    finally:
        if writer is not None:
            writer.release()
    return video


class CachedVideoDataModule(SequenceDataModule, abc.ABC):
    """Sequences whose coarse frames are read from a :class:`CoarseCache` (``au-face preprocess``).

    Args:
        cache_dir: the cache folder given to ``au-face preprocess --out``.
        reconstructor: the coarse reconstructor the cache was made with.
        cache_base: the ``--base`` folder cache keys are relative to (default: the dataset root).
        frame_stride, max_frames: ``--stride`` / ``--max-frames`` the cache was made with.
        alignment: ``mask`` (labels missing for a video frame, or for frames not in the video,
            become unknown) or ``error``.
        appearance: read a cache whose records carry appearance descriptors (``au-face preprocess
            --appearance``), for a model with an appearance head; items then hold ``appearance``.
        Other arguments: see :class:`SequenceDataModule`.
    """

    def __init__(
        self,
        cache_dir: str,
        reconstructor: str = "mediapipe",
        cache_base: str | None = None,
        frame_stride: int = 1,
        max_frames: int | None = None,
        alignment: Literal["mask", "error"] = "mask",
        appearance: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if alignment not in ("mask", "error"):
            raise DatasetLayoutError(f"alignment must be 'mask' or 'error', got {alignment!r}")
        self.cache_dir = Path(cache_dir)
        self.reconstructor = reconstructor
        self.cache_base = cache_base
        self.frame_stride = frame_stride
        self.max_frames = max_frames
        self.alignment = alignment
        self.appearance = appearance
        self._sequences: dict[str, list[VideoSequence]] = {}
        self._records: dict[str, list[SequenceRecord]] = {}

    # -- what subclasses provide ---------------------------------------------------------
    @property
    @abc.abstractmethod
    def root(self) -> Path:
        """The dataset folder (default ``--base`` of the cache)."""

    @abc.abstractmethod
    def list_sequences(self, split: str) -> list[VideoSequence]:
        """The videos of ``split`` (``train``, ``val``, ``test`` or ``predict``) with their labels."""

    # -- cache ----------------------------------------------------------------------------------
    @cached_property
    def cache(self) -> CoarseCache:
        base = self.cache_base if self.cache_base is not None else self.root
        version = reconstructor_version(self.reconstructor)
        return CoarseCache(
            self.cache_dir, self.reconstructor, version, base, self.frame_stride, self.max_frames, self.appearance
        )

    def sequences(self, split: str) -> list[VideoSequence]:
        if split not in self._sequences:
            self._sequences[split] = self.list_sequences(split)
        return self._sequences[split]

    def require_cached(self, splits: tuple[str, ...]) -> None:
        """Raise :class:`CacheMissError` naming the ``au-face preprocess`` command for every missing video."""
        videos = list(dict.fromkeys(s.video for split in splits for s in self.sequences(split)))
        message = self.cache.missing_message(videos)
        if message:
            raise CacheMissError(f"{type(self).__name__}: {message}")

    def setup(self, stage: str | None = None) -> None:
        splits = (
            STAGE_SPLITS.get(stage, ("train", "val", "test", "predict"))
            if stage
            else ("train", "val", "test", "predict")
        )
        self.require_cached(tuple(s for s in splits if s not in self.datasets))
        self.check_topology()
        super().setup(stage)

    def records(self, split: str) -> list[SequenceRecord]:
        if split not in self._records:
            self.require_cached((split,))
            self._records[split] = [self._record(s) for s in self.sequences(split)]
        return self._records[split]

    def _record(self, seq: VideoSequence) -> SequenceRecord:
        record = SequenceRecord(seq.name, seq.subject, self.cache.path(seq.video), gt_path=seq.gt_path)
        if seq.track is None:
            return record
        n = count_frames(record)
        track = seq.track.select(self.aus)
        if seq.frame_numbers is not None:
            numbers = np.asarray(seq.frame_numbers)[:: self.frame_stride][:n]
            if numbers.size != n:
                raise DatasetLayoutError(
                    f"{seq.name}: the cache has {n} frames but the frame list {numbers.size} (was the video re-encoded?)"
                )
            aligned = align_to_frames(track, numbers, self.alignment)
        else:
            aligned = align_labels(track, n, seq.frame_offset, self.alignment, self.frame_stride)
        return replace(record, labels=aligned.labels)

    # -- geometry ------------------------------------------------------------------------------
    def check_topology(self) -> None:
        """The cached meshes must be on the geometry's topology (read from the first cached video)."""
        manifest = self.cache.manifest()
        for split in ("train", "val", "test", "predict"):
            for seq in self.sequences(split):
                if self.cache.is_done(seq.video, manifest.get(self.cache.key(seq.video))):
                    cached = str(read_npz_array(self.cache.path(seq.video), "topology"))
                    if cached != self.geometry.topology.name:
                        raise DatasetLayoutError(
                            f"{type(self).__name__}: the cache {self.cache_dir} holds {cached!r} meshes, the geometry "
                            f"is for {self.geometry.topology.name!r} (set geometry.topology: {cached})"
                        )
                    return


def find_videos(folder: Path) -> dict[str, Path]:
    """Video files under ``folder`` (recursive) by path relative to it without extension (posix)."""
    videos: dict[str, Path] = {}
    for path in list_videos(folder):
        stem = path.relative_to(folder).with_suffix("").as_posix()
        if stem in videos:
            raise DatasetLayoutError(f"two videos named {stem!r}: {videos[stem]} and {path}")
        videos[stem] = path
    return videos


def split_subjects(subjects: list[str], val_fraction: float, test_fraction: float) -> dict[str, set[str]]:
    """Deterministic subject split by a hash of the subject id (stable when subjects are added)."""
    order = sorted(subjects, key=lambda s: hashlib.sha1(s.encode()).hexdigest())
    n = len(order)
    n_test = round(test_fraction * n)
    n_val = round(val_fraction * n)
    if n - n_test - n_val < 1:
        raise DatasetLayoutError(
            f"{n} subjects cannot give val {val_fraction} and test {test_fraction} and still train"
        )
    return {
        "test": set(order[:n_test]),
        "val": set(order[n_test : n_test + n_val]),
        "train": set(order[n_test + n_val :]),
    }


def encode_image_folders(images_root: str | Path, videos_root: str | Path, fps: float) -> list[Path]:
    """Encode every folder of frames under ``images_root`` to ``videos_root/<same relative path>.avi``.

    Existing videos are kept (rerunning resumes). Returns the videos in frame-folder order.
    """
    images_root, videos_root = Path(images_root), Path(videos_root)
    folders = sorted({p.parent for p in images_root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS})
    if not folders:
        raise DatasetLayoutError(f"no image folders under {images_root}")
    videos = []
    for folder in folders:
        video = (videos_root / folder.relative_to(images_root)).with_suffix(".avi")
        if not video.is_file():
            tmp = video.with_name(f".{video.name}.partial.avi")
            encode_image_folder(folder, tmp, fps)
            tmp.replace(video)
        videos.append(video)
    return videos
