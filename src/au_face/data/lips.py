"""AU25 (Lips Part) and AU24 (Lip Pressor) read from a mesh, beside an expression's weak labels.

An expression says nothing about AU25 in a smile, an angry or a sad face (open and closed mouths
are both common), so :func:`~au_face.aus.weak_au_labels` leaves it unknown there. The mesh of the
photo does say it: :func:`lip_parting` is the gap between the inner lips' midpoints over the width
between the inner mouth corners (iBUG-68 points 62/66 and 60/64, so any topology with those
landmarks). :func:`fill_lips_part` turns it into a label only where the expression's is unknown:

- **0** at or below :data:`LIPS_AT_REST`, the median of the neutral training photos (in MediaPipe's
  meshes the inner lips of a closed mouth are about 7 % of its width apart);
- **1** at or above :data:`LIPS_PARTED`, wider than nine in ten neutral training photos;
- unknown (−1) between the two.

:func:`clear_lip_press` uses the same gap the other way: AU24 presses the lips together, so lips at or
above :data:`LIPS_PARTED` rule it out, and AU24 is labelled **0** there whatever the expression says
(anger lists AU24, but more than half of the angry training photos show an open, shouting mouth).
:func:`lips_parted` is that test on NumPy arrays and torch tensors alike; the refiner uses it to
rule AU24 out of its output (:mod:`au_face.model.exclusions`).

Both bounds were read off the training split of ``muxspace/facial_expressions`` (790 neutral photos:
10th/50th/90th percentiles 0.025/0.072/0.221), never off validation or reserved photos.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: Inner-lip gap / inner mouth width at or below which the lips count as closed (AU25 absent).
LIPS_AT_REST = 0.07
#: Inner-lip gap / inner mouth width at or above which the lips count as parted (AU25 present).
LIPS_PARTED = 0.22
#: iBUG-68 points: inner mouth corners and the inner lips' midpoints (upper, lower).
_CORNERS, _MIDPOINTS = (60, 64), (62, 66)
_AU25 = 25
_AU24 = 24


def inner_lip_points(landmarks68: np.ndarray) -> np.ndarray | None:
    """Vertex ids of the inner mouth corners and the inner lips' midpoints (iBUG-68 points 60, 64, 62,
    66, in that order), or None when the topology has no vertex for one of them."""
    ids = np.asarray(landmarks68)[[*_CORNERS, *_MIDPOINTS]]
    return None if (ids < 0).any() else ids


def lips_parted(vertices: Any, points: Sequence[int] | np.ndarray) -> Any:
    """True where the inner lips are at least :data:`LIPS_PARTED` of the inner mouth's width apart, for
    ``vertices [...,V,3]`` (``[...]``; a NumPy array or a torch tensor alike). ``points`` are
    :func:`inner_lip_points`. A mouth of width 0 is not parted."""
    corner, other_corner, upper, lower = (vertices[..., int(i), :] for i in points)
    width2 = ((corner - other_corner) ** 2).sum(-1)
    gap2 = ((upper - lower) ** 2).sum(-1)
    return (gap2 >= LIPS_PARTED**2 * width2) & (width2 > 0)


def _required_inner_lip_points(landmarks68: np.ndarray) -> np.ndarray:
    """:func:`inner_lip_points`, or ``ValueError`` when the topology lacks one of the four landmarks."""
    ids = inner_lip_points(landmarks68)
    if ids is None:
        raise ValueError("the topology has no vertex for an inner-lip landmark (iBUG-68 points 60, 62, 64, 66)")
    return ids


def lip_parting(vertices: np.ndarray, landmarks68: np.ndarray) -> np.ndarray:
    """Inner-lip gap over inner mouth width for ``vertices [T,V,3]`` (``[T]``); NaN where the width is 0.

    Raises ``ValueError`` when the topology lacks one of the four landmarks."""
    ids = _required_inner_lip_points(landmarks68)
    v = np.asarray(vertices, dtype=np.float64)
    width = np.linalg.norm(v[:, ids[0]] - v[:, ids[1]], axis=-1)
    gap = np.linalg.norm(v[:, ids[2]] - v[:, ids[3]], axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(width > 0, gap / width, np.nan)


def lips_part_labels(parting: np.ndarray) -> np.ndarray:
    """AU25 labels (1/0/−1, int8) for :func:`lip_parting` values; NaN gives −1."""
    parting = np.asarray(parting, dtype=np.float64)
    labels = np.full(parting.shape, -1, dtype=np.int8)
    labels[parting <= LIPS_AT_REST] = 0
    labels[parting >= LIPS_PARTED] = 1
    return labels


def fill_lips_part(labels: np.ndarray, aus: Sequence[int], vertices: np.ndarray, landmarks68: np.ndarray) -> np.ndarray:
    """``labels [T,K]`` with AU25's unknown entries set from the mesh (a copy; others untouched).

    ``vertices [T,V,3]`` are the frames' meshes; ``aus`` the labels' AU columns (no AU25: unchanged)."""
    labels = np.array(labels, dtype=np.int8, copy=True)
    if _AU25 not in aus:
        return labels
    column = list(aus).index(_AU25)
    unknown = labels[:, column] == -1
    if unknown.any():
        from_mesh = lips_part_labels(lip_parting(vertices, landmarks68))
        labels[unknown, column] = from_mesh[unknown]
    return labels


def clear_lip_press(
    labels: np.ndarray, aus: Sequence[int], vertices: np.ndarray, landmarks68: np.ndarray
) -> np.ndarray:
    """``labels [T,K]`` with AU24 set to 0 where the mesh shows the lips parted (a copy; others untouched).

    Lips at or above :data:`LIPS_PARTED` cannot be pressed together, so this overrides an expression's
    1 (an angry face shouting) as well as an unknown. ``aus`` without AU24: unchanged."""
    labels = np.array(labels, dtype=np.int8, copy=True)
    if _AU24 not in aus:
        return labels
    parted = lips_parted(np.asarray(vertices, dtype=np.float64), _required_inner_lip_points(landmarks68))
    labels[parted, list(aus).index(_AU24)] = 0
    return labels


__all__ = [
    "LIPS_AT_REST",
    "LIPS_PARTED",
    "clear_lip_press",
    "fill_lips_part",
    "inner_lip_points",
    "lip_parting",
    "lips_part_labels",
    "lips_parted",
]
