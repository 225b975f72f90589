"""Geometry-based AU tokens: ``v_k = MLP(M_k ⊗ (S_j − S̄))`` (supplement eq. 1)."""

from __future__ import annotations

import torch
from torch import nn


def masked_time_mean(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of ``[B,T,...]`` over the valid frames of each sequence → ``[B,...]`` (S̄ for vertices)."""
    weights = valid.to(x.dtype)
    total = weights.sum(dim=1).clamp_min(1.0)
    return torch.einsum("bt,bt...->b...", weights, x) / total.view(-1, *[1] * (x.ndim - 2))


class AUTokenizer(nn.Module):
    """Turns per-frame meshes into K AU tokens with fixed vertex masks.

    The first MLP layer is shared by all AUs and acts on the masked displacement
    ``M_k ⊗ (S_j − S̄)``; it is evaluated as one matrix product with mask-weighted
    weights, which equals applying the layer to each masked mesh but never builds the
    ``[B,T,K,V,3]`` tensor.

    Args:
        num_aus: K. num_vertices: V. dim: token width. hidden: MLP hidden width.
        scale: displacement unit (model units per token unit), e.g. 1 cm for ICT.
    """

    masks: torch.Tensor

    def __init__(self, num_aus: int, num_vertices: int, dim: int, hidden: int = 128, scale: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("masks", torch.zeros(num_aus, num_vertices))
        self.scale = scale
        self.first = nn.Parameter(torch.empty(hidden, num_vertices, 3))
        self.first_bias = nn.Parameter(torch.zeros(hidden))
        self.rest = nn.Sequential(nn.GELU(), nn.Linear(hidden, dim))
        nn.init.normal_(self.first, std=0.02)

    def set_masks(self, masks: torch.Tensor) -> None:
        """Install the fixed ``[K,V]`` masks (values in [0,1])."""
        if tuple(masks.shape) != tuple(self.masks.shape):
            raise ValueError(f"masks must be {list(self.masks.shape)}, got {list(masks.shape)}")
        self.masks.copy_(masks)

    def forward(
        self, vertices: torch.Tensor, valid: torch.Tensor, reference: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Tokens ``[B,T,K,dim]`` from vertices ``[B,T,V,3]``; ``reference`` is S̄ ``[B,V,3]``."""
        if reference is None:
            reference = masked_time_mean(vertices, valid)
        displacement = (vertices - reference[:, None]) / self.scale
        displacement = displacement * valid[..., None, None].to(displacement.dtype)
        b, t, v, _ = displacement.shape
        k, h = self.masks.shape[0], self.first.shape[0]
        weight = (self.masks[:, None, :, None] * self.first[None]).reshape(k * h, v * 3)
        hidden = displacement.reshape(b * t, v * 3) @ weight.t()
        hidden = hidden.reshape(b, t, k, h) + self.first_bias
        return self.rest(hidden)
