"""The baselines a user would otherwise reach for: plain temporal filters of mesh sequences, and the
analytic AU readout that the learned model has to beat.

The readout fits the person's identity and non-negative expression weights to each coarse frame
(:class:`~au_face.geometry.neutral.NeutralEstimator`, gaze shapes left out) and maps the weights to AUs
through the ICT FACS table: an AU's activation is the least-squares scale of its shape pattern,
``a = (W·w) / (W·W)``. Nothing is learned. Probabilities are ``clip(a / (2·threshold), 0, 1)``, so an
activation at the synthetic labels' occurrence threshold reads 0.5.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from au_face.faces.ict import ict_blendshape_weights
from au_face.geometry.neutral import NeutralEstimator
from au_face.nn.smoother import filter_sequences


def gaussian_filter(vertices: torch.Tensor, valid: torch.Tensor, sigma: float) -> torch.Tensor:
    """``[T,V,3]`` meshes smoothed over time with a Gaussian of ``sigma`` frames (non-causal; frames
    without a face get no weight and keep their input)."""
    smoothed = filter_sequences(vertices[None].float(), valid[None].bool(), (float(sigma),))[0, :, 0]
    return torch.where(valid[:, None, None].bool(), smoothed, vertices.float())


def one_euro_filter(
    vertices: torch.Tensor,
    valid: torch.Tensor,
    fps: float,
    min_cutoff: float = 1.0,
    beta: float = 0.0,
    d_cutoff: float = 1.0,
) -> torch.Tensor:
    """Causal One-Euro filter (Casiez et al., CHI 2012) per coordinate of ``[T,V,3]`` meshes.

    The cut-off frequency rises with the filtered speed: ``min_cutoff + beta·|ẋ|`` (Hz, vertex
    units per second). A frame without a face restarts the filter.
    """
    out = vertices.float().clone()
    state: torch.Tensor | None = None
    speed: torch.Tensor | None = None
    dt = 1.0 / fps

    def alpha(cutoff: torch.Tensor | float) -> torch.Tensor | float:
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    for t in range(len(out)):
        if not bool(valid[t]):
            state = speed = None
            continue
        x = out[t]
        if state is None or speed is None:
            state, speed = x, torch.zeros_like(x)
            continue
        speed = speed + alpha(d_cutoff) * ((x - state) / dt - speed)
        a = alpha(min_cutoff + beta * speed.abs())
        state = state + a * (x - state)
        out[t] = state
    return out


#: Activation at which synthetic labels call an AU present (``SyntheticConfig.label_threshold``).
OCCURRENCE_THRESHOLD = 0.25


def au_pattern(aus: Sequence[int], shape_names: Sequence[str]) -> np.ndarray:
    """``[K,E]`` FACS weights of each AU over the named expression shapes (zero rows for AUs
    whose shapes are all absent)."""
    index = {name: e for e, name in enumerate(shape_names)}
    pattern = np.zeros((len(aus), len(shape_names)), dtype=np.float32)
    for k, au in enumerate(aus):
        for name, weight in ict_blendshape_weights(au).items():
            if name in index:
                pattern[k, index[name]] = weight
    return pattern


def readout_probabilities(
    weights: torch.Tensor, pattern: np.ndarray, threshold: float = OCCURRENCE_THRESHOLD
) -> torch.Tensor:
    """``[T,K]`` AU probabilities from expression weights ``[T,E]`` and an AU ``pattern [K,E]``."""
    w = torch.as_tensor(pattern, dtype=weights.dtype)
    activation = weights @ w.t() / (w * w).sum(dim=1).clamp_min(1e-12)
    return (activation / (2 * threshold)).clamp(0.0, 1.0)


def analytic_readout(
    estimator: NeutralEstimator,
    vertices: torch.Tensor,
    valid: torch.Tensor,
    aus: Sequence[int],
    shape_names: Sequence[str],
) -> torch.Tensor:
    """``[T,K]`` readout probabilities of one video's coarse frames (NaN where not valid)."""
    fit = estimator.fit(vertices, valid)
    weights = estimator.expression_weights(vertices, valid, fit.identity)
    probs = readout_probabilities(weights, au_pattern(aus, shape_names))
    probs[~valid.bool()] = float("nan")
    return probs


__all__ = [
    "OCCURRENCE_THRESHOLD",
    "analytic_readout",
    "au_pattern",
    "gaussian_filter",
    "one_euro_filter",
    "readout_probabilities",
]
