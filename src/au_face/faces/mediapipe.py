"""The 468-vertex MediaPipe Face Mesh topology: triangles, a neutral template, iBUG-68 landmarks.

* Triangles come from mediapipe's ``FACEMESH_TESSELATION`` edge set: every 3-clique of the edge
  graph that is a face of the surface (852 triangles: the canonical mesh's 898 less the 46 that
  close the eyes and the mouth, which the tesselation leaves open), oriented consistently with
  normals towards the viewer.
* The mediapipe wheel does not ship its canonical face model, so the template is measured: Face
  Mesh is run on the frontal portrait of Grace Hopper that matplotlib ships as sample data,
  then made exactly left/right symmetric, put upright (forehead top straight above the chin) and
  scaled so the outer eye corners are :data:`EYE_CORNER_DISTANCE_CM` apart. Axes: x to the
  viewer's right (the subject's left), y up, z towards the viewer; units about centimetres.
  The result is cached in the user cache folder.
"""

from __future__ import annotations

import functools
import warnings
import zipfile
import zlib
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

import cv2
import numpy as np

from au_face.errors import AUFaceError
from au_face.faces.topology import FaceTopology, TopologyError
from au_face.utils.files import user_cache_dir
from au_face.utils.lazy import defer_import

NUM_VERTICES = 468
#: Bump when the template derivation changes (it is part of the cache file name).
TEMPLATE_VERSION = 1
#: Distance between the outer eye corners (vertices 33 and 263) of the template, in cm.
EYE_CORNER_DISTANCE_CM = 9.0

#: iBUG-68 landmark ``i`` -> MediaPipe vertex. au_face's own table: jaw points evenly spaced by
#: arc length along the face contour from the ear-level vertex to the chin; eyelid points at
#: thirds of the lid contour; lip points at the philtrum columns and halfway to the corners.
IBUG68_TO_MEDIAPIPE = np.array(
    [
        # jaw 0-16, from the subject's right ear to the left ear over the chin
        127,
        234,
        132,
        58,
        172,
        150,
        149,
        148,
        152,
        377,
        378,
        379,
        397,
        288,
        361,
        454,
        356,
        # right brow 17-21 (outer to inner), left brow 22-26 (inner to outer)
        70,
        63,
        105,
        66,
        107,
        336,
        296,
        334,
        293,
        300,
        # nose bridge 27-30 (top to tip), nostril base 31-35 (right to left)
        168,
        197,
        5,
        4,
        98,
        97,
        2,
        326,
        327,
        # right eye 36-41, left eye 42-47 (clockwise in the image from the leftmost corner)
        33,
        160,
        158,
        133,
        153,
        144,
        362,
        385,
        387,
        263,
        373,
        380,
        # outer lips 48-59 (right corner, upper lip, left corner, lower lip)
        61,
        39,
        37,
        0,
        267,
        269,
        291,
        405,
        314,
        17,
        84,
        181,
        # inner lips 60-67
        78,
        81,
        13,
        311,
        308,
        402,
        14,
        178,
    ],
    dtype=np.int64,
)

#: Vertices that barely move with expressions, the rigid pose is fitted to these: the nose bridge
#: and tip, the eye corners and the temples. The forehead and the midline points 10, 151 and 9 are
#: left out on purpose: they move with the brows, so fitting to them cancels most brow motion
#: (AU1/2/4 kept 20-26 % of their displacement with them, 42-57 % without; benchmarks/RESULTS.md).
STABLE_VERTICES = np.array(
    [
        168,
        6,
        197,
        195,
        5,
        4,  # nose bridge to tip
        33,
        263,
        133,
        362,  # eye corners
        127,
        356,
        234,
        454,
        21,
        251,  # temples
    ],
    dtype=np.int64,
)


class MediaPipeUnavailableError(AUFaceError, ImportError):
    """mediapipe (an optional dependency) is not installed or lacks the legacy Face Mesh."""


def import_mediapipe() -> ModuleType:
    """``mediapipe`` (ImportError without it), imported without matplotlib's pyplot, which its drawing
    utilities import for a plot au_face never draws (0.6 s of CPU at every start): pyplot is imported
    on first use (:func:`~au_face.utils.lazy.defer_import`)."""
    defer_import("matplotlib.pyplot")
    import mediapipe

    return mediapipe


def require_face_mesh() -> ModuleType:
    """mediapipe's legacy ``face_mesh`` solution module, or a clear error."""
    try:
        import_mediapipe()
        from mediapipe.python.solutions import face_mesh
    except ImportError as err:
        raise MediaPipeUnavailableError(
            "the MediaPipe face mesh needs mediapipe with its legacy solutions API: "
            "pip install 'au_face[mediapipe]' (mediapipe==0.10.21)"
        ) from err
    return face_mesh


def tesselation_edges() -> frozenset[tuple[int, int]]:
    """mediapipe's ``FACEMESH_TESSELATION`` (directed vertex pairs)."""
    require_face_mesh()
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_TESSELATION

    return FACEMESH_TESSELATION


def triangles_from_edges(edges: Iterable[tuple[int, int]], num_vertices: int) -> np.ndarray:
    """The faces ``[F,3]`` of a triangulated surface given only its edges, consistently oriented.

    Faces are the 3-cliques of the edge graph, except a 3-clique that is exactly the
    neighbourhood of a valence-3 vertex: that vertex sits inside it, so it is not a face.
    """
    neighbours: dict[int, set[int]] = defaultdict(set)
    for a, b in edges:
        if a != b:
            neighbours[a].add(b)
            neighbours[b].add(a)
    if neighbours and max(neighbours) >= num_vertices:
        raise TopologyError(f"edges refer to vertex {max(neighbours)}, only {num_vertices} exist")
    cliques = {
        tuple(sorted((a, b, c)))
        for a in neighbours
        for b in neighbours[a]
        if a < b
        for c in neighbours[a] & neighbours[b]
    }
    enclosing = {tuple(sorted(n)) for n in neighbours.values() if len(n) == 3}
    faces = sorted(cliques - enclosing)
    return orient_consistently(np.array(faces, dtype=np.int64).reshape(-1, 3))


def orient_consistently(triangles: np.ndarray) -> np.ndarray:
    """Flip triangles so that neighbours traverse their shared edge in opposite directions."""
    tris = [list(t) for t in triangles]
    by_edge: dict[tuple[int, int], list[int]] = defaultdict(list)
    for f, t in enumerate(tris):
        for i in range(3):
            by_edge[tuple(sorted((t[i], t[(i + 1) % 3])))].append(f)
    if any(len(fs) > 2 for fs in by_edge.values()):
        raise TopologyError("an edge is shared by more than two triangles: not a manifold surface")
    done = np.zeros(len(tris), dtype=bool)
    for seed in range(len(tris)):
        if done[seed]:
            continue
        done[seed] = True
        stack = [seed]
        while stack:
            f = stack.pop()
            t = tris[f]
            for i in range(3):
                a, b = t[i], t[(i + 1) % 3]
                for g in by_edge[tuple(sorted((a, b)))]:
                    if done[g]:
                        continue
                    u = tris[g]
                    if any(u[j] == a and u[(j + 1) % 3] == b for j in range(3)):
                        tris[g] = [u[0], u[2], u[1]]  # same direction as f: flip
                    done[g] = True
                    stack.append(g)
    return np.array(tris, dtype=np.int64).reshape(-1, 3)


def face_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Unnormalised face normals ``[F,3]`` (right-hand rule)."""
    v = vertices[triangles]
    return np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])


def template_photo() -> np.ndarray:
    """The frontal portrait (Grace Hopper, public domain) that matplotlib ships, RGB uint8."""
    from matplotlib import cbook

    buffer = np.frombuffer(
        Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).read_bytes(), dtype=np.uint8
    )
    return cv2.cvtColor(cv2.imdecode(buffer, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


#: One ``NormalizedLandmark`` as MediaPipe serialises it inside a ``NormalizedLandmarkList``: the
#: list's field tag and length, then x, y and z as tagged little-endian float32 (17 bytes).
_LANDMARK_RECORD = np.dtype(
    [
        ("list_tag", "u1"),
        ("size", "u1"),
        ("x_tag", "u1"),
        ("x", "<f4"),
        ("y_tag", "u1"),
        ("y", "<f4"),
        ("z_tag", "u1"),
        ("z", "<f4"),
    ]
)
_LANDMARK_TAGS = {"list_tag": 0x0A, "size": 15, "x_tag": 0x0D, "y_tag": 0x15, "z_tag": 0x1D}


def landmark_points(landmarks: Any) -> np.ndarray:
    """``[N,3]`` float64 (x, y, z) of a MediaPipe ``NormalizedLandmarkList`` protobuf, as read one
    landmark at a time but about 13x faster (0.05 vs 0.6 ms for 468 points): its serialised bytes are
    read as records of :data:`_LANDMARK_RECORD`; any other layout (an unset or extra field) is read
    landmark by landmark."""
    raw = landmarks.SerializeToString()
    if len(raw) % _LANDMARK_RECORD.itemsize == 0:
        records = np.frombuffer(raw, dtype=_LANDMARK_RECORD)
        if all((records[name] == tag).all() for name, tag in _LANDMARK_TAGS.items()):
            return np.stack([records["x"], records["y"], records["z"]], axis=1).astype(np.float64)
    return np.array([(p.x, p.y, p.z) for p in landmarks.landmark], dtype=np.float64).reshape(-1, 3)


def detect_points(image: np.ndarray) -> np.ndarray:
    """Face Mesh on one still RGB image: ``[468,3]`` points (x, y, depth) in pixels."""
    face_mesh = require_face_mesh()
    with face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=False) as mesh:
        result = mesh.process(np.ascontiguousarray(image))
    if not result.multi_face_landmarks:
        raise TopologyError("MediaPipe found no face in the template photo")
    h, w = image.shape[:2]
    return landmark_points(result.multi_face_landmarks[0])[:NUM_VERTICES] * np.array([w, h, w])


def mirror_map(points: np.ndarray, iterations: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Left/right vertex correspondence of a face and its symmetric version.

    Alternates: match every vertex to its mirror image (x -> -x) by optimal assignment, average
    the shape with its mirrored copy (exactly symmetric about x = 0), and move the shape rigidly
    onto that average. Returns the involution ``mirror`` ``[V]`` and the symmetric shape ``[V,3]``.
    """
    from scipy.optimize import linear_sum_assignment  # only when the template is measured (then cached)

    flip = np.array([-1.0, 1.0, 1.0])
    x = points - points.mean(axis=0)
    mirror = np.arange(len(x))
    for _ in range(iterations):
        cost = ((x[:, None, :] - (x * flip)[None, :, :]) ** 2).sum(-1)
        new_mirror = linear_sum_assignment(cost)[1]
        symmetric = 0.5 * (x + (x * flip)[new_mirror])
        rotation, translation = _rigid_fit(x, symmetric)
        x = x @ rotation.T + translation
        if np.array_equal(new_mirror, mirror):
            break
        mirror = new_mirror
    if not np.array_equal(mirror[mirror], np.arange(len(mirror))):
        raise TopologyError("left/right vertex matching is not symmetric")
    return mirror, 0.5 * (x + (x * flip)[mirror])


def _rigid_fit(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation and translation minimising ``|R source + t - target|``."""
    cs, ct = source.mean(axis=0), target.mean(axis=0)
    u, _, vt = np.linalg.svd((target - ct).T @ (source - cs))
    d = np.sign(np.linalg.det(u @ vt))
    rotation = u @ np.diag([1.0, 1.0, d]) @ vt
    return rotation, ct - rotation @ cs


def template_from_points(points: np.ndarray) -> np.ndarray:
    """A symmetric, upright, centred template in cm from Face Mesh pixel points ``[468,3]``."""
    # image axes (x right, y down, depth away from the camera) -> x right, y up, z to the viewer
    _, shape = mirror_map(points * np.array([1.0, -1.0, -1.0]))
    up = shape[10] - shape[152]  # chin to forehead top, on the symmetry plane
    angle = np.arctan2(up[2], up[1])
    c, s = np.cos(angle), np.sin(angle)
    shape = shape @ np.array([[1.0, 0.0, 0.0], [0.0, c, s], [0.0, -s, c]]).T
    shape -= shape.mean(axis=0)
    shape *= EYE_CORNER_DISTANCE_CM / np.linalg.norm(shape[33] - shape[263])
    return shape.astype(np.float32)


def build_mediapipe_topology() -> FaceTopology:
    """Derive the topology from the installed mediapipe (no cache)."""
    triangles = triangles_from_edges(tesselation_edges(), NUM_VERTICES)
    template = template_from_points(detect_points(template_photo()))
    if (face_normals(template, triangles)[:, 2] < 0).mean() > 0.5:
        triangles = triangles[:, [0, 2, 1]]
    return FaceTopology("mediapipe", template, triangles, IBUG68_TO_MEDIAPIPE)


def _cache_file(cache_dir: Path) -> Path:
    return cache_dir / f"mediapipe_topology_v{TEMPLATE_VERSION}_mp{import_mediapipe().__version__}.npz"


@functools.lru_cache(maxsize=4)
def _cached_topology(cache_dir: Path) -> FaceTopology:
    require_face_mesh()
    path = _cache_file(cache_dir)
    if path.is_file():
        try:
            topology = FaceTopology.load(path)
            if topology.num_vertices == NUM_VERTICES and np.array_equal(topology.landmarks68, IBUG68_TO_MEDIAPIPE):
                return topology
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error, TopologyError) as err:
            warnings.warn(f"{path} is damaged ({type(err).__name__}); rebuilding it", stacklevel=2)
    topology = build_mediapipe_topology()
    topology.save(path)
    return topology


def mediapipe_topology(cache_dir: str | Path | None = None) -> FaceTopology:
    """The MediaPipe Face Mesh topology, derived once and cached (``$AU_FACE_CACHE`` or ``~/.cache/au_face``)."""
    folder = Path(cache_dir).expanduser().resolve() if cache_dir is not None else user_cache_dir()
    return _cached_topology(folder)


def to_pose_frame(meshes: np.ndarray, neutral: np.ndarray) -> np.ndarray:
    """Meshes ``[..., 468, 3]`` of one person in the frame MediaPipe's pose removal gives: the
    similarity that fits ``neutral``'s :data:`STABLE_VERTICES` to the template's, applied to all
    of them (one transform, so expressions keep their motion)."""
    from au_face.faces.align import similarity_fit

    template = mediapipe_topology().template.astype(np.float64)
    s, r, t = similarity_fit(template[STABLE_VERTICES], np.asarray(neutral, dtype=np.float64)[None, STABLE_VERTICES])
    return ((np.asarray(meshes, dtype=np.float64) - t[0]) @ r[0] / s[0]).astype(np.float32)
