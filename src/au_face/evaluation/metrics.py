"""torchmetrics-based AU and mesh metrics (states are summed across devices)."""

from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.classification import MultilabelStatScores

from au_face.evaluation.sequences import acceleration, triplet_mask, vertex_distance


class AUF1(MultilabelStatScores):
    """Per-AU F1 of occurrence over known labels of valid frames.

    Counting is torchmetrics' ``MultilabelStatScores(average=None, ignore_index=-1)``; ``compute``
    returns ``[K]`` F1, NaN for an AU with no positive label and no positive prediction
    (undefined), which :func:`nan_mean` leaves out of the mean.
    """

    def __init__(self, num_aus: int, threshold: float = 0.5) -> None:
        super().__init__(num_labels=num_aus, threshold=threshold, average=None, ignore_index=-1)

    def update(self, probs: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor | None = None) -> None:
        """probs, labels ``[...,K]`` (labels −1 unknown); valid ``[...]`` (None: every frame)."""
        k = probs.shape[-1]
        labels = labels.long() if valid is None else torch.where(valid[..., None].bool(), labels.long(), -1)
        super().update(probs.reshape(-1, k), labels.reshape(-1, k))

    def compute(self) -> torch.Tensor:
        stats = super().compute().double()  # [K, (tp, fp, tn, fn, support)]
        tp, fp, fn = stats[:, 0], stats[:, 1], stats[:, 3]
        denom = 2 * tp + fp + fn
        return torch.where(denom > 0, 2 * tp / denom, torch.full_like(tp, float("nan"))).float()


class _MeanOverMask(Metric):
    """A mean of per-item values over the items a mask keeps, accumulated over batches (float64)."""

    full_state_update = False
    total: torch.Tensor
    count: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def _add(self, values: torch.Tensor, mask: torch.Tensor) -> None:
        self.total += (values * mask).sum().double()
        self.count += mask.sum().double()

    def compute(self) -> torch.Tensor:
        return (self.total / self.count).float() if self.count > 0 else torch.tensor(float("nan"))


class MeanAcceleration(_MeanOverMask):
    """Mean vertex acceleration ‖S_{t+1} − 2S_t + S_{t−1}‖ over valid triplets (model units)."""

    def update(self, vertices: torch.Tensor, valid: torch.Tensor) -> None:
        if vertices.shape[1] < 3:
            return
        self._add(acceleration(vertices).mean(-1), triplet_mask(valid.bool()))


class VertexError(_MeanOverMask):
    """Mean per-vertex Euclidean distance to ground truth over valid frames (model units)."""

    def update(self, vertices: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> None:
        self._add(vertex_distance(vertices, target).mean(-1), valid)


def nan_mean(values: torch.Tensor) -> torch.Tensor:
    """Mean over the non-NaN entries (NaN if all are NaN)."""
    finite = ~torch.isnan(values)
    return values[finite].mean() if finite.any() else torch.tensor(float("nan"))
