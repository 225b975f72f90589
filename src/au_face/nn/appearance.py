"""AppearanceHead: a linear read-out of each frame's brow descriptor, added to the AU logits.

The descriptor (:mod:`au_face.faces.appearance`) is standardised with the mean and spread of the
photos the head was fitted on, then weighted per AU; AUs the head does not cover have zero
weights. Frames without a descriptor (no face, or a record made without descriptors) get no
offset, so the head never changes what the mesh network alone gives them.
"""

from __future__ import annotations

import torch
from torch import nn


class AppearanceHead(nn.Module):
    """``offset[..., k] = w_k · (d − mean) / scale`` for a descriptor ``d [..., D]``, per AU ``k``.

    There is no intercept: over the photos it was fitted on the offsets average zero, so an AU's
    calibration holds for frames with and without descriptors alike.

    Args:
        num_aus: the model's AU count. dim: descriptor length.
    """

    mean: torch.Tensor
    scale: torch.Tensor
    weight: torch.Tensor

    def __init__(self, num_aus: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))
        self.register_buffer("weight", torch.zeros(num_aus, dim))

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    @property
    def covered(self) -> torch.Tensor:
        """``[K]`` bool: the AUs the head reads out (a non-zero weight)."""
        return self.weight.ne(0).any(dim=1)

    def forward(self, descriptors: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Logit offsets ``[..., K]`` for descriptors ``[..., D]``; zero where ``present [...]`` is False
        or the descriptor is not finite (unknown, e.g. for a flipped training item)."""
        descriptors = descriptors.float()
        present = present & descriptors.isfinite().all(dim=-1)
        standard = (descriptors.nan_to_num(0.0, 0.0, 0.0) - self.mean) / self.scale
        offsets = standard @ self.weight.T
        return torch.where(present[..., None], offsets, torch.zeros_like(offsets))
