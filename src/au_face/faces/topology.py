"""Mesh topology shared by every face model: template, triangles, landmark vertices."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from au_face.errors import AUFaceError
from au_face.utils.files import atomic_save_npz

if TYPE_CHECKING:
    import scipy.sparse as sp


class TopologyError(AUFaceError, ValueError):
    """Raised for an inconsistent topology or one that does not match some data."""


@dataclass(frozen=True)
class FaceTopology:
    """A named face mesh topology.

    Attributes:
        name: identifier, e.g. ``"ict"``, ``"mediapipe"``, ``"flame"``.
        template: ``[V, 3]`` float32 neutral vertices (model units).
        triangles: ``[F, 3]`` int64 vertex ids.
        landmarks68: ``[68]`` int64 vertex ids of the iBUG-68 landmarks (-1 where a point has no vertex).
    """

    name: str
    template: np.ndarray
    triangles: np.ndarray
    landmarks68: np.ndarray

    def __post_init__(self) -> None:
        template = np.asarray(self.template, dtype=np.float32)
        triangles = np.asarray(self.triangles, dtype=np.int64)
        landmarks = np.asarray(self.landmarks68, dtype=np.int64)
        if template.ndim != 2 or template.shape[1] != 3:
            raise TopologyError(f"{self.name}: template must be [V,3], got {template.shape}")
        if triangles.ndim != 2 or triangles.shape[1] != 3:
            raise TopologyError(f"{self.name}: triangles must be [F,3], got {triangles.shape}")
        if triangles.size and (triangles.min() < 0 or triangles.max() >= len(template)):
            raise TopologyError(f"{self.name}: triangle ids outside [0, {len(template)})")
        if landmarks.shape != (68,):
            raise TopologyError(f"{self.name}: landmarks68 must be [68], got {landmarks.shape}")
        if landmarks.max() >= len(template):
            raise TopologyError(f"{self.name}: landmark ids outside [0, {len(template)})")
        object.__setattr__(self, "template", template)
        object.__setattr__(self, "triangles", triangles)
        object.__setattr__(self, "landmarks68", landmarks)

    @property
    def num_vertices(self) -> int:
        return int(self.template.shape[0])

    def edges(self) -> np.ndarray:
        """Unique undirected edges ``[E, 2]`` (i < j) of the triangle mesh."""
        t = self.triangles
        pairs = np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]])
        pairs = np.sort(pairs, axis=1)
        return np.unique(pairs, axis=0)

    def adjacency(self) -> sp.csr_matrix:
        """Symmetric ``[V, V]`` 0/1 vertex adjacency matrix."""
        import scipy.sparse as sp  # not at import: the tracking process never needs it (0.13 s)

        e = self.edges()
        n = self.num_vertices
        data = np.ones(2 * len(e), dtype=np.float32)
        rows = np.concatenate([e[:, 0], e[:, 1]])
        cols = np.concatenate([e[:, 1], e[:, 0]])
        return sp.csr_matrix((data, (rows, cols)), shape=(n, n))

    def check_vertices(self, vertices: np.ndarray, what: str = "vertices") -> None:
        """Raise :class:`TopologyError` unless ``vertices`` is ``[..., V, 3]`` for this topology."""
        shape = tuple(np.shape(vertices))
        if len(shape) < 2 or shape[-2:] != (self.num_vertices, 3):
            raise TopologyError(
                f"{what} has shape {shape}, but topology {self.name!r} needs [..., {self.num_vertices}, 3]"
            )

    def submesh(self, vertex_ids: np.ndarray, name: str | None = None) -> FaceTopology:
        """Restrict to ``vertex_ids`` (kept in order); triangles with a dropped vertex are removed."""
        vertex_ids = np.asarray(vertex_ids, dtype=np.int64)
        remap = np.full(self.num_vertices, -1, dtype=np.int64)
        remap[vertex_ids] = np.arange(len(vertex_ids))
        tris = remap[self.triangles]
        tris = tris[(tris >= 0).all(axis=1)]
        landmarks = remap[self.landmarks68]
        if (landmarks < 0).any():
            raise TopologyError(f"{self.name}: the submesh drops landmark vertices")
        return FaceTopology(name or self.name, self.template[vertex_ids], tris, landmarks)

    def save(self, path: str | Path) -> None:
        """Write the topology as an npz file (atomically)."""
        atomic_save_npz(
            path,
            name=np.array(self.name),
            template=self.template,
            triangles=self.triangles,
            landmarks68=self.landmarks68,
        )

    @classmethod
    def load(cls, path: str | Path) -> FaceTopology:
        """Read a topology written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"topology file not found: {path}")
        with np.load(path) as z:
            missing = {"name", "template", "triangles", "landmarks68"} - set(z.files)
            if missing:
                raise TopologyError(f"{path} is not a topology file (missing {sorted(missing)})")
            return cls(str(z["name"]), z["template"], z["triangles"], z["landmarks68"])
