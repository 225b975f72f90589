"""AU vertex masks ``M_k``: per AU, a weight in [0, 1] on every vertex of a topology.

Supplement §1 of the paper: each AU has a region of "active" vertices (weight 1), the rest are
inactive (0), and the boundary is smoothed so the weights change gradually. Masks are fixed
priors (never trained). Three ways to obtain the active set are provided:

* ``ict``: data-driven, from where the ICT-FaceKit expression shapes of the AU move the mesh;
* ``landmarks``: anchored on iBUG-68 landmarks with radii in inter-ocular units (any topology);
* ``transfer``: masks of one topology carried to another by landmark-driven registration.

All three end with :func:`ring_falloff` (or inherit its smoothness by sampling), are deterministic,
and :func:`build_masks` caches the result as an npz keyed by everything that determines it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from au_face.aus import au_label, parse_au
from au_face.errors import AUFaceError
from au_face.faces.correspondence import interocular_distance, landmark_points, register_template
from au_face.faces.ict import ICTFaceModel
from au_face.faces.topology import FaceTopology
from au_face.utils.files import atomic_save_npz

#: Bump when any mask definition or default changes; it is part of every cache key.
MASKS_VERSION = 1

MaskMethod = Literal["ict", "landmarks", "transfer"]
MASK_METHODS: tuple[str, ...] = ("ict", "landmarks", "transfer")

#: Default relative displacement above which an ICT vertex is active (see :func:`masks_from_ict`).
DEFAULT_ICT_THRESHOLD = 0.4
#: Default number of graph rings of the boundary falloff.
DEFAULT_RINGS = 3
#: Data-driven active sets drop connected pieces smaller than this fraction of the whole set
#: (speckles where an ICT shape barely crosses the threshold far from its region).
MIN_PIECE_FRACTION = 0.02


class MaskError(AUFaceError, ValueError):
    """Masks that do not fit a topology or an AU list, or that cannot be built."""


# --------------------------------------------------------------------------- smoothing


def ring_falloff(active: np.ndarray, topology: FaceTopology, rings: int = DEFAULT_RINGS) -> np.ndarray:
    """Smooth a boolean active set over the mesh graph.

    ``M(i) = max(0, 1 - d(i) / (rings + 1))`` where ``d(i)`` is the number of mesh edges (hops)
    from vertex ``i`` to the nearest active vertex, so active vertices get 1 and vertices more than
    ``rings`` hops away get 0.

    Bound: hop distances of mesh neighbours differ by at most 1 and the falloff is linear in ``d``
    with slope ``1 / (rings + 1)``, hence ``|M(i) - M(j)| <= 1 / (rings + 1)`` for every mesh edge
    ``(i, j)``.

    Args:
        active: ``[V]`` bool.
        topology: the mesh whose edges define the hops.
        rings: width of the transition in hops (>= 0; 0 gives the hard 0/1 mask).

    Returns:
        ``[V]`` float32 in [0, 1].
    """
    active = np.asarray(active, dtype=bool)
    if active.shape != (topology.num_vertices,):
        raise MaskError(
            f"active set has shape {active.shape}, topology {topology.name!r} has {topology.num_vertices} vertices"
        )
    _check_rings(rings)
    return _falloff(active, topology.adjacency(), rings)


def _check_rings(rings: int) -> None:
    if rings < 0:
        raise MaskError(f"rings must be >= 0, got {rings}")


def _falloff(active: np.ndarray, adjacency: sp.csr_matrix, rings: int) -> np.ndarray:
    hops = np.full(len(active), np.inf)
    hops[active] = 0.0
    reached = active.copy()
    for ring in range(1, rings + 1):  # breadth-first search, one ring per step
        frontier = (adjacency @ reached.astype(np.float32)) > 0
        frontier &= ~reached
        if not frontier.any():
            break
        hops[frontier] = ring
        reached |= frontier
    return np.maximum(0.0, 1.0 - hops / (rings + 1)).astype(np.float32)


# --------------------------------------------------------------------------- ICT, data-driven


def ict_displacement(model: ICTFaceModel, au: int | str) -> np.ndarray:
    """``[V]`` displacement magnitude of the ICT mesh when ``au`` is fully active."""
    number = parse_au(au)
    try:
        weights = model.au_weights(number)
    except KeyError as err:
        raise MaskError(
            f"{au_label(number)} has no ICT-FaceKit expression shapes; use the landmark-anchored masks for it"
        ) from err
    used = np.flatnonzero(weights)
    displacement = np.einsum("e,evc->vc", weights[used], model.expression_deltas[used])
    return np.linalg.norm(displacement, axis=-1)


def _drop_small_pieces(active: np.ndarray, adjacency: sp.csr_matrix) -> np.ndarray:
    """``active`` without its mesh-connected pieces of fewer than :data:`MIN_PIECE_FRACTION` of its vertices."""
    ids = np.flatnonzero(active)
    _, piece = connected_components(adjacency[ids][:, ids], directed=False)
    sizes = np.bincount(piece)
    kept = np.zeros_like(active, dtype=bool)
    kept[ids[sizes[piece] >= MIN_PIECE_FRACTION * len(ids)]] = True
    return kept


def masks_from_ict(
    model: ICTFaceModel,
    aus: Sequence[int | str],
    threshold: float = DEFAULT_ICT_THRESHOLD,
    rings: int = DEFAULT_RINGS,
) -> np.ndarray:
    """Data-driven masks ``[K, V]`` on the model's own mesh.

    For each AU the displacement field is the weighted sum of its expression deltas
    (``ICTFaceModel.au_weights``: the official FACS table plus au_face's AU23/25/26 extension), i.e.
    exactly the geometry change the AU causes in the model. The sum, rather than the largest single
    shape, honours the table's weights and lets left/right shapes simply add up on their disjoint
    halves. Vertices whose displacement exceeds ``threshold`` times the AU's largest displacement are
    active, minus disconnected speckles smaller than :data:`MIN_PIECE_FRACTION` of the set;
    :func:`ring_falloff` smooths the boundary.
    """
    if not 0.0 < threshold < 1.0:
        raise MaskError(f"threshold must be in (0, 1), got {threshold}")
    _check_rings(rings)
    numbers = [parse_au(a) for a in aus]
    adjacency = model.topology().adjacency()
    masks = []
    for number in numbers:
        magnitude = ict_displacement(model, number)
        peak = float(magnitude.max())
        if peak <= 0.0:
            raise MaskError(f"the ICT shapes of {au_label(number)} do not move any vertex of this mesh region")
        masks.append(_falloff(_drop_small_pieces(magnitude / peak > threshold, adjacency), adjacency, rings))
    return np.stack(masks)


# --------------------------------------------------------------------------- landmark-anchored

#: An anchor point: an affine combination ``sum(w * landmark)`` of iBUG-68 landmarks (weights sum
#: to 1; a negative weight extrapolates, e.g. onto the forehead where no landmark lies).
Anchor = tuple[tuple[int, float], ...]


def _at(*landmarks: int) -> tuple[Anchor, ...]:
    return tuple(((i, 1.0),) for i in landmarks)


def _between(a: int, b: int, t: float) -> Anchor:
    """The point ``a + t (b - a)``; ``t < 0`` lies beyond ``a``, away from ``b``."""
    return ((a, 1.0 - t), (b, t))


@dataclass(frozen=True)
class AURegion:
    """Where an AU acts: anchor points and a radius in units of the inter-ocular distance."""

    anchors: tuple[Anchor, ...]
    radius: float


# iBUG-68: 0-16 jaw line (8 chin), 17-21 / 22-26 brows (outer to inner / inner to outer),
# 27-30 nose bridge to tip, 31-35 nostrils, 36-41 / 42-47 eyes (36, 45 outer corners),
# 48-59 outer lips (48, 54 corners, 51 top, 57 bottom), 60-67 inner lips.
_FOREHEAD_INNER = (_between(20, 38, -0.8), _between(21, 39, -0.8), _between(22, 42, -0.8), _between(23, 43, -0.8))
_FOREHEAD_OUTER = (_between(18, 37, -0.8), _between(19, 38, -0.8), _between(24, 43, -0.8), _between(25, 44, -0.8))
_CHEEKS = (_between(41, 48, 0.4), _between(46, 54, 0.4), _between(40, 31, 0.4), _between(47, 35, 0.4))
_NASOLABIAL = (_between(31, 48, 0.5), _between(35, 54, 0.5))
_LIPS = _at(*range(48, 68))
_EYES = _at(*range(36, 48))
_JAW = _at(5, 6, 7, 8, 9, 10, 11) + (_between(57, 8, 0.5),)
_TOWARDS_ZYGOMA = tuple(_between(corner, ear, t) for corner, ear in ((48, 1), (54, 15)) for t in (0.15, 0.3, 0.45))

#: AU -> region on any face-like topology with iBUG-68 landmark vertices.
AU_REGIONS: dict[int, AURegion] = {
    1: AURegion(_at(19, 20, 21, 22, 23, 24) + _FOREHEAD_INNER, 0.15),
    2: AURegion(_at(17, 18, 19, 20, 23, 24, 25, 26) + _FOREHEAD_OUTER, 0.15),
    4: AURegion(_at(19, 20, 21, 22, 23, 24, 27) + (_between(21, 22, 0.5),), 0.13),
    5: AURegion(_at(37, 38, 43, 44), 0.1),
    6: AURegion(_CHEEKS + _at(36, 45, 40, 41, 46, 47), 0.14),
    7: AURegion(_at(36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47), 0.08),
    9: AURegion(_at(27, 28, 29, 31, 35) + (_between(39, 31, 0.5), _between(42, 35, 0.5)), 0.12),
    10: AURegion(_at(49, 50, 51, 52, 53) + _NASOLABIAL, 0.12),
    11: AURegion(_NASOLABIAL + (_between(31, 48, 0.2), _between(35, 54, 0.2)), 0.1),
    12: AURegion(_at(48, 54) + _TOWARDS_ZYGOMA, 0.12),
    13: AURegion((_between(48, 2, 0.5), _between(54, 14, 0.5)) + _CHEEKS[:2], 0.18),
    14: AURegion(_at(48, 54) + (_between(48, 54, -0.2), _between(54, 48, -0.2)), 0.1),
    15: AURegion(_at(48, 54) + (_between(48, 5, 0.4), _between(54, 11, 0.4)), 0.13),
    16: AURegion(_at(55, 56, 57, 58, 59) + (_between(57, 8, 0.3),), 0.12),
    17: AURegion(_at(7, 8, 9) + (_between(57, 8, 0.5), _between(58, 7, 0.5), _between(56, 9, 0.5)), 0.14),
    18: AURegion(_LIPS, 0.1),
    20: AURegion(_at(48, 54) + (_between(48, 4, 0.35), _between(54, 12, 0.35)), 0.13),
    22: AURegion(_LIPS, 0.1),
    23: AURegion(_LIPS, 0.08),
    24: AURegion(_at(49, 50, 51, 52, 53, 55, 56, 57, 58, 59) + _at(*range(60, 68)), 0.08),
    25: AURegion(_at(*range(60, 68)) + _at(50, 51, 52, 56, 57, 58), 0.08),
    26: AURegion(_JAW + _at(57), 0.16),
    27: AURegion(_JAW + _at(*range(48, 60)), 0.16),
    28: AURegion(_LIPS, 0.08),
    29: AURegion(_JAW + _at(4, 12), 0.14),
    30: AURegion(_JAW + _at(3, 4, 12, 13), 0.14),
    33: AURegion((_between(48, 2, 0.5), _between(54, 14, 0.5), _between(48, 4, 0.4), _between(54, 12, 0.4)), 0.18),
    43: AURegion(_EYES, 0.07),
    45: AURegion(_EYES, 0.07),
    61: AURegion(_EYES, 0.06),
    62: AURegion(_EYES, 0.06),
    63: AURegion(_EYES, 0.06),
    64: AURegion(_EYES, 0.06),
}


def _anchor_point(topology: FaceTopology, anchor: Anchor) -> np.ndarray:
    landmarks = landmark_points(topology, [i for i, _ in anchor])
    return np.asarray([w for _, w in anchor]) @ landmarks


def masks_from_landmarks(topology: FaceTopology, aus: Sequence[int | str], rings: int = DEFAULT_RINGS) -> np.ndarray:
    """Landmark-anchored masks ``[K, V]`` from :data:`AU_REGIONS`.

    Each anchor point is placed on the template from its landmarks and snapped to the nearest
    vertex (so extrapolated anchors lie on the surface); vertices within ``radius x inter-ocular
    distance`` (Euclidean, on the template) of any anchor are active; :func:`ring_falloff` smooths
    the boundary.
    """
    numbers = [parse_au(a) for a in aus]
    uncovered = [au_label(n) for n in numbers if n not in AU_REGIONS]
    if uncovered:
        raise MaskError(f"no landmark region defined for {', '.join(uncovered)}")
    _check_rings(rings)
    iod = interocular_distance(topology)
    tree = cKDTree(topology.template)
    adjacency = topology.adjacency()
    masks = []
    for number in numbers:
        region = AU_REGIONS[number]
        points = np.stack([_anchor_point(topology, anchor) for anchor in region.anchors])
        _, snapped = tree.query(points)
        hits = tree.query_ball_point(topology.template[snapped], r=region.radius * iod)
        active = np.zeros(topology.num_vertices, dtype=bool)
        active[np.concatenate([np.asarray(h, dtype=np.int64) for h in hits])] = True
        masks.append(_falloff(active, adjacency, rings))
    return np.stack(masks)


# --------------------------------------------------------------------------- transfer


def transfer_masks(src: FaceTopology, src_masks: np.ndarray, dst: FaceTopology, reach: float = 0.08) -> np.ndarray:
    """Carry masks ``[K, Vs]`` from ``src`` to ``dst`` (``[K, Vd]``).

    ``src`` is registered onto ``dst`` (:func:`register_template`); each dst vertex takes the mask
    value of the nearest warped src vertex (so ``src`` should be the denser mesh, e.g. ICT's
    6706-vertex face for MediaPipe or FLAME). Dst vertices outside the src surface (e.g. FLAME's scalp
    and neck beyond ICT's face region) fade to 0: full value up to ``reach`` inter-ocular distances
    away, then linearly down to 0 at twice that.
    """
    src_masks = np.asarray(src_masks)
    check_masks(src_masks, src)
    warped = register_template(src, dst)
    distance, nearest = cKDTree(warped).query(dst.template.astype(np.float64))
    limit = reach * interocular_distance(dst)
    fade = np.clip(2.0 - distance / limit, 0.0, 1.0)
    return (src_masks[:, nearest] * fade).astype(np.float32)


# --------------------------------------------------------------------------- validation, files, cache


def check_masks(masks: np.ndarray, topology: FaceTopology, aus: Sequence[int] | None = None) -> None:
    """Raise :class:`MaskError` unless ``masks`` is a finite ``[K, V]`` array in [0, 1] for ``topology``."""
    shape = np.shape(masks)
    if len(shape) != 2:
        raise MaskError(f"masks must be [K, V], got shape {shape}")
    if shape[1] != topology.num_vertices:
        raise MaskError(f"masks cover {shape[1]} vertices but topology {topology.name!r} has {topology.num_vertices}")
    if aus is not None and shape[0] != len(aus):
        raise MaskError(f"{shape[0]} masks for {len(aus)} AUs")
    masks = np.asarray(masks)
    if not np.isfinite(masks).all():
        raise MaskError("masks contain NaN or infinite values")
    if masks.size and (masks.min() < 0.0 or masks.max() > 1.0):
        raise MaskError(f"mask values must lie in [0, 1], found [{masks.min():g}, {masks.max():g}]")


def save_masks(path: str | Path, masks: np.ndarray, aus: Sequence[int | str], topology_name: str) -> None:
    """Write masks with their AU list and topology name as an npz (atomically)."""
    numbers = [parse_au(a) for a in aus]
    masks = np.asarray(masks, dtype=np.float32)
    if masks.ndim != 2 or masks.shape[0] != len(numbers):
        raise MaskError(f"masks of shape {masks.shape} do not match {len(numbers)} AUs")
    atomic_save_npz(
        path,
        masks=masks,
        aus=np.asarray(numbers, dtype=np.int64),
        topology=np.array(topology_name),
        version=np.array(MASKS_VERSION),
    )


def load_masks(path: str | Path, topology: FaceTopology, aus: Sequence[int | str]) -> np.ndarray:
    """Read masks written by :func:`save_masks`, checking they fit ``topology`` and ``aus`` exactly."""
    path = Path(path)
    if not path.is_file():
        raise MaskError(f"mask file not found: {path}")
    try:
        data = np.load(path)
    except (OSError, ValueError) as err:
        raise MaskError(f"{path} is not a readable npz file: {err}") from err
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise MaskError(f"{path} is not an npz file of masks")
    with data:
        if not {"masks", "aus", "topology"} <= set(data.files):
            raise MaskError(f"{path} is not a mask file (arrays: {sorted(data.files)})")
        masks, stored_aus, name = data["masks"], [int(a) for a in data["aus"]], str(data["topology"])
    numbers = [parse_au(a) for a in aus]
    if name != topology.name:
        raise MaskError(f"{path} holds masks for topology {name!r}, not {topology.name!r}")
    if masks.ndim == 2 and masks.shape[1] != topology.num_vertices:
        raise MaskError(
            f"{path} holds masks for {masks.shape[1]} vertices but topology {topology.name!r} has "
            f"{topology.num_vertices}"
        )
    if stored_aus != numbers:
        raise MaskError(f"{path} holds masks for AUs {_labels(stored_aus)}, requested {_labels(numbers)}")
    check_masks(masks, topology, numbers)
    return masks.astype(np.float32)


def _labels(numbers: Sequence[int]) -> str:
    return "[" + ", ".join(au_label(n) for n in numbers) + "]"


def _digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()


def topology_digest(topology: FaceTopology) -> str:
    """Content hash of a topology's template, triangles and landmarks."""
    return _digest(topology.template.tobytes(), topology.triangles.tobytes(), topology.landmarks68.tobytes())


def _ict_digest(model: ICTFaceModel) -> str:
    names = json.dumps(model.expression_names)
    return _digest(topology_digest(model.topology()), names, model.expression_deltas.tobytes())


def _required_ict(method: str, ict_model: ICTFaceModel | None, topology: FaceTopology) -> ICTFaceModel:
    """``ict_model``, checked for mask method ``method`` (``ict`` or ``transfer``), which needs it."""
    if ict_model is None:
        raise MaskError(f"mask method {method!r} needs the ICT-FaceKit model")
    if method == "ict" and ict_model.num_vertices != topology.num_vertices:
        raise MaskError(
            f"the ICT model has {ict_model.num_vertices} vertices but topology {topology.name!r} has "
            f"{topology.num_vertices}; restrict the model to the topology's region first"
        )
    return ict_model


def build_masks(
    topology: FaceTopology,
    aus: Sequence[int | str],
    method: MaskMethod = "landmarks",
    ict_model: ICTFaceModel | None = None,
    cache_dir: str | Path | None = None,
    rings: int = DEFAULT_RINGS,
    threshold: float = DEFAULT_ICT_THRESHOLD,
) -> np.ndarray:
    """Masks ``[K, V]`` for ``topology`` and ``aus`` by ``method``, cached under ``cache_dir``.

    ``ict`` needs ``ict_model`` on the same mesh as ``topology``; ``transfer`` builds the ICT masks on
    ``ict_model``'s mesh and carries them to ``topology``; ``landmarks`` needs only the topology.
    The cache file name is a hash of the topology content, AUs, method, parameters, the ICT model
    content (when used) and :data:`MASKS_VERSION`.
    """
    numbers = [parse_au(a) for a in aus]
    if not numbers:
        raise MaskError("empty AU list")
    if method not in MASK_METHODS:
        raise MaskError(f"unknown mask method {method!r}; choose from {', '.join(MASK_METHODS)}")
    ict = None if method == "landmarks" else _required_ict(method, ict_model, topology)
    key_fields = {
        "version": MASKS_VERSION,
        "topology": topology.name,
        "vertices": topology.num_vertices,
        "mesh": topology_digest(topology),
        "aus": numbers,
        "method": method,
        "rings": rings,
        "threshold": threshold if method != "landmarks" else None,
        "ict": _ict_digest(ict) if ict is not None else None,
    }
    cache_path = None
    if cache_dir is not None:
        key = _digest(json.dumps(key_fields, sort_keys=True))[:20]
        cache_path = Path(cache_dir) / f"masks_{topology.name}_{method}_{key}.npz"
        if cache_path.is_file():
            return load_masks(cache_path, topology, numbers)
    if ict is None:
        masks = masks_from_landmarks(topology, numbers, rings)
    elif method == "ict":
        masks = masks_from_ict(ict, numbers, threshold, rings)
    else:
        ict_masks = masks_from_ict(ict, numbers, threshold, rings)
        masks = transfer_masks(ict.topology(), ict_masks, topology)
    check_masks(masks, topology, numbers)
    if cache_path is not None:
        save_masks(cache_path, masks, numbers, topology.name)
    return masks


def mask_overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Soft intersection over union ``sum(min(a, b)) / sum(max(a, b))`` of two masks."""
    union = float(np.maximum(a, b).sum())
    return float(np.minimum(a, b).sum()) / union if union > 0 else 0.0
