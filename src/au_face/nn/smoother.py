"""AU-aware adaptive temporal smoothing: each face region picks, per frame, how much to smooth.

A fixed Gaussian filter trades jitter against lag and shrunk peaks with one σ for the whole face
and the whole video. Here the coarse meshes are filtered at a few widths (``sigmas``, frames;
0 = untouched), and the network mixes these copies per frame and per region: one region per AU
mask plus the rest of the face. The mixing weights come from the AU states, so a region whose AU
is starting or peaking can stay sharp while a still region is smoothed hard. The mixture weights
sum to one, so a held expression is kept at its full amplitude. A region may be kept off the widest
copies (:meth:`AdaptiveSmoother.limit`): the lips' and eyelids', whose speech movements and blinks
a wide filter flattens.
"""

from __future__ import annotations

import math

import torch
from torch import nn

DEFAULT_SIGMAS = (0.0, 1.0, 2.0, 4.0)


def gaussian_kernel(sigma: float, radius: int) -> torch.Tensor:
    """``[2·radius+1]`` unnormalised Gaussian taps (a single 1 at the centre for σ = 0)."""
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    if sigma <= 0:
        return (offsets == 0).float()
    return torch.exp(-0.5 * (offsets / sigma) ** 2)


def filter_sequences(vertices: torch.Tensor, valid: torch.Tensor, sigmas: tuple[float, ...]) -> torch.Tensor:
    """``[B,T,V,3]`` meshes filtered over time at each σ → ``[B,T,S,V,3]``.

    Normalised convolution: invalid frames have no weight and the taps are renormalised at the
    clip's ends, so no frame is pulled towards zeros or padding.
    """
    b, t, v, c = vertices.shape
    radius = max(1, math.ceil(3 * max(sigmas)))
    kernels = torch.stack([gaussian_kernel(s, radius) for s in sigmas]).to(vertices)  # [S,K]
    weight = valid.to(vertices.dtype)  # [B,T]
    signal = (vertices * weight[..., None, None]).permute(0, 2, 3, 1).reshape(b * v * c, 1, t)
    taps = kernels[:, None, :]  # [S,1,K]
    num = nn.functional.conv1d(nn.functional.pad(signal, (radius, radius)), taps)  # [B·V·C,S,T]
    den = nn.functional.conv1d(nn.functional.pad(weight[:, None], (radius, radius)), taps)  # [B,S,T]
    num = num.reshape(b, v, c, len(sigmas), t).permute(0, 4, 3, 1, 2)
    den = den.permute(0, 2, 1)[..., None, None]
    return num / den.clamp_min(1e-6)


class AdaptiveSmoother(nn.Module):
    """Mixes temporally filtered copies of the coarse meshes per frame and region.

    Args:
        num_aus: K (one region per AU mask, plus one for the rest of the face).
        num_vertices: V.
        dim: size of the AU states and the frame context that choose the mix.
        sigmas: filter widths in frames (0 keeps the coarse mesh).

    Until :meth:`set_masks` is called the whole face is one region.
    """

    regions: torch.Tensor
    allowed: torch.Tensor

    def __init__(self, num_aus: int, num_vertices: int, dim: int, sigmas: tuple[float, ...] = DEFAULT_SIGMAS) -> None:
        super().__init__()
        self.sigmas = tuple(float(s) for s in sigmas)
        self.au_mix = nn.Linear(dim, len(self.sigmas))
        self.rest_mix = nn.Linear(dim, len(self.sigmas))
        regions = torch.zeros(num_aus + 1, num_vertices)
        regions[-1] = 1.0
        self.register_buffer("regions", regions)
        #: which copies each region may mix (:meth:`limit`); set from the config, so not saved
        self.register_buffer("allowed", torch.ones(num_aus + 1, len(self.sigmas), dtype=torch.bool), persistent=False)

    def set_masks(self, masks: torch.Tensor) -> None:
        """Regions from the AU masks ``[K,V]``: each AU's mask and the rest of the face, as shares
        of each vertex (columns sum to one)."""
        rest = (1 - masks.max(dim=0).values).clamp_min(0.05)
        regions = torch.cat([masks, rest[None]], dim=0)
        self.regions.copy_(regions / regions.sum(dim=0, keepdim=True))

    def limit(self, regions: list[int], max_sigma: float) -> None:
        """Keep the copies filtered wider than ``max_sigma`` out of the mix of ``regions`` (AU indices)."""
        if max_sigma < min(self.sigmas):
            raise ValueError(f"max_sigma {max_sigma} is below every σ of {self.sigmas}")
        wide = torch.tensor([s > max_sigma for s in self.sigmas], device=self.allowed.device)
        self.allowed[regions] &= ~wide

    def forward(
        self, vertices: torch.Tensor, valid: torch.Tensor, au_state: torch.Tensor, context: torch.Tensor
    ) -> torch.Tensor:
        """Smoothed meshes ``[B,T,V,3]`` from coarse ``vertices [B,T,V,3]``, ``valid [B,T]``, AU
        states ``[B,T,K,D]`` and frame context ``[B,T,D]``."""
        logits = torch.cat([self.au_mix(au_state), self.rest_mix(context)[:, :, None]], dim=2)  # [B,T,K+1,S]
        logits = logits.masked_fill(~self.allowed, float("-inf"))
        mix = torch.einsum("btrs,rv->btvs", logits.softmax(dim=-1), self.regions)  # [B,T,V,S]
        filtered = filter_sequences(vertices, valid, self.sigmas)  # [B,T,S,V,3]
        return torch.einsum("btvs,btsvc->btvc", mix, filtered)


__all__ = ["AdaptiveSmoother", "DEFAULT_SIGMAS", "filter_sequences", "gaussian_kernel"]
