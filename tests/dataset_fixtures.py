"""Writers of tiny datasets in the real on-disk layouts of BP4D, DISFA, Aff-Wild2, Multiface and
the generic folder format (see ``au_face.data.labels`` for the format sources)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

#: AUs that DISFA annotates (one ``SNxxx_au<n>.txt`` per AU).
DISFA_ALL_AUS = (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26)
AFFWILD2_HEADER = "AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26"


def _write(path: Path, lines: Sequence[str], bom: bool = False, crlf: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    newline = "\r\n" if crlf else "\n"
    data = newline.join(lines) + newline
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data.encode("utf-8"))
    return path


def write_bp4d_csv(
    path: Path,
    frames: Sequence[int],
    labels: Mapping[int, Sequence[int]],
    max_au: int = 45,
    bom: bool = False,
    crlf: bool = False,
) -> Path:
    """A BP4D ``AU_OCC`` CSV: header ``0,1,2,...,max_au``; AUs not given are 0 (< 40) or 9 (>= 40)."""
    header = ",".join(str(c) for c in range(max_au + 1))
    lines = [header]
    for t, frame in enumerate(frames):
        cells = [str(frame)]
        for au in range(1, max_au + 1):
            default = 9 if au >= 40 else 0
            cells.append(str(labels[au][t]) if au in labels else str(default))
        lines.append(",".join(cells))
    return _write(path, lines, bom=bom, crlf=crlf)


def make_bp4d(
    root: Path,
    subjects: Sequence[str] = ("F001", "M001"),
    tasks: Sequence[str] = ("T1", "T2"),
    num_frames: int = 30,
    first_frame: int = 1,
    seed: int = 0,
) -> Path:
    """``root/AUCoding/AU_OCC/<subject>_<task>.csv`` with random BP4D-12 codes (a few 9s); returns AU_OCC."""
    rng = np.random.default_rng(seed)
    au_occ = root / "AUCoding" / "AU_OCC"
    frames = list(range(first_frame, first_frame + num_frames))
    for subject in subjects:
        for task in tasks:
            labels = {au: rng.integers(0, 2, num_frames).tolist() for au in (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24)}
            labels[23][0] = 9
            write_bp4d_csv(au_occ / f"{subject}_{task}.csv", frames, labels)
    return au_occ


def write_disfa_au(path: Path, intensities: Sequence[float], first_frame: int = 1) -> Path:
    """A DISFA ``SNxxx_au<n>.txt``: ``frame,intensity`` lines, frames from 1."""
    return _write(path, [f"{first_frame + t},{int(v)}" for t, v in enumerate(intensities)])


def make_disfa(root: Path, subjects: Sequence[str] = ("SN001", "SN002"), num_frames: int = 30, seed: int = 0) -> Path:
    """``root/ActionUnit_Labels/<subject>/<subject>_au<n>.txt`` for the 12 DISFA AUs; returns ActionUnit_Labels."""
    rng = np.random.default_rng(seed)
    labels_dir = root / "ActionUnit_Labels"
    for subject in subjects:
        for au in DISFA_ALL_AUS:
            write_disfa_au(labels_dir / subject / f"{subject}_au{au}.txt", rng.integers(0, 6, num_frames))
    return labels_dir


def write_affwild2_txt(path: Path, rows: Sequence[Sequence[int]], header: str = AFFWILD2_HEADER) -> Path:
    """An ABAW AU annotation: the AU header line then one line per video frame."""
    return _write(path, [header] + [",".join(str(v) for v in row) for row in rows])


def make_affwild2(
    root: Path,
    train: Sequence[str] = ("video1", "10-60-1280x720_left"),
    val: Sequence[str] = ("video2",),
    num_frames: int = 30,
    seed: int = 0,
) -> Path:
    """``root/AU_Detection_Challenge/{Train_Set,Validation_Set}/<name>.txt``; the first 2 frames are -1 (no face)."""
    rng = np.random.default_rng(seed)
    au_root = root / "AU_Detection_Challenge"
    for folder, names in (("Train_Set", train), ("Validation_Set", val)):
        for name in names:
            rows = rng.integers(0, 2, (num_frames, 12))
            rows[:2] = -1
            write_affwild2_txt(au_root / folder / f"{name}.txt", rows.tolist())
    return au_root


def write_folder_csv(
    path: Path,
    frames: Sequence[int],
    columns: Mapping[str, Sequence[float | int | str]],
    bom: bool = False,
    crlf: bool = False,
) -> Path:
    """Generic format: ``frame`` then the given columns (AU names such as ``AU01`` or anything else)."""
    lines = [",".join(["frame", *columns])]
    for t, frame in enumerate(frames):
        lines.append(",".join([str(frame), *(str(values[t]) for values in columns.values())]))
    return _write(path, lines, bom=bom, crlf=crlf)


def make_folder_labels(
    root: Path,
    videos: Sequence[str] = ("clip_a", "clip_b", "clip_c"),
    aus: Sequence[str] = ("AU01", "AU06", "AU12"),
    num_frames: int = 30,
    seed: int = 0,
) -> Path:
    """``root/<video>.csv`` files (0-based frames, 0/1 labels, a few -1)."""
    rng = np.random.default_rng(seed)
    for video in videos:
        values = {au: rng.integers(0, 2, num_frames).tolist() for au in aus}
        values[aus[0]][0] = -1
        write_folder_csv(root / f"{video}.csv", range(num_frames), values)
    return root


def make_multiface(
    root: Path,
    meshes: Mapping[str, np.ndarray],
    frames: Sequence[int],
    cameras: Sequence[str] = ("400002",),
    image_size: tuple[int, int] = (48, 32),
    seed: int = 0,
) -> Path:
    """A Multiface capture folder (``m--<date>--<time>--<id>--GHS``): per segment, tracked meshes
    ``meshes[segment][t]`` as ``.bin``/``.obj``, head poses, camera images; plus ``KRT`` and
    ``frame_list.txt`` (layout of facebookresearch/multiface DATA_STRUCTURE.md)."""
    rng = np.random.default_rng(seed)
    capture = root / "m--20180227--0000--6795937--GHS"
    frame_list = []
    for segment, vertices in meshes.items():
        mesh_dir = capture / "tracked_mesh" / segment
        mesh_dir.mkdir(parents=True, exist_ok=True)
        triangles = np.array([[i, i + 1, i + 2] for i in range(vertices.shape[1] - 2)]) + 1
        for t, frame in enumerate(frames):
            name = f"{frame:06d}"
            frame_list.append(f"{segment} {name}")
            vertices[t].astype(np.float32).tofile(mesh_dir / f"{name}.bin")
            obj = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in vertices[t]] + ["vt 0.5 0.5"]
            _write(mesh_dir / f"{name}.obj", obj + ["f " + " ".join(f"{i}/1" for i in tri) for tri in triangles])
            pose = np.hstack([np.eye(3), [[1.0], [2.0], [900.0]]])
            _write(mesh_dir / f"{name}_transform.txt", [" ".join(f"{v:.8f}" for v in row) for row in pose])
            for camera in cameras:
                image_dir = capture / "images" / segment / camera
                image_dir.mkdir(parents=True, exist_ok=True)
                image = rng.integers(0, 255, (image_size[1], image_size[0], 3), dtype=np.uint8)
                cv2.imwrite(str(image_dir / f"{name}.png"), image)
    krt = []
    for camera in cameras:
        krt += [camera, "1000 0 24", "0 1000 16", "0 0 1", "0 0 0 0 0", "1 0 0 0", "0 1 0 0", "0 0 1 0", ""]
    _write(capture / "KRT", krt)
    _write(capture / "frame_list.txt", frame_list)
    return capture


def write_coarse_cache(
    cache_dir: Path,
    base: Path,
    videos: Sequence[Path],
    num_frames: int | Sequence[int],
    reconstructor: str = "mediapipe",
    crop_size: int = 16,
    seed: int = 0,
    vertices: Sequence[np.ndarray] | None = None,
    appearance: bool = False,
) -> list[Path]:
    """Cache entries (as ``au-face preprocess`` leaves them) for ``videos`` in the MediaPipe topology;
    with ``appearance``, random appearance descriptors in a cache of that version (``--appearance``).

    Missing video files are created as placeholders (the cache keys on path, size and mtime only).
    Meshes are ``vertices[i]`` if given, else the MediaPipe template plus a random smooth drift;
    the last frame of each video is invalid.
    """
    import torch

    from au_face.coarse.base import CoarseFrames
    from au_face.coarse.registry import reconstructor_version
    from au_face.data.cache import CoarseCache
    from au_face.faces.appearance import DESCRIPTOR_SIZE
    from au_face.faces.mediapipe import mediapipe_topology

    rng = np.random.default_rng(seed)
    template = mediapipe_topology().template.astype(np.float32)
    cache = CoarseCache(cache_dir, reconstructor, reconstructor_version(reconstructor), base, appearance=appearance)
    counts = [num_frames] * len(videos) if isinstance(num_frames, int) else list(num_frames)
    paths = []
    for i, (video, n) in enumerate(zip(videos, counts)):
        video = Path(video)
        if not video.exists():
            video.parent.mkdir(parents=True, exist_ok=True)
            video.write_bytes(b"placeholder video " + video.name.encode())
        if vertices is not None:
            mesh = np.array(vertices[i], dtype=np.float32)
        else:
            drift = np.cumsum(rng.normal(scale=0.02, size=(n, 1, 3)), axis=0).astype(np.float32)
            mesh = template[None] + drift + rng.normal(scale=0.01, size=(n, *template.shape)).astype(np.float32)
        valid = np.ones(n, dtype=bool)
        valid[-1] = False
        mesh[~valid] = 0.0
        crops = torch.from_numpy(rng.integers(0, 255, (n, crop_size, crop_size, 3), dtype=np.uint8))
        descriptors = None
        if appearance:
            descriptors = torch.from_numpy(rng.random((n, DESCRIPTOR_SIZE), dtype=np.float32) * valid[:, None])
        frames = CoarseFrames.from_canonical(
            torch.from_numpy(mesh),
            torch.from_numpy(valid),
            fps=25.0,
            topology="mediapipe",
            crops=crops,
            appearance=descriptors,
        )
        path = cache.prepare(video)
        frames.save(path)
        cache.record(video, "done", n, int(valid.sum()))
        paths.append(path)
    return paths


def tiny_geometry(cache_dir: Path, aus: str | Sequence[str] = "bp4d", topology: str = "mediapipe"):
    """A small geometry that needs no ICT model: landmark masks and an 8-mode PCA basis of the cache."""
    from au_face.geometry import GeometrySpec

    return GeometrySpec(
        topology=topology, aus=aus if isinstance(aus, str) else list(aus), masks="landmarks", basis="pca",
        expression_dim=8, pca_meshes=str(cache_dir), neutral=False,
    )  # fmt: skip


def face_geometry(aus: Sequence[int], expression_dim: int = 4, seed: int = 0):
    """A FaceGeometry on MediaPipe's mesh built in memory: landmark masks, a random orthonormal basis."""
    from au_face.faces.mediapipe import mediapipe_topology
    from au_face.geometry import FaceGeometry
    from au_face.geometry.masks import build_masks

    topology = mediapipe_topology()
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((topology.num_vertices * 3, expression_dim)))
    basis = q.T.reshape(expression_dim, topology.num_vertices, 3).astype(np.float32)
    return FaceGeometry(topology, tuple(aus), build_masks(topology, list(aus), "landmarks"), basis)


def open_mouth(template: np.ndarray, landmarks68: np.ndarray, parting: float) -> np.ndarray:
    """``template [V,3]`` with the lower inner-lip midpoint moved so that gap / width is ``parting``."""
    v = template.astype(np.float64).copy()
    corner_a, corner_b, upper, lower = landmarks68[[60, 64, 62, 66]]
    width = np.linalg.norm(v[corner_a] - v[corner_b])
    down = np.array([0.0, -1.0 if v[upper, 1] > v[lower, 1] else 1.0, 0.0])
    v[lower] = v[upper] + down * parting * width
    return v
