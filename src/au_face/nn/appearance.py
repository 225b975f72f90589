"""AppearanceHead: a linear read-out of each frame's appearance descriptor, added to the AU logits.

The descriptor (:mod:`au_face.faces.appearance`) is standardised with the mean and spread of the
photos the head was fitted on, then weighted per AU; AUs the head does not cover have zero
weights, and an AU's weights read one region of the face (``benchmarks/fit_appearance.py``). Frames
without a descriptor (no face, or a record made without descriptors) get no offset, and an absent
part (NaN: a patch outside the image) adds nothing, so the head never changes what the mesh network
alone gives an AU whose region it cannot see.
"""

from __future__ import annotations

import torch
from torch import nn


class AppearanceHead(nn.Module):
    """``offset[..., k] = w_k · (d − mean) / scale`` for a descriptor ``d [..., D]``, per AU ``k``.

    There is no intercept: over the photos it was fitted on the offsets average zero, so an AU's
    calibration holds for frames with and without descriptors alike.

    With ``parts``, the descriptor's parts ``[start, stop)`` (``part_bounds [P,2]``) each have a
    limit (``part_limits [P]``): a part whose standardised entries' root mean square exceeds it is
    unlike the photos the head was fitted on (a hand over the mouth, say) and counts as absent.

    Args:
        num_aus: the model's AU count. dim: descriptor length. parts: how many parts have limits.
    """

    mean: torch.Tensor
    scale: torch.Tensor
    weight: torch.Tensor
    part_bounds: torch.Tensor
    part_limits: torch.Tensor

    def __init__(self, num_aus: int, dim: int, parts: int = 0) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))
        self.register_buffer("weight", torch.zeros(num_aus, dim))
        if parts:
            self.register_buffer("part_bounds", torch.zeros(parts, 2, dtype=torch.long))
            self.register_buffer("part_limits", torch.full((parts,), float("inf")))
        self.parts = parts

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    @property
    def covered(self) -> torch.Tensor:
        """``[K]`` bool: the AUs the head reads out (a non-zero weight)."""
        return self.weight.ne(0).any(dim=1)

    def forward(self, descriptors: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Logit offsets ``[..., K]`` for descriptors ``[..., D]``; zero where ``present [...]`` is False,
        and no contribution from entries that are not finite (an absent part, or a flipped training
        item's unknown descriptor) nor from a part over its limit. A head shorter than the descriptor
        reads its first ``dim`` entries (a head fitted on the brow part alone, which comes first)."""
        if descriptors.shape[-1] < self.dim:
            raise ValueError(
                f"appearance descriptors of length {descriptors.shape[-1]}, but the head reads {self.dim}: "
                "they were made by an older au_face; compute them again (au-face preprocess --appearance)"
            )
        descriptors = descriptors[..., : self.dim].float()
        standard = torch.where(descriptors.isfinite(), (descriptors - self.mean) / self.scale, 0.0)
        if self.parts:
            standard = self._drop_unusual_parts(standard)
        offsets = standard @ self.weight.T
        return torch.where(present[..., None], offsets, torch.zeros_like(offsets))

    def _drop_unusual_parts(self, standard: torch.Tensor) -> torch.Tensor:
        """``standard`` with each part over its limit set to zero (absent)."""
        pieces, end = [], 0
        for (start, stop), limit in zip(self.part_bounds.tolist(), self.part_limits):
            part = standard[..., start:stop]
            unusual = part.square().mean(dim=-1, keepdim=True).sqrt() > limit
            pieces += [standard[..., end:start], part.masked_fill(unusual, 0.0)]
            end = stop
        return torch.cat([*pieces, standard[..., end:]], dim=-1)
