"""Training losses; every one respects frame validity and unknown labels (−1)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from au_face.evaluation.sequences import second_difference, triplet_mask


def masked_bce(
    logits: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor, pos_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean BCE over known labels of valid frames; labels ``[B,T,K]`` with −1 = unknown."""
    known = (labels >= 0) & valid[..., None]
    target = labels.clamp_min(0).to(logits.dtype)
    loss = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight, reduction="none")
    return (loss * known).sum() / known.sum().clamp_min(1)


def smoothness_loss(vertices: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean squared second difference over valid triplets."""
    mask = triplet_mask(valid)
    if vertices.shape[1] < 3 or not mask.any():
        return vertices.sum() * 0
    acc = second_difference(vertices).pow(2).sum(-1).mean(-1)
    return (acc * mask).sum() / mask.sum()


def acceleration_mse(a: torch.Tensor, b: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the second differences of two ``[B,T,V,3]`` tensors over valid triplets."""
    mask = triplet_mask(valid)
    if a.shape[1] < 3 or not mask.any():
        return a.sum() * 0
    return (second_difference(a - b).pow(2).sum(-1).mean(-1) * mask).sum() / mask.sum()


def vertex_mse(a: torch.Tensor, b: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean squared vertex distance over valid frames of ``[B,T,V,3]`` tensors."""
    err = (a - b).pow(2).sum(-1).mean(-1)
    return (err * valid).sum() / valid.sum().clamp_min(1)


def masked_mean_square(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of squares of ``[B,T,E]`` over valid frames."""
    return (x.pow(2).mean(-1) * valid).sum() / valid.sum().clamp_min(1)


@dataclass
class LossWeights:
    """Weights of :class:`AUFaceLoss`'s terms (0 leaves a term out) and the cap of the BCE's positive weights."""

    au: float = 1.0
    smooth: float = 1.0
    data: float = 0.1
    delta: float = 1e-3
    gt: float = 1.0
    expression: float = 0.0
    accel: float = 0.0
    max_pos_weight: float = 10.0


class AUFaceLoss:
    """The training objective, term by term (vertex terms in units of ``vertex_scale``).

    ``au``: BCE over known labels with per-AU positive weights; ``smooth``: second differences of the
    refined vertices; ``data``: ‖refined − coarse‖²; ``delta``: ‖Δψ‖². Where the batch has ground
    truth: ``gt``: ‖refined − ground truth‖²; ``accel``: ‖acceleration(refined) − acceleration(ground
    truth)‖²; ``expression``: ‖(refined − S̄) − (ground truth − its neutral)‖², the expression
    trajectory free of the static shape offset between reconstructor and ground truth.
    """

    def __init__(self, weights: LossWeights, vertex_scale: float) -> None:
        self.weights, self.vertex_scale = weights, vertex_scale

    def __call__(
        self, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], pos_weight: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Each term and their weighted ``total``."""
        valid = batch["valid"].bool()
        scale = self.vertex_scale
        refined, coarse = out["refined"] / scale, batch["vertices"] / scale
        losses = {
            "au": masked_bce(out["logits"], batch["labels"], valid, pos_weight),
            "smooth": smoothness_loss(refined, valid),
            "data": vertex_mse(refined, coarse, valid),
            "delta": masked_mean_square(out["delta"], valid),
        }
        if "gt_vertices" in batch:
            gt = batch["gt_vertices"] / scale
            losses["gt"] = vertex_mse(refined, gt, valid)
            losses["accel"] = acceleration_mse(refined, gt, valid)
            if "gt_reference" in batch and "reference" in batch:
                moved = refined - batch["reference"][:, None] / scale
                losses["expression"] = vertex_mse(moved, gt - batch["gt_reference"][:, None] / scale, valid)
        losses["total"] = sum(getattr(self.weights, name) * value for name, value in losses.items())
        return losses
