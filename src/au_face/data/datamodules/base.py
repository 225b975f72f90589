"""Shared DataModule machinery: splits of sequences → clips, S̄, label statistics, geometry."""

from __future__ import annotations

import abc
from functools import cached_property
from typing import Literal

import lightning as L
import numpy as np
from torch.utils.data import DataLoader, WeightedRandomSampler

from au_face.coarse.base import read_npz_array
from au_face.data.clips import ClipDataset, Mirror, ReferenceFn, SequenceRecord
from au_face.geometry import FaceGeometry, GeometrySpec, resolve_geometry

SPLITS = ("train", "val", "test", "predict")
#: How S̄ is taken: the person's estimated neutral shape, or the mean over the video's frames.
REFERENCES = ("neutral", "mean")


def count_frames(record: SequenceRecord) -> int:
    """Frame count of a coarse npz without loading its meshes."""
    return int(len(read_npz_array(record.coarse_path, "valid")))


class SequenceDataModule(L.LightningDataModule, abc.ABC):
    """Base of every au_face DataModule: lists sequences and builds loaders.

    Subclasses say which sequences form each split (:meth:`records`); this class cuts clips,
    batches and samples. The geometry (topology, AU list, neutral estimator) is the same artefact
    the model receives (:mod:`au_face.geometry`); it is resolved on first use, not at construction.

    Args:
        geometry: a :class:`~au_face.geometry.GeometrySpec`, a geometry ``.npz`` or checkpoint path,
            or a :class:`~au_face.geometry.FaceGeometry`; its AU list is the list of labels served.
        clip_length: frames per clip (L). train_stride: clip stride for training
            (evaluation uses non-overlapping clips so each frame counts once).
        batch_size, num_workers: DataLoader settings.
        balanced_sampling: draw training clips with weights favouring rare AUs.
        use_crops: feed aligned face crops (needed by video/both models).
        cache_size: sequences kept loaded per worker.
        reference: S̄ is the person's ``neutral`` shape (needs a geometry with a neutral
            estimator) or the ``mean`` over the video's valid frames.
        single_frames: extra training items that are one frame alone, as a share of the clips.
        mirror: share of training items flipped left/right through the topology's vertex symmetry
            (:class:`~au_face.data.clips.Mirror`; labels kept).
    """

    def __init__(
        self,
        geometry: GeometrySpec | str | FaceGeometry,
        clip_length: int = 16,
        train_stride: int = 8,
        batch_size: int = 8,
        num_workers: int = 0,
        balanced_sampling: bool = False,
        use_crops: bool = True,
        cache_size: int = 64,
        reference: Literal["neutral", "mean"] = "mean",
        single_frames: float = 0.0,
        mirror: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= mirror <= 1.0:
            raise ValueError(f"mirror is a share of training items in [0, 1], got {mirror}")
        self.mirror = mirror
        if reference not in REFERENCES:
            raise ValueError(f"reference must be one of {REFERENCES}, got {reference!r}")
        self.geometry_source = geometry
        self.reference = reference
        self.single_frames = single_frames
        self.clip_length = clip_length
        self.train_stride = train_stride
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.balanced_sampling = balanced_sampling
        self.use_crops = use_crops
        self.cache_size = cache_size
        self.datasets: dict[str, ClipDataset] = {}

    # -- what subclasses provide -------------------------------------------------
    @abc.abstractmethod
    def records(self, split: str) -> list[SequenceRecord]:
        """Sequences of ``split`` (one of :data:`SPLITS`)."""

    @cached_property
    def geometry(self) -> FaceGeometry:
        return resolve_geometry(self.geometry_source)

    @property
    def aus(self) -> list[int]:
        """The AUs whose labels are served, in the geometry's order."""
        return list(self.geometry.aus)

    # -- Lightning hooks -----------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("predict",)}
        for split in wanted.get(stage, SPLITS) if stage else SPLITS:
            if split not in self.datasets:
                self.datasets[split] = self.make_dataset(split)

    def reference_fn(self) -> ReferenceFn | None:
        """How S̄ is computed for each sequence (None: the mean over valid frames)."""
        if self.reference == "mean":
            return None
        if self.geometry.neutral is None:
            raise ValueError(
                f"{type(self).__name__}: reference='neutral' needs a geometry with a neutral estimator (the ICT model)"
            )
        return self.geometry.neutral

    def make_dataset(self, split: str) -> ClipDataset:
        records = self.records(split)
        if not records:
            raise ValueError(f"{type(self).__name__}: the {split} split has no sequences")
        stride = self.train_stride if split == "train" else self.clip_length
        return ClipDataset(
            records,
            [count_frames(r) for r in records],
            self.clip_length,
            stride,
            len(self.aus),
            self.use_crops,
            self.cache_size,
            reference_fn=self.reference_fn(),
            single_frames=self.single_frames if split == "train" else 0.0,
            mirror=Mirror.of(self.geometry.topology.template, self.mirror)
            if split == "train" and self.mirror
            else None,
        )

    def label_frequencies(self) -> np.ndarray:
        """Positive rate per AU over known training labels (``[K]``; NaN where never labelled)."""
        labels = np.concatenate([r.labels for r in self.records("train") if r.labels is not None])
        known = labels >= 0
        with np.errstate(invalid="ignore", divide="ignore"):
            return (labels == 1).sum(0) / known.sum(0)

    def train_dataloader(self) -> DataLoader:
        dataset = self.datasets["train"]
        sampler = self._balanced_sampler(dataset) if self.balanced_sampling else None
        return self._loader(dataset, shuffle=sampler is None, sampler=sampler, drop_last=len(dataset) > self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.datasets["val"])

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.datasets["test"])

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.datasets["predict"])

    def _loader(self, dataset: ClipDataset, shuffle: bool = False, sampler=None, drop_last: bool = False) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            sampler=sampler,
            drop_last=drop_last,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def _balanced_sampler(self, dataset: ClipDataset) -> WeightedRandomSampler:
        """Clip weight: the largest inverse frequency among the AUs present in the clip."""
        freq = np.nan_to_num(self.label_frequencies(), nan=1.0).clip(1e-3, 1.0)
        weights = np.ones(len(dataset))
        for i in range(len(dataset)):
            present = (dataset.clip_labels(i) == 1).any(axis=0)
            if present.any():
                weights[i] = (1.0 / freq[present]).max()
        # a list of floats: the sampler makes its own float64 tensor of it
        return WeightedRandomSampler(weights.tolist(), num_samples=len(dataset), replacement=True)
