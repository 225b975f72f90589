"""Rasterisers of the synthetic renderer: which triangle each pixel centre sees first.

The backend is always named, never picked by what happens to be installed, so the images of a
config never change silently:

* ``embree`` (default): trimesh ray casting (Embree when installed, rtree otherwise).
* ``pytorch3d``: PyTorch3D's compiled rasteriser, an optional environment (``docs/pytorch3d.md``):
  it loads only with the CUDA build of ``torch==2.12.1``.

Shading is not part of a backend: :class:`~au_face.data.synthetic.shading.MeshRenderer` shades the triangles
a backend reports, so two backends can differ only in which triangle covers a pixel.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import trimesh

from au_face.data.synthetic.rasterizers.raycast import RayCastRasterizer
from au_face.errors import AUFaceError

BACKENDS = ("embree", "pytorch3d")
DEFAULT_BACKEND = "embree"

#: The environment PyTorch3D's compiled part needs; ``pyproject.toml``'s ``pytorch3d-render`` extra
#: and ``constraints/pytorch3d.txt`` pin the same.
PYTORCH3D_PINS = ("torch==2.12.1", "easypytorch3d==0.7.9.post1")


class RendererBackendError(AUFaceError, ValueError):
    """Raised for an unknown renderer backend or one whose packages do not load."""


class Rasterizer(Protocol):
    """Visibility at the pixel centres of a square image of side ``image_size``."""

    image_size: int

    def first_hits(self, vertices: np.ndarray) -> np.ndarray:
        """``[H,W]`` int64: the triangle first hit along +z at each pixel centre, -1 where none.

        ``vertices`` ``[V,3]`` are in image space: ``x`` right and ``y`` down in pixels, ``z`` away
        from the viewer (orthographic view).
        """


def pytorch3d_import_error() -> str | None:
    """Why ``from pytorch3d import _C`` fails here, or None when PyTorch3D's compiled part loads."""
    try:
        from pytorch3d import _C  # noqa: F401
    except (ImportError, OSError) as err:
        return f"{type(err).__name__}: {err}"
    return None


def require_backend(backend: str) -> None:
    """Raise :class:`RendererBackendError` unless ``backend`` is known and loads here."""
    if backend not in BACKENDS:
        raise RendererBackendError(f"unknown renderer backend {backend!r}; choose one of {BACKENDS}")
    if backend == "pytorch3d":
        error = pytorch3d_import_error()
        if error is not None:
            pins = " ".join(f'"{pin}"' for pin in PYTORCH3D_PINS)
            raise RendererBackendError(
                f"renderer backend 'pytorch3d' needs PyTorch3D's compiled part, which does not load here "
                f"(from pytorch3d import _C -> {error}). It loads only with the CUDA build of torch==2.12.1 "
                f"(PyPI's default Linux wheel; it runs without a GPU). In a separate environment: "
                f'pip install -c constraints/pytorch3d.txt -e ".[pytorch3d-render]" in a checkout, or '
                f"pip install {pins}; see docs/pytorch3d.md. The default backend 'embree' needs none of this."
            )


#: The renderer names each backend can store: ``embree`` ray-casts with Embree where it is installed,
#: with rtree otherwise (the same images up to float rounding at triangle edges).
RENDERER_NAMES = {"embree": ("trimesh-embree", "trimesh-rtree"), "pytorch3d": ("pytorch3d",)}


def renderer_name(backend: str) -> str:
    """The renderer name stored with generated data (it keys the synthetic-data cache).

    Importing nothing optional, it also names the renderer of data made in another environment.
    """
    if backend not in RENDERER_NAMES:
        raise RendererBackendError(f"unknown renderer backend {backend!r}; choose one of {BACKENDS}")
    if backend == "embree":
        embree, rtree = RENDERER_NAMES["embree"]
        return embree if trimesh.ray.has_embree else rtree
    return RENDERER_NAMES[backend][0]


def make_rasterizer(backend: str, triangles: np.ndarray, image_size: int) -> Rasterizer:
    """The ``backend`` rasteriser for ``triangles`` ``[F,3]`` at ``image_size`` pixels square."""
    require_backend(backend)
    if backend == "pytorch3d":
        from au_face.data.synthetic.rasterizers.pytorch3d_raster import PyTorch3DRasterizer  # imports pytorch3d

        return PyTorch3DRasterizer(triangles, image_size)
    return RayCastRasterizer(triangles, image_size)
