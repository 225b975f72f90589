"""What refining a video gives: refined meshes and AU probabilities per frame."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Refinement:
    """Refined canonical vertices ``[T,V,3]`` and AU probabilities ``[T,K]`` for the AUs ``aus``."""

    vertices: torch.Tensor
    au_probs: torch.Tensor
    aus: list[int]


__all__ = ["Refinement"]
