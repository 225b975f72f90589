"""Aff-Wild2 (ABAW AU Detection Challenge): official Train_Set / Validation_Set partitions.

Layout (label facts: :func:`au_face.data.labels.read_affwild2`)::

    <annotations_dir>/Train_Set/<video>.txt        AU1,AU2,... header, one line per frame (-1: unannotated)
    <annotations_dir>/Validation_Set/<video>.txt
    <root>/videos/**/<video>.mp4|.avi              the raw videos (any sub-folders, e.g. batch1/)

Line ``i`` of an annotation (after the header) is video frame ``i - 1``. The paper reports the
official validation set (test split here, also used for validation) and trains on part of the
training set (``train_fraction``, 0.6 in the paper).
"""

from __future__ import annotations

import hashlib
from functools import cached_property
from pathlib import Path

from au_face.data.datamodules.cached import CachedVideoDataModule, DatasetLayoutError, VideoSequence, find_videos
from au_face.data.labels import affwild2_annotation_files, affwild2_video_name, read_affwild2


class AffWild2DataModule(CachedVideoDataModule):
    """Aff-Wild2 AU detection with the official split (validation set = val and test splits).

    Args:
        root: the Aff-Wild2 folder; also the default cache ``--base``.
        cache_dir: the coarse cache of the videos.
        annotations_dir: the ``AU_Detection_Challenge`` folder (default: found under ``root``).
        video_dir: the raw videos, searched recursively (default ``<root>/videos``).
        train_fraction: fraction of training videos used (a fixed subset chosen by name hash).
        two_person_videos: videos with two annotated people (``<video>_left.txt``/``_right.txt``)
            share one video whose coarse cache follows one face; they are skipped unless True.
        Other arguments: see :class:`CachedVideoDataModule`.
    """

    def __init__(
        self,
        root: str,
        cache_dir: str,
        annotations_dir: str | None = None,
        video_dir: str | None = None,
        train_fraction: float = 1.0,
        two_person_videos: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(cache_dir, **kwargs)
        if not 0.0 < train_fraction <= 1.0:
            raise DatasetLayoutError(f"train_fraction must be in (0, 1], got {train_fraction}")
        self.dataset_root = Path(root)
        self.annotations_dir = Path(annotations_dir) if annotations_dir is not None else self._find_annotations()
        self.video_dir = Path(video_dir) if video_dir is not None else self.dataset_root / "videos"
        self.train_fraction = train_fraction
        self.two_person_videos = two_person_videos

    @property
    def root(self) -> Path:
        return self.dataset_root

    def _find_annotations(self) -> Path:
        """``AU_Detection_Challenge`` at ``root`` or one folder below it (e.g. ``6th ABAW Annotations/``)."""
        candidates = [self.dataset_root, self.dataset_root / "AU_Detection_Challenge"]
        if self.dataset_root.is_dir():
            candidates += sorted(p / "AU_Detection_Challenge" for p in self.dataset_root.iterdir() if p.is_dir())
        for candidate in candidates:
            if candidate.name == "AU_Detection_Challenge" and candidate.is_dir():
                return candidate
        raise DatasetLayoutError(
            f"no AU_Detection_Challenge folder in or under {self.dataset_root}; set annotations_dir"
        )

    @cached_property
    def _videos(self) -> dict[str, Path]:
        by_name: dict[str, Path] = {}
        for stem, path in find_videos(self.video_dir).items():
            name = Path(stem).name
            if name in by_name:
                raise DatasetLayoutError(f"two videos named {name!r}: {by_name[name]} and {path}")
            by_name[name] = path
        return by_name

    def _annotations(self, split: str) -> list[Path]:
        files = affwild2_annotation_files(self.annotations_dir, "train" if split == "train" else "val")
        if not self.two_person_videos:
            files = [f for f in files if affwild2_video_name(f) == f.stem]
        if split == "train" and self.train_fraction < 1.0:
            ranked = sorted(files, key=lambda f: hashlib.sha1(f.stem.encode()).hexdigest())
            files = sorted(ranked[: max(1, round(self.train_fraction * len(ranked)))])
        return files

    def list_sequences(self, split: str) -> list[VideoSequence]:
        files = self._annotations(split)
        missing = sorted({affwild2_video_name(f) for f in files} - set(self._videos))
        if missing:
            raise DatasetLayoutError(
                f"{len(missing)} Aff-Wild2 videos of the {split} split are not under {self.video_dir}: {', '.join(missing[:5])}"
            )
        return [
            VideoSequence(
                f.stem, f.stem, self._videos[affwild2_video_name(f)], read_affwild2(f, self.aus), frame_offset=1
            )
            for f in files
        ]
