"""The ``pytorch3d`` backend: PyTorch3D's compiled mesh rasteriser (hard, one face per pixel, on the CPU).

Import it only after :func:`au_face.data.synthetic.rasterizers.require_backend` said ``pytorch3d`` loads.
"""

from __future__ import annotations

import numpy as np
import torch
from pytorch3d.renderer.mesh.rasterize_meshes import rasterize_meshes
from pytorch3d.structures import Meshes

#: Side of the square tiles rasterised as separate images (PyTorch3D has no binned CPU rasteriser:
#: it tests every face at every pixel, so each tile gets only the faces that can reach it).
TILE = 16


class PyTorch3DRasterizer:
    """First triangle hit at each pixel centre, by ``pytorch3d.renderer.mesh.rasterize_meshes``."""

    def __init__(self, triangles: np.ndarray, image_size: int) -> None:
        self.triangles = np.asarray(triangles, dtype=np.int64)
        self.image_size = int(image_size)
        self._side = -(-self.image_size // TILE)  # tiles per row and column

    def first_hits(self, vertices: np.ndarray) -> np.ndarray:
        """``[H,W]`` triangle index nearest the viewer at each pixel centre, -1 where none.

        Each tile is its own image in PyTorch3D's NDC (``+x`` left, ``+y`` up, pixel ``i``'s centre
        at ``1 - (2i + 1) / TILE``) holding copies of the faces whose bounding box reaches one of
        its pixel centres. Depth is shifted to start at 1 because faces behind the camera
        (``z < 0``) are dropped. Back faces are kept, as the ray caster hits them too.
        """
        v = np.asarray(vertices, dtype=np.float64)
        corners = v[self.triangles]  # [F,3,3]
        tile_of, face_of = self._tile_face_pairs(corners[:, :, :2].min(axis=1), corners[:, :, :2].max(axis=1))
        hits = np.full((self._side**2, TILE, TILE), -1, dtype=np.int64)
        if len(face_of):
            tiles, counts = np.unique(tile_of, return_counts=True)
            origins = np.stack([tile_of % self._side, tile_of // self._side], axis=1) * TILE
            ndc = corners[face_of] * [-2 / TILE, -2 / TILE, 1]
            ndc[:, :, :2] += (1 + 2 * origins / TILE)[:, None]
            ndc[:, :, 2] += 1 - v[:, 2].min()
            verts = torch.split(torch.as_tensor(ndc.reshape(-1, 3), dtype=torch.float32), (3 * counts).tolist())
            faces = [torch.arange(3 * n).reshape(n, 3) for n in counts.tolist()]
            pix_to_face, _, _, _ = rasterize_meshes(
                Meshes(verts=list(verts), faces=faces),
                image_size=TILE,
                blur_radius=0.0,
                faces_per_pixel=1,
                bin_size=0,
                perspective_correct=False,
                cull_backfaces=False,
            )
            packed = pix_to_face[..., 0].numpy()  # index into face_of
            hits[tiles] = np.where(packed >= 0, face_of[np.maximum(packed, 0)], -1)
        rows = hits.reshape(self._side, self._side, TILE, TILE).transpose(0, 2, 1, 3).reshape(self._side * TILE, -1)
        return rows[: self.image_size, : self.image_size]

    def _tile_face_pairs(self, low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(tile, face)`` index pairs, sorted by tile, of faces whose bounding box ``[low, high]``
        (``[F,2]`` pixel ``x, y``) contains a pixel centre of the tile."""
        first = np.ceil(low - 0.5).astype(np.int64)  # first and last pixel whose centre is inside
        last = np.floor(high - 0.5).astype(np.int64)
        inside = ((first <= last) & (last >= 0) & (first < self.image_size)).all(axis=1)
        first = np.clip(first, 0, self.image_size - 1) // TILE
        last = np.clip(last, 0, self.image_size - 1) // TILE
        span = last - first + 1  # [F,2] tiles along x and y
        count = np.where(inside, span[:, 0] * span[:, 1], 0)
        face_of = np.repeat(np.arange(len(low)), count)
        k = np.arange(len(face_of)) - np.repeat(np.cumsum(count) - count, count)  # pair number within its face
        tx = first[face_of, 0] + k % span[face_of, 0]
        ty = first[face_of, 1] + k // span[face_of, 0]
        tile_of = ty * self._side + tx
        order = np.argsort(tile_of, kind="stable")
        return tile_of[order], face_of[order]
