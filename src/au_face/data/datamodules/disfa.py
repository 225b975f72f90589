"""DISFA: 27 subjects, one video each, AU intensities 0-5 → occurrence, subject-independent 3 folds.

Layout (label facts: :func:`au_face.data.labels.read_disfa`)::

    <root>/ActionUnit_Labels/SN001/SN001_au1.txt ...   frame,intensity (frames from 1)
    <root>/Videos_LeftCamera/LeftVideoSN001_comp.avi   the left-camera video (OpenFace's DISFA scripts)

Label frame ``f`` is video frame ``f - 1``. The videos and label files differ by a few frames
for some subjects; those frames are unknown (-1) under the default ``alignment="mask"``.
"""

from __future__ import annotations

from pathlib import Path

from au_face.data.datamodules.cached import CachedVideoDataModule, VideoSequence
from au_face.data.folds import fold_splits
from au_face.data.labels import DISFA_THRESHOLD, MissingLabelsError, read_disfa


class DISFADataModule(CachedVideoDataModule):
    """DISFA fold ``fold`` (1-3) of the JAA-Net/ME-GraphAU protocol; occurrence = intensity ≥ ``threshold``.

    Args:
        root: the DISFA folder; also the default cache ``--base``.
        cache_dir: the coarse cache of the videos.
        fold: 1, 2 or 3 (see ``au_face/resources/folds/disfa.json``).
        video_dir: default ``<root>/Videos_LeftCamera``. video_template: file name from ``{subject}``.
        label_dir: default ``<root>/ActionUnit_Labels``.
        threshold: occurrence threshold on the 0-5 intensity (2 in JAA-Net and ME-GraphAU).
        val_subjects: training subjects held out for validation (default: validate on the test fold).
        Other arguments: see :class:`CachedVideoDataModule`.
    """

    def __init__(
        self,
        root: str,
        cache_dir: str,
        fold: int = 1,
        video_dir: str | None = None,
        video_template: str = "LeftVideo{subject}_comp.avi",
        label_dir: str | None = None,
        threshold: float = DISFA_THRESHOLD,
        val_subjects: list[str] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(cache_dir, **kwargs)
        self.dataset_root = Path(root)
        self.fold = fold
        self.splits = fold_splits("disfa", fold, val_subjects)
        self.video_dir = Path(video_dir) if video_dir is not None else self.dataset_root / "Videos_LeftCamera"
        self.video_template = video_template
        self.label_dir = Path(label_dir) if label_dir is not None else self.dataset_root / "ActionUnit_Labels"
        self.threshold = threshold

    @property
    def root(self) -> Path:
        return self.dataset_root

    def list_sequences(self, split: str) -> list[VideoSequence]:
        if not self.label_dir.is_dir():
            raise MissingLabelsError(
                f"DISFA AU labels not found: expected the ActionUnit_Labels folder at {self.label_dir}"
            )
        return [
            VideoSequence(
                subject,
                subject,
                self.video_dir / self.video_template.format(subject=subject),
                read_disfa(self.label_dir / subject, self.aus, self.threshold),
                frame_offset=1,
            )
            for subject in self.splits[split]
        ]
