"""What the model needs to know about a face topology: masks, expression basis, units."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from au_face.faces.topology import FaceTopology
from au_face.neutral import NeutralEstimator


@dataclass(frozen=True)
class FaceGeometry:
    """Fixed geometry for one topology and AU list.

    Attributes:
        topology: the mesh. aus: FACS numbers, K of them.
        masks: ``[K,V]`` AU vertex masks in [0,1].
        basis: ``[E,V,3]`` linear expression basis for the refinement.
        neutral: the estimator of the person's neutral shape S̄ (None: S̄ is the clip mean only).
    """

    topology: FaceTopology
    aus: tuple[int, ...]
    masks: np.ndarray
    basis: np.ndarray
    neutral: NeutralEstimator | None = None

    def __post_init__(self) -> None:
        v = self.topology.num_vertices
        if self.masks.shape != (len(self.aus), v):
            raise ValueError(f"masks are {self.masks.shape}, expected ({len(self.aus)}, {v}) for {self.topology.name}")
        if self.basis.ndim != 3 or self.basis.shape[1:] != (v, 3):
            raise ValueError(f"expression basis is {self.basis.shape}, expected (E, {v}, 3)")
        if self.neutral is not None and self.neutral.num_vertices != v:
            raise ValueError(f"neutral estimator is for {self.neutral.num_vertices} vertices, expected {v}")

    @property
    def expression_dim(self) -> int:
        return int(self.basis.shape[0])

    @property
    def vertex_scale(self) -> float:
        """A tenth of the inter-ocular distance (outer eye corners): displacements in these units are O(1)."""
        lm = self.topology.template[self.topology.landmarks68]
        return float(np.linalg.norm(lm[36] - lm[45]) / 10.0)
