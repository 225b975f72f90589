"""The ``pytorch3d`` backend: PyTorch3D's compiled mesh rasteriser (hard, one face per pixel, on the CPU).

Import it only after :func:`au_face.renderers.require_backend` said ``pytorch3d`` loads.
"""

from __future__ import annotations

import numpy as np
import torch
from pytorch3d.renderer.mesh.rasterize_meshes import rasterize_meshes
from pytorch3d.structures import Meshes


class PyTorch3DRasterizer:
    """First triangle hit at each pixel centre, by ``pytorch3d.renderer.mesh.rasterize_meshes``."""

    def __init__(self, triangles: np.ndarray, image_size: int) -> None:
        self.faces = torch.as_tensor(np.asarray(triangles, dtype=np.int64))
        self.image_size = int(image_size)

    def first_hits(self, vertices: np.ndarray) -> np.ndarray:
        """``[H,W]`` triangle index nearest the viewer at each pixel centre, -1 where none.

        Only the mesh's bounding box is rasterised (the CPU rasteriser tests every face at every
        pixel). It is mapped onto PyTorch3D's NDC: ``+x`` left, ``+y`` up, ``2 / min(h, w)`` per
        pixel, so pixel ``i`` of ``n`` along an axis has its centre at ``(n - 2i - 1) / min(h, w)``.
        Depth is shifted to start at 1 because faces behind the camera (``z < 0``) are dropped.
        Back faces are kept, as the ray caster hits them too.
        """
        size = self.image_size
        v = np.asarray(vertices, dtype=np.float64)
        hits = np.full((size, size), -1, dtype=np.int64)
        x0, y0 = np.clip(np.floor(v[:, :2].min(axis=0)).astype(int), 0, size)
        x1, y1 = np.clip(np.ceil(v[:, :2].max(axis=0)).astype(int) + 1, 0, size)
        h, w = y1 - y0, x1 - x0
        if h <= 0 or w <= 0:
            return hits
        unit = min(h, w)
        ndc = np.stack([(w - 2 * (v[:, 0] - x0)) / unit, (h - 2 * (v[:, 1] - y0)) / unit, v[:, 2] - v[:, 2].min() + 1], axis=1)
        pix_to_face, _, _, _ = rasterize_meshes(
            Meshes(verts=[torch.as_tensor(ndc, dtype=torch.float32)], faces=[self.faces]),
            image_size=(int(h), int(w)),
            blur_radius=0.0,
            faces_per_pixel=1,
            bin_size=0,
            perspective_correct=False,
            cull_backfaces=False,
        )
        hits[y0:y1, x0:x1] = pix_to_face[0, :, :, 0].numpy()
        return hits
