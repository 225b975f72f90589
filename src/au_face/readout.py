"""The analytic AU readout: the baseline the learned model has to beat.

Fit the person's identity and non-negative expression weights to each coarse frame
(:class:`~au_face.neutral.NeutralEstimator`, gaze shapes left out) and map the weights to AUs
through the ICT FACS table: an AU's activation is the least-squares scale of its shape pattern,
``a = (W·w) / (W·W)``. Nothing is learned. Probabilities are ``clip(a / (2·threshold), 0, 1)``, so an
activation at the synthetic labels' occurrence threshold reads 0.5.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from au_face.faces.ict import ict_blendshape_weights
from au_face.neutral import NeutralEstimator

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


def readout_probabilities(weights: torch.Tensor, pattern: np.ndarray, threshold: float = OCCURRENCE_THRESHOLD) -> torch.Tensor:
    """``[T,K]`` AU probabilities from expression weights ``[T,E]`` and an AU ``pattern [K,E]``."""
    w = torch.as_tensor(pattern, dtype=weights.dtype)
    activation = weights @ w.t() / (w * w).sum(dim=1).clamp_min(1e-12)
    return (activation / (2 * threshold)).clamp(0.0, 1.0)


def analytic_readout(
    estimator: NeutralEstimator, vertices: torch.Tensor, valid: torch.Tensor, aus: Sequence[int], shape_names: Sequence[str]
) -> torch.Tensor:
    """``[T,K]`` readout probabilities of one video's coarse frames (NaN where not valid)."""
    fit = estimator.fit(vertices, valid)
    weights = estimator.expression_weights(vertices, valid, fit.identity)
    probs = readout_probabilities(weights, au_pattern(aus, shape_names))
    probs[~valid.bool()] = float("nan")
    return probs


__all__ = ["OCCURRENCE_THRESHOLD", "analytic_readout", "au_pattern", "readout_probabilities"]
