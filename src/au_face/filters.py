"""Plain temporal filters of mesh sequences: the baselines a user would otherwise reach for."""

from __future__ import annotations

import math

import torch

from au_face.nn.smoother import filter_sequences


def gaussian_filter(vertices: torch.Tensor, valid: torch.Tensor, sigma: float) -> torch.Tensor:
    """``[T,V,3]`` meshes smoothed over time with a Gaussian of ``sigma`` frames (non-causal; frames
    without a face get no weight and keep their input)."""
    smoothed = filter_sequences(vertices[None].float(), valid[None].bool(), (float(sigma),))[0, :, 0]
    return torch.where(valid[:, None, None].bool(), smoothed, vertices.float())


def one_euro_filter(vertices: torch.Tensor, valid: torch.Tensor, fps: float, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0) -> torch.Tensor:
    """Causal One-Euro filter (Casiez et al., CHI 2012) per coordinate of ``[T,V,3]`` meshes.

    The cut-off frequency rises with the filtered speed: ``min_cutoff + beta·|ẋ|`` (Hz, vertex
    units per second). A frame without a face restarts the filter.
    """
    out = vertices.float().clone()
    state = speed = None
    dt = 1.0 / fps

    def alpha(cutoff: torch.Tensor | float) -> torch.Tensor | float:
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    for t in range(len(out)):
        if not bool(valid[t]):
            state = speed = None
            continue
        x = out[t]
        if state is None:
            state, speed = x, torch.zeros_like(x)
            continue
        speed = speed + alpha(d_cutoff) * ((x - state) / dt - speed)
        a = alpha(min_cutoff + beta * speed.abs())
        state = state + a * (x - state)
        out[t] = state
    return out


__all__ = ["gaussian_filter", "one_euro_filter"]
