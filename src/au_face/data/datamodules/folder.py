"""The generic real-video dataset: a folder of videos with one label CSV per video."""

from __future__ import annotations

import json
import re
from functools import cached_property
from pathlib import Path

from au_face.data.datamodules.cached import (
    CachedVideoDataModule,
    DatasetLayoutError,
    VideoSequence,
    find_videos,
    split_subjects,
)
from au_face.data.labels import read_folder_csv


class FolderAUDataModule(CachedVideoDataModule):
    """A folder of videos, each with a label CSV (``frame`` + ``AUxx`` columns) of the same name.

    Splits, in order of precedence: ``split_file`` (JSON ``{"train": [...], "val": [...],
    "test": [...]}`` of video names, i.e. paths relative to ``video_dir`` without extension);
    sub-folders ``train/``, ``val/``, ``test/`` of ``video_dir``; else a subject split with
    ``val_fraction``/``test_fraction``, the subject being the first group of
    ``subject_pattern`` matched on the video name (default: the part before the first ``_``).
    The predict split is the test split.

    Args:
        video_dir: the videos (searched recursively).
        label_dir: the CSVs, mirroring ``video_dir`` (default: beside the videos).
        threshold: labels are intensities; occurrence is ``value >= threshold``.
        frame_offset: the CSV ``frame`` number of the first video frame (0 for 0-based).
        Other arguments (``aus``, ``clip_length``, ``reconstructor``, ...): see :class:`CachedVideoDataModule`.
    """

    def __init__(
        self,
        video_dir: str,
        cache_dir: str,
        label_dir: str | None = None,
        split_file: str | None = None,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        subject_pattern: str = r"^([^_]+)",
        threshold: float | None = None,
        frame_offset: int = 0,
        **kwargs,
    ) -> None:
        super().__init__(cache_dir, **kwargs)
        self.video_dir = Path(video_dir)
        self.label_dir = Path(label_dir) if label_dir is not None else self.video_dir
        self.split_file = Path(split_file) if split_file is not None else None
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.subject_pattern = re.compile(subject_pattern)
        self.threshold = threshold
        self.frame_offset = frame_offset

    @property
    def root(self) -> Path:
        return self.video_dir

    def subject_of(self, name: str) -> str:
        match = self.subject_pattern.search(Path(name).name)
        if match is None:
            raise DatasetLayoutError(f"subject_pattern {self.subject_pattern.pattern!r} does not match video {name!r}")
        return match.group(1) if match.groups() else match.group(0)

    @cached_property
    def _labelled(self) -> dict[str, Path]:
        if not self.video_dir.is_dir():
            raise DatasetLayoutError(f"video folder not found: {self.video_dir}")
        videos = {
            name: path
            for name, path in find_videos(self.video_dir).items()
            if (self.label_dir / f"{name}.csv").is_file()
        }
        if not videos:
            raise DatasetLayoutError(
                f"no video in {self.video_dir} has a label CSV of the same name in {self.label_dir}"
            )
        return videos

    @cached_property
    def _split_names(self) -> dict[str, list[str]]:
        names = sorted(self._labelled)
        if self.split_file is not None:
            try:
                raw = json.loads(self.split_file.read_text())
            except (OSError, ValueError) as err:
                raise DatasetLayoutError(f"cannot read split file {self.split_file}: {err}") from err
            unknown = sorted({n for split in raw.values() for n in split} - set(names))
            if unknown:
                raise DatasetLayoutError(f"{self.split_file} names videos without a video+CSV pair: {unknown[:5]}")
            return {split: list(raw.get(split, [])) for split in ("train", "val", "test")}
        if any(n.split("/", 1)[0] in ("train", "val", "test") for n in names):
            return {split: [n for n in names if n.split("/", 1)[0] == split] for split in ("train", "val", "test")}
        groups = split_subjects(sorted({self.subject_of(n) for n in names}), self.val_fraction, self.test_fraction)
        return {split: [n for n in names if self.subject_of(n) in groups[split]] for split in ("train", "val", "test")}

    def list_sequences(self, split: str) -> list[VideoSequence]:
        names = self._split_names["test" if split == "predict" else split]
        return [
            VideoSequence(
                name,
                self.subject_of(name),
                self._labelled[name],
                read_folder_csv(self.label_dir / f"{name}.csv", self.aus, self.threshold),
                self.frame_offset,
            )
            for name in names
        ]
