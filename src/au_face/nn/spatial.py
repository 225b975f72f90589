"""Spatial transformer over the K AU tokens of each frame (AU correlations)."""

from __future__ import annotations

import torch
from torch import nn


class SpatialTransformer(nn.Module):
    """Self-attention across AU tokens, with a learned embedding per AU (``layers=0``: none, for the ablation)."""

    def __init__(self, num_aus: int, dim: int, layers: int = 2, heads: int = 4, dropout: float = 0.1) -> None:
        super().__init__()
        self.au_embedding = nn.Parameter(torch.zeros(num_aus, dim))
        nn.init.normal_(self.au_embedding, std=0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False) if layers > 0 else None

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[B,T,K,D]`` tokens → ``[B,T,K,D]`` contextualised tokens."""
        b, t, k, d = tokens.shape
        x = (tokens + self.au_embedding).reshape(b * t, k, d)
        return (x if self.encoder is None else self.encoder(x)).reshape(b, t, k, d)
