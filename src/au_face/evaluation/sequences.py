"""Sequence metrics: the one home of the second difference (acceleration) and the vertex distance,
used by the training losses, the torchmetrics and the benchmarks; and the refinement metrics on
whole sequences with ground truth that separate real smoothing from damage.

The primitives take meshes ``[..., T, V, 3]`` and validity ``[..., T]`` (one sequence or a batch).
The whole-sequence metrics take one sequence: meshes ``[T,V,3]`` (the method's output), ground truth
``[T,V,3]``, ``valid [T]``, and where it matters the method's S̄ and ground truth's neutral
``[V,3]``. Errors are mean per-vertex distances in the meshes' units.
"""

from __future__ import annotations

import numpy as np
import torch

from au_face.faces.align import similarity_fit


def second_difference(x: torch.Tensor) -> torch.Tensor:
    """``[..., T-2, V, 3]``: S_{t+1} − 2 S_t + S_{t−1} of meshes ``[..., T, V, 3]``."""
    return x[..., 2:, :, :] - 2 * x[..., 1:-1, :, :] + x[..., :-2, :, :]


def acceleration(x: torch.Tensor) -> torch.Tensor:
    """Per-vertex acceleration norms ``[..., T-2, V]``: ‖S_{t+1} − 2 S_t + S_{t−1}‖."""
    return second_difference(x).norm(dim=-1)


def triplet_mask(valid: torch.Tensor) -> torch.Tensor:
    """``[..., T-2]``: True where frames t−1, t, t+1 are all valid."""
    return valid[..., :-2] & valid[..., 1:-1] & valid[..., 2:]


def vertex_distance(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-vertex Euclidean distances ``[..., V]`` between meshes ``[..., V, 3]``."""
    return (x - target).norm(dim=-1)


def raw_error(x: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> float:
    """Vertex error as it stands."""
    return float(vertex_distance(x, gt).mean(-1)[valid].mean())


def aligned_error(x: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> float:
    """Vertex error after a per-frame similarity fit of ``x`` onto ``gt`` (pose and size removed)."""
    xs, gs = x[valid].double().numpy(), gt[valid].double().numpy()
    errors = []
    for a, b in zip(xs, gs):
        s, r, t = similarity_fit(a, b[None])
        errors.append(np.linalg.norm(s[0] * a @ r[0].T + t[0] - b, axis=-1).mean())
    return float(np.mean(errors))


def expression_error(
    x: torch.Tensor, reference: torch.Tensor, gt: torch.Tensor, gt_neutral: torch.Tensor, valid: torch.Tensor
) -> float:
    """Error of the expression part: ``x − S̄`` against ``gt − gt_neutral`` (a static shape offset
    between reconstructor and ground truth does not count)."""
    return float(vertex_distance(x - reference, gt - gt_neutral).mean(-1)[valid].mean())


def mean_acceleration(x: torch.Tensor, valid: torch.Tensor) -> float:
    """Mean vertex acceleration ``|x_{t+1} − 2x_t + x_{t−1}|`` over valid triplets."""
    triplets = triplet_mask(valid)
    acc = acceleration(x).mean(-1)
    return float(acc[triplets].mean()) if triplets.any() else float("nan")


def fastest_frames(gt: torch.Tensor, valid: torch.Tensor, share: float = 0.1) -> torch.Tensor:
    """``[T]`` mask of the ``share`` of valid frames where the ground truth moves fastest."""
    speed = torch.zeros(len(gt))
    speed[1:] = (gt[1:] - gt[:-1]).norm(dim=-1).mean(-1)
    speed[~valid] = -1
    count = max(1, int(round(share * int(valid.sum()))))
    mask = torch.zeros(len(gt), dtype=torch.bool)
    mask[speed.argsort(descending=True)[:count]] = True
    return mask & valid


def peak_amplitudes(x: torch.Tensor, reference: torch.Tensor, masks: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``[K]`` peak over valid frames of each AU region's mean displacement ``|x − S̄|`` (mask-weighted)."""
    moved = (x - reference).norm(dim=-1)[valid]  # [T,V]
    regional = moved @ masks.t() / masks.sum(dim=1).clamp_min(1e-6)  # [T,K]
    return regional.max(dim=0).values if len(regional) else torch.zeros(len(masks))


__all__ = [
    "acceleration",
    "aligned_error",
    "expression_error",
    "fastest_frames",
    "mean_acceleration",
    "peak_amplitudes",
    "raw_error",
    "second_difference",
    "triplet_mask",
    "vertex_distance",
]
