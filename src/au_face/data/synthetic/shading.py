"""Offscreen shading of a face mesh into an RGB crop.

Camera model: orthographic along +z in *image space*, the frame :class:`~au_face.coarse.base.CoarseFrames`
uses for posed vertices: ``x`` to the right and ``y`` down in pixels, ``z`` pointing away from the
viewer. The triangle first hit at each pixel centre ``(col + 0.5, row + 0.5)`` along +z is shaded
with Lambert + ambient light from interpolated vertex normals. A named backend
(:mod:`au_face.data.synthetic.rasterizers`) finds those triangles: ``embree`` (default, trimesh ray casting) or
``pytorch3d`` (PyTorch3D's rasteriser, an optional environment); the images never depend on what
is installed, only on the backend asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import scipy.sparse as sp

from au_face.data.synthetic.rasterizers import DEFAULT_BACKEND, make_rasterizer, renderer_name

#: Skin reflectance range (linear RGB) between which random albedos are drawn.
_SKIN_LIGHT = np.array([0.93, 0.76, 0.66])
_SKIN_DARK = np.array([0.42, 0.28, 0.20])


@dataclass(frozen=True)
class Lighting:
    """A directional light plus ambient term and the skin albedo it falls on.

    Attributes:
        direction: ``[3]`` unit vector in image space pointing from the surface towards the light
            (``(0, 0, -1)`` lights the face from the camera).
        ambient: ambient fraction in ``[0, 1]``; the directional part gets ``1 - ambient``.
        intensity: brightness of the directional light.
        albedo: ``[3]`` RGB reflectance in ``[0, 1]``.
    """

    direction: np.ndarray
    ambient: float
    intensity: float
    albedo: np.ndarray

    @classmethod
    def random(cls, rng: np.random.Generator, albedo: np.ndarray | None = None) -> Lighting:
        """A mostly frontal light from a random side and a random ambient level.

        ``albedo`` defaults to a random skin tone (:func:`random_skin_albedo`).
        """
        lateral = rng.uniform(-0.9, 0.9, size=2)
        direction = np.array([lateral[0], lateral[1], -1.0])
        if albedo is None:
            albedo = random_skin_albedo(rng)
        return cls(
            direction=direction / np.linalg.norm(direction),
            ambient=float(rng.uniform(0.25, 0.45)),
            intensity=float(rng.uniform(0.85, 1.1)),
            albedo=albedo,
        )


def random_skin_albedo(rng: np.random.Generator) -> np.ndarray:
    """``[3]`` RGB reflectance between a light and a dark skin tone, with a slight hue jitter."""
    tone = rng.uniform(0.0, 1.0)
    albedo = (1 - tone) * _SKIN_LIGHT + tone * _SKIN_DARK
    return np.clip(albedo * rng.uniform(0.95, 1.05, size=3), 0.0, 1.0)


def gradient_background(size: int, top: Sequence[float], bottom: Sequence[float], angle: float = 0.0) -> np.ndarray:
    """``[size,size,3]`` uint8 linear gradient from colour ``top`` to ``bottom`` (RGB in [0,1]).

    ``angle`` (radians) tilts the gradient direction away from vertical.
    """
    coords = (np.arange(size) + 0.5) / size - 0.5
    xs, ys = np.meshgrid(coords, coords)
    t = np.clip(0.5 + ys * np.cos(angle) + xs * np.sin(angle), 0.0, 1.0)[..., None]
    image = (1 - t) * np.asarray(top, dtype=np.float64) + t * np.asarray(bottom, dtype=np.float64)
    return np.round(255 * image).astype(np.uint8)


def random_background(size: int, rng: np.random.Generator) -> np.ndarray:
    """A random two-colour gradient background."""
    top, bottom = rng.uniform(0.05, 0.95, size=(2, 3))
    return gradient_background(size, top, bottom, angle=float(rng.uniform(-np.pi / 3, np.pi / 3)))


@dataclass(frozen=True)
class RenderedFrame:
    """A shaded image ``[H,W,3]`` uint8 and the mask ``[H,W]`` of pixels whose ray hit the mesh."""

    image: np.ndarray
    mask: np.ndarray


class MeshRenderer:
    """Renderer for one triangle topology at a fixed square image size.

    ``backend`` (:data:`~au_face.data.synthetic.rasterizers.BACKENDS`) finds the visible triangles; asking for one
    that does not load raises :class:`~au_face.data.synthetic.rasterizers.RendererBackendError`. ``name`` is the
    renderer name stored with generated data.
    """

    def __init__(self, triangles: np.ndarray, image_size: int, backend: str = DEFAULT_BACKEND) -> None:
        self.triangles = np.asarray(triangles, dtype=np.int64)
        self.image_size = int(image_size)
        self.backend = backend
        self.name = renderer_name(backend)
        self._rasterizer = make_rasterizer(backend, self.triangles, self.image_size)
        num_vertices = int(self.triangles.max()) + 1 if self.triangles.size else 0
        rows = self.triangles.ravel()
        cols = np.repeat(np.arange(len(self.triangles)), 3)
        #: [V,F] vertex-triangle incidence: sums area-weighted triangle normals onto vertices.
        self._incidence = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(num_vertices, len(self.triangles)))

    def render(
        self,
        vertices: np.ndarray,
        lighting: Lighting,
        background: np.ndarray,
        cavities: Sequence[np.ndarray] = (),
        cavity_color: Sequence[float] = (0.12, 0.05, 0.05),
        vertex_albedo: np.ndarray | None = None,
    ) -> RenderedFrame:
        """Shade ``vertices`` ``[V,3]`` (image space, pixels) over ``background`` ``[H,W,3]`` uint8.

        ``cavities`` are pixel polygons ``[N,2]`` (eye and mouth openings of a mesh that has holes
        there); background pixels inside them take ``cavity_color`` so the holes look like the inside
        of the head instead of the backdrop. ``vertex_albedo`` ``[V,3]`` (RGB in [0,1]) paints the
        surface (brows, lips); without it the whole surface has ``lighting.albedo``.
        """
        size = self.image_size
        if background.shape != (size, size, 3):
            raise ValueError(f"background must be [{size},{size},3], got {background.shape}")
        vertices = np.asarray(vertices, dtype=np.float64)
        hits = self._rasterizer.first_hits(vertices)
        mask = hits >= 0
        rows, cols = np.nonzero(mask)
        image = background.astype(np.float64) / 255.0
        if len(rows):
            tri_ids = hits[rows, cols]
            bary = self._barycentric(vertices, np.stack([cols + 0.5, rows + 0.5], axis=1), tri_ids)
            corners = self.triangles[tri_ids]
            normals = self._interpolate(bary, self._vertex_normals(vertices), corners)
            normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
            albedo = lighting.albedo if vertex_albedo is None else self._interpolate(bary, vertex_albedo, corners)
            image[rows, cols] = self._shade(normals, lighting, albedo)
        if cavities:
            holes = np.zeros((size, size), dtype=np.uint8)
            cv2.fillPoly(holes, [np.round(np.asarray(p)).astype(np.int32) for p in cavities], (1,))
            fill = (holes > 0) & ~mask
            image[fill] = np.asarray(cavity_color, dtype=np.float64)
        return RenderedFrame(np.round(255 * np.clip(image, 0.0, 1.0)).astype(np.uint8), mask)

    def _vertex_normals(self, vertices: np.ndarray) -> np.ndarray:
        """``[V,3]`` area-weighted vertex normals (not normalised)."""
        corners = vertices[self.triangles]
        face_normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
        return self._incidence @ face_normals

    def _barycentric(self, vertices: np.ndarray, pixels: np.ndarray, tri_ids: np.ndarray) -> np.ndarray:
        """``[N,3]`` barycentric coordinates of the hit pixels in their triangles.

        The rays are parallel to z, so they are those of the pixel centre ``[N,2]`` in the
        triangle's xy projection.
        """
        corners = vertices[self.triangles[tri_ids]][:, :, :2]
        a, b, c = corners[:, 0], corners[:, 1], corners[:, 2]
        e1, e2, d = b - a, c - a, pixels - a
        det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
        det = np.where(np.abs(det) < 1e-12, 1e-12, det)
        u = (d[:, 0] * e2[:, 1] - d[:, 1] * e2[:, 0]) / det
        v = (e1[:, 0] * d[:, 1] - e1[:, 1] * d[:, 0]) / det
        return np.clip(np.stack([1 - u - v, u, v], axis=1), 0.0, 1.0)

    @staticmethod
    def _interpolate(bary: np.ndarray, values: np.ndarray, corners: np.ndarray) -> np.ndarray:
        """Per-vertex ``values [V,C]`` interpolated at hits with ``bary [N,3]`` in triangles ``corners [N,3]``."""
        return np.einsum("nk,nkc->nc", bary, np.asarray(values, dtype=np.float64)[corners])

    @staticmethod
    def _shade(normals: np.ndarray, lighting: Lighting, albedo: np.ndarray) -> np.ndarray:
        """Lambert + ambient radiance times ``albedo`` (``[3]`` or per hit ``[N,3]``)."""
        diffuse = np.clip(normals @ np.asarray(lighting.direction, dtype=np.float64), 0.0, None)
        radiance = lighting.ambient + (1.0 - lighting.ambient) * lighting.intensity * diffuse
        return radiance[:, None] * np.asarray(albedo, dtype=np.float64)
