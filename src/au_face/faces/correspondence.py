"""Carry meshes of one face topology to another (e.g. synthetic ICT sequences to MediaPipe's 468 points).

A :class:`TopologyMap` is fitted once on the two templates:

* a similarity transform (scale, rotation, translation) on their shared iBUG-68 landmarks brings
  source coordinates into the destination frame and units;
* every destination vertex is matched to the nearest source vertex after the source template has
  been warped non-rigidly onto the destination template (:func:`register_template`).

The warp only *finds* the correspondence: it fits one identity onto another, so it is not applied
to the meshes being carried. :meth:`TopologyMap.apply` is the similarity of the matched source
vertices, which keeps the source's own shape and motion.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.interpolate import RBFInterpolator
from scipy.spatial import cKDTree

from au_face.faces.align import similarity
from au_face.faces.topology import FaceTopology, TopologyError


def landmark_points(topology: FaceTopology, ids: Sequence[int]) -> np.ndarray:
    """``[N,3]`` template positions of the iBUG-68 landmarks ``ids``."""
    vertex_ids = topology.landmarks68[list(ids)]
    if (vertex_ids < 0).any():
        missing = [i for i, v in zip(ids, vertex_ids) if v < 0]
        raise TopologyError(f"topology {topology.name!r} has no vertex for iBUG-68 landmarks {missing}")
    return topology.template[vertex_ids].astype(np.float64)


def interocular_distance(topology: FaceTopology) -> float:
    """Distance between the outer eye corners (iBUG-68 points 36 and 45) on the template."""
    left, right = landmark_points(topology, [36, 45])
    distance = float(np.linalg.norm(left - right))
    if distance <= 0.0:
        raise TopologyError(f"topology {topology.name!r}: eye-corner landmarks 36 and 45 coincide")
    return distance


def register_template(src: FaceTopology, dst: FaceTopology, smoothing: float = 1e-3) -> np.ndarray:
    """``src.template`` warped onto ``dst.template`` using their shared iBUG-68 landmarks.

    A similarity transform (Procrustes on the landmarks) followed by a thin-plate-spline warp that
    interpolates the remaining landmark residuals (in inter-ocular units, lightly regularised by
    ``smoothing``). Returns ``[Vs, 3]`` float64 in dst coordinates.
    """
    shared = np.flatnonzero((src.landmarks68 >= 0) & (dst.landmarks68 >= 0))
    if len(shared) < 10:
        raise TopologyError(f"{src.name!r} and {dst.name!r} share only {len(shared)} landmark vertices; need >= 10")
    source = src.template[src.landmarks68[shared]].astype(np.float64)
    target = dst.template[dst.landmarks68[shared]].astype(np.float64)
    scale, rotation, shift = similarity(source, target)
    aligned = scale * src.template.astype(np.float64) @ rotation.T + shift
    unit = interocular_distance(dst)
    anchors = (scale * source @ rotation.T + shift) / unit
    warp = RBFInterpolator(anchors, target / unit - anchors, kernel="thin_plate_spline", smoothing=smoothing)
    return aligned + unit * warp(aligned / unit)


@dataclass(frozen=True, eq=False)
class TopologyMap:
    """Source-topology meshes ``[..., Vs, 3]`` -> destination-topology meshes ``[..., Vd, 3]``.

    Attributes:
        source, destination: topology names.
        num_source_vertices: ``Vs``.
        scale, rotation ``[3,3]``, translation ``[3]``: ``x_dst = scale * rotation @ x_src + translation``.
        indices: ``[Vd]`` source vertex matched to each destination vertex.
        distances: ``[Vd]`` distance from each destination template vertex to its match on the warped
            source template (destination units; large values flag vertices outside the source mesh).
    """

    source: str
    destination: str
    num_source_vertices: int
    scale: float
    rotation: np.ndarray
    translation: np.ndarray
    indices: np.ndarray
    distances: np.ndarray

    @classmethod
    def between(cls, src: FaceTopology, dst: FaceTopology) -> TopologyMap:
        """Fit the map from ``src`` to ``dst`` on their templates (deterministic)."""
        warped = register_template(src, dst)  # also checks that enough landmarks are shared
        shared = np.flatnonzero((src.landmarks68 >= 0) & (dst.landmarks68 >= 0))
        scale, rotation, translation = similarity(
            src.template[src.landmarks68[shared]].astype(np.float64),
            dst.template[dst.landmarks68[shared]].astype(np.float64),
        )
        distances, indices = cKDTree(warped).query(dst.template.astype(np.float64))
        return cls(
            src.name, dst.name, src.num_vertices, scale, rotation, translation, indices.astype(np.int64), distances
        )

    @property
    def num_destination_vertices(self) -> int:
        return len(self.indices)

    def _gather(self, array: np.ndarray, what: str, leading: str = "...") -> np.ndarray:
        array = np.asarray(array)
        ndim_ok = array.ndim >= 2 if leading == "..." else array.ndim == 3
        if not ndim_ok or array.shape[-2:] != (self.num_source_vertices, 3):
            raise TopologyError(
                f"{what} must be [{leading}, {self.num_source_vertices}, 3] on topology {self.source!r}, got {array.shape}"
            )
        return array[..., self.indices, :]

    def apply(self, vertices: np.ndarray) -> np.ndarray:
        """Meshes ``[..., Vs, 3]`` in source coordinates -> ``[..., Vd, 3]`` in destination coordinates."""
        return self._transform(self._gather(vertices, "vertices"), self.translation)

    __call__ = apply

    def apply_basis(self, basis: np.ndarray) -> np.ndarray:
        """Displacement fields ``[E, Vs, 3]`` -> ``[E, Vd, 3]`` (scale and rotation only).

        For any mesh ``S`` and code ``psi``: ``apply(S + B psi) = apply(S) + apply_basis(B) psi``.
        """
        return self._transform(self._gather(basis, "basis", leading="E"), np.zeros(3))

    def _transform(self, points: np.ndarray, shift: np.ndarray) -> np.ndarray:
        """``scale * R p + shift`` in the input's float precision (float64 for integer input)."""
        dtype = points.dtype if np.issubdtype(points.dtype, np.floating) else np.float64
        return (points @ (self.scale * self.rotation).T + shift).astype(dtype)
