"""Temporal transformer over per-frame features, masking frames without a face."""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_encoding(length: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """``[length, dim]`` fixed sine/cosine position encoding."""
    position = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    enc = torch.zeros(length, dim, device=device)
    enc[:, 0::2] = torch.sin(position * freq)
    enc[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return enc


class TemporalTransformer(nn.Module):
    """Self-attention across time with temporal position encoding and a key-padding mask
    (``layers=0``: per-frame features only, for the ablation)."""

    def __init__(self, dim: int, layers: int = 2, heads: int = 4, dropout: float = 0.1) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False) if layers > 0 else None
        self.norm = nn.LayerNorm(dim)

    def forward(self, features: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``[B,T,D]`` features and ``[B,T]`` validity → ``[B,T,D]``.

        Invalid frames are never attended to; a sequence with no valid frame attends to
        all frames (its outputs are masked out downstream anyway).
        """
        b, t, d = features.shape
        if self.encoder is None:
            return self.norm(features)
        x = features + sinusoidal_encoding(t, d, features.device)
        padding = ~valid.bool()
        padding = padding & ~padding.all(dim=1, keepdim=True)
        return self.norm(self.encoder(x, src_key_padding_mask=padding))
