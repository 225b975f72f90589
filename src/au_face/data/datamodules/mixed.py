"""Synthetic sequences mixed with expression-labelled photos in one training loader.

The synthetic data keeps its strong AU labels and mesh ground truth (the refinement's losses); the
photos add weak AU labels only. Every training batch comes from one source, so a photo batch has
no ``gt_vertices`` and :class:`~au_face.losses.AUFaceLoss` gives it no ground-truth term; with the
default model's loss weights (``smooth`` and ``data`` 0) it trains the AU heads alone (plus the tiny
``delta`` penalty on Δψ). Validation, test and prediction are the synthetic module's.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from torch.utils.data import ConcatDataset, DataLoader, Sampler

from au_face.data.datamodules.photos import ExpressionPhotoDataModule
from au_face.data.datamodules.synthetic import SyntheticDataModule


class MixedBatchSampler(Sampler[list[int]]):
    """Batches of one source each, for ``ConcatDataset([first, second])``.

    Per epoch: every item of the first source once (shuffled, in full batches), and
    ``round(ratio × first batches)`` batches of the second (at most as many as it fills), drawn
    with ``weights``, without replacement unless ``replace`` (a new draw every epoch); the batches
    interleaved at random. Without replacement, a draw of the whole second source takes every item
    once whatever the weights; with it, the weights hold at any ratio.
    """

    def __init__(
        self, first: int, weights: np.ndarray, batch_size: int, ratio: float, seed: int = 0, replace: bool = False
    ) -> None:
        self.first, self.batch_size, self.seed, self.replace = first, batch_size, seed, replace
        self.weights = np.asarray(weights, dtype=np.float64) / np.sum(weights)
        self.first_batches = max(first // batch_size, 1)
        self.second_batches = min(round(ratio * self.first_batches), len(self.weights) // batch_size)
        self.epoch = 0

    def __len__(self) -> int:
        return self.first_batches + self.second_batches

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng((self.seed, self.epoch))
        self.epoch += 1
        order = rng.permutation(self.first)
        batches = [order[i * self.batch_size : (i + 1) * self.batch_size] for i in range(self.first_batches)]
        drawn = rng.choice(
            len(self.weights), self.second_batches * self.batch_size, replace=self.replace, p=self.weights
        )
        batches += [
            self.first + drawn[i * self.batch_size : (i + 1) * self.batch_size] for i in range(self.second_batches)
        ]
        for b in rng.permutation(len(batches)):
            yield batches[b].tolist()


class SyntheticPhotoDataModule(SyntheticDataModule):
    """:class:`SyntheticDataModule` whose training loader mixes in an expression-labelled photo collection.

    Args:
        photos: arguments of :class:`ExpressionPhotoDataModule` (``root``, ``cache_dir``, ...); the
            geometry, clip length, S̄ and batch size are this module's, and so is ``mirror`` unless
            given here (the share of photos flipped, apart from the synthetic clips').
        photo_ratio: photo batches per synthetic batch in an epoch.
        photo_balance: photos are drawn with weight ``1 / count(expression) ** photo_balance``
            (0: as they come; 1: every expression equally often).
        photo_replacement: draw photos with replacement, so that :attr:`photo_balance` holds even
            when an epoch draws as many photos as there are (without: every photo once, unweighted).
        Other arguments: see :class:`SyntheticDataModule`.
    """

    def __init__(
        self,
        photos: dict,
        photo_ratio: float = 1.0,
        photo_balance: float = 0.5,
        photo_replacement: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if photo_ratio < 0 or not 0 <= photo_balance <= 1:
            raise ValueError(
                f"photo_ratio must be >= 0 and photo_balance in [0, 1], got {photo_ratio}, {photo_balance}"
            )
        self.photo_ratio, self.photo_balance, self.photo_replacement = photo_ratio, photo_balance, photo_replacement
        self.photos = ExpressionPhotoDataModule(
            geometry=self.geometry_source, clip_length=self.clip_length, reference="neutral", batch_size=self.batch_size,
            use_crops=self.use_crops, cache_size=self.cache_size, **{"mirror": self.mirror, **photos},
        )  # fmt: skip

    def prepare_data(self) -> None:
        super().prepare_data()
        self.photos.prepare_data(("train",))

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        if stage in (None, "fit") and "train" not in self.photos.datasets:
            self.photos.geometry = self.geometry  # one geometry object for both
            self.photos.check_topology()
            self.photos.datasets["train"] = self.photos.make_dataset("train")

    def photo_weights(self) -> np.ndarray:
        """Draw weight of each training photo (:attr:`photo_balance`)."""
        expressions = self.photos.expressions("train")
        names, counts = np.unique(expressions, return_counts=True)
        per = dict(zip(names, counts.astype(np.float64) ** -self.photo_balance))
        return np.array([per[e] for e in expressions])

    def label_frequencies(self) -> np.ndarray:
        """Positive rate per AU over the known labels of both sources, each source's rates weighted
        by the labelled frames an epoch shows of it (synthetic: clips × clip length; photos: one
        frame per drawn photo)."""
        synthetic = np.concatenate([r.labels for r in self.records("train") if r.labels is not None])
        photos = np.concatenate([r.labels for r in self.photos.records("train")])
        clips = len(self.datasets["train"]) if "train" in self.datasets else len(synthetic) // self.clip_length
        frames = {"synthetic": clips * self.clip_length, "photos": self.photo_ratio * clips}
        pos = frames["synthetic"] * (synthetic == 1).mean(0) + frames["photos"] * (photos == 1).mean(0)
        known = frames["synthetic"] * (synthetic >= 0).mean(0) + frames["photos"] * (photos >= 0).mean(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return pos / known

    def train_dataloader(self) -> DataLoader:
        synthetic, photos = self.datasets["train"], self.photos.datasets["train"]
        sampler = MixedBatchSampler(
            len(synthetic), self.photo_weights(), self.batch_size, self.photo_ratio, replace=self.photo_replacement
        )
        return DataLoader(
            ConcatDataset([synthetic, photos]),
            batch_sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )
