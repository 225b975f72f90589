"""Static figures of face meshes: the AU vertex-mask grid (matplotlib, no pyplot state)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.collections import PolyCollection
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.figure import Figure

from au_face.aus import AU_NAMES, au_label, parse_au
from au_face.faces.topology import FaceTopology
from au_face.utils.files import atomic_path

#: White (mask 0) through yellow and orange to dark red (mask 1); the shading keeps the face visible.
MASK_CMAP = ListedColormap(colormaps["hot_r"](np.linspace(0.0, 0.68, 256)), name="au_mask")
_LIGHT = np.array([0.35, 0.45, 1.0]) / np.linalg.norm([0.35, 0.45, 1.0])


def view_frame(topology: FaceTopology) -> np.ndarray:
    """``[3, 3]`` rotation whose rows are screen right, up and towards the viewer for a frontal view.

    Built from the iBUG-68 landmarks (outer eye corners 36 -> 45 for right, chin 8 -> nose bridge 27
    for up); the identity (x right, y up, z to the viewer) when those landmarks are missing.
    """
    ids = topology.landmarks68[[36, 45, 8, 27]]
    if (ids < 0).any():
        return np.eye(3)
    p36, p45, p8, p27 = topology.template[ids].astype(np.float64)
    right = p45 - p36
    right /= np.linalg.norm(right)
    up = (p27 - p8) - np.dot(p27 - p8, right) * right
    up /= np.linalg.norm(up)
    return np.stack([right, up, np.cross(right, up)])


def _front_faces(topology: FaceTopology) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Screen-space triangles facing the viewer, back to front, with their Lambert shade."""
    points = (topology.template - topology.template.mean(0)) @ view_frame(topology).T
    corners = points[topology.triangles]  # [F,3,3]
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    if normals[:, 2].sum() < 0:  # winding convention of this mesh is clockwise
        normals = -normals
    length = np.linalg.norm(normals, axis=1)
    visible = (normals[:, 2] > 0) & (length > 0)
    order = np.flatnonzero(visible)[np.argsort(corners[visible, :, 2].mean(1), kind="stable")]
    unit = normals[order] / length[order, None]
    shade = 0.3 + 0.7 * np.clip(unit @ _LIGHT, 0.0, 1.0)
    return order, corners[order, :, :2], shade


def draw_masks(
    topology: FaceTopology,
    masks: np.ndarray,
    aus: Sequence[int | str],
    path: str | Path,
    title: str | None = None,
) -> Path:
    """Draw one frontal, shaded view of the neutral face per AU, coloured by its mask ``M_k``.

    Args:
        topology: the mesh the masks live on.
        masks: ``[K, V]`` values in [0, 1].
        aus: the ``K`` AUs (labels and FACS names go above the panels).
        path: output image (format from the suffix, e.g. ``.png``); written atomically.
        title: optional figure title.
    """
    numbers = [parse_au(a) for a in aus]
    masks = np.asarray(masks, dtype=np.float64)
    if masks.shape != (len(numbers), topology.num_vertices):
        raise ValueError(
            f"masks of shape {masks.shape} do not match {len(numbers)} AUs on {topology.num_vertices} vertices"
        )
    order, polygons, shade = _front_faces(topology)
    lo, hi = polygons.reshape(-1, 2).min(0), polygons.reshape(-1, 2).max(0)
    margin = 0.03 * (hi - lo).max()

    rows = math.ceil(len(numbers) / 6)
    cols = math.ceil(len(numbers) / rows)
    fig = Figure(figsize=(2.1 * cols, 2.6 * rows + 0.6))
    axes = fig.subplots(rows, cols, squeeze=False)
    norm = Normalize(0.0, 1.0)
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k >= len(numbers):
            continue
        values = masks[k][topology.triangles[order]].mean(1)
        colours = MASK_CMAP(norm(values))
        colours[:, :3] *= shade[:, None]
        ax.add_collection(PolyCollection(list(polygons), facecolors=colours, edgecolors=colours, linewidths=0.15))
        ax.set_xlim(lo[0] - margin, hi[0] + margin)
        ax.set_ylim(lo[1] - margin, hi[1] + margin)
        ax.set_aspect("equal")
        ax.set_title(f"{au_label(numbers[k])}\n{AU_NAMES[numbers[k]]}", fontsize=9)
    fig.colorbar(
        ScalarMappable(norm=norm, cmap=MASK_CMAP),
        ax=axes.ravel().tolist(),
        orientation="horizontal",
        fraction=0.04,
        pad=0.03,
        label="mask weight $M_k$",
    )
    if title:
        fig.suptitle(title)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".").lower() or "png", dpi=150, bbox_inches="tight")
    return path
