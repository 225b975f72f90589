"""The ``embree`` backend: one ray per pixel centre along +z, trimesh's first hit (Embree when installed)."""

from __future__ import annotations

import numpy as np
import trimesh


class RayCastRasterizer:
    """First triangle hit at each pixel centre, by trimesh ray casting."""

    def __init__(self, triangles: np.ndarray, image_size: int) -> None:
        self.triangles = np.asarray(triangles, dtype=np.int64)
        self.image_size = int(image_size)

    def first_hits(self, vertices: np.ndarray) -> np.ndarray:
        """``[H,W]`` triangle index first hit at each pixel centre, -1 where none.

        Rays start in front of the mesh and are cast only for pixels inside its bounding box.
        """
        size = self.image_size
        vertices = np.asarray(vertices, dtype=np.float64)
        hits = np.full((size, size), -1, dtype=np.int64)
        lo = np.clip(np.floor(vertices[:, :2].min(axis=0)).astype(int), 0, size)
        hi = np.clip(np.ceil(vertices[:, :2].max(axis=0)).astype(int) + 1, 0, size)
        rows, cols = np.mgrid[lo[1] : hi[1], lo[0] : hi[0]]
        rows, cols = rows.ravel(), cols.ravel()
        if len(rows):
            z0 = vertices[:, 2].min() - 1.0
            origins = np.stack([cols + 0.5, rows + 0.5, np.full(len(rows), z0)], axis=1)
            directions = np.broadcast_to(np.array([0.0, 0.0, 1.0]), origins.shape)
            mesh = trimesh.Trimesh(vertices=vertices, faces=self.triangles, process=False)
            hits[rows, cols] = mesh.ray.intersects_first(origins, directions)
        return hits
