"""Mesh output formats: NPZ mesh sequences and per-frame OBJ/PLY meshes.

Every writer is atomic: data goes to a temporary file beside the target and is renamed onto
the final name only when complete, so an interrupted run never leaves a half-written file.
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np

from au_face.errors import AUFaceError
from au_face.utils.files import AtomicStreamWriter, atomic_path, publish, temporary_sibling

MESH_FORMATS = ("obj", "ply")
#: Arrays every mesh-sequence npz holds.
MESH_SEQUENCE_KEYS = ("vertices", "triangles", "valid", "timestamps")


class MeshIOError(AUFaceError, ValueError):
    """Raised for malformed mesh data or a file that is not in the expected format."""


# --------------------------------------------------------------------------- npz sequences


class NpzStreamWriter(AtomicStreamWriter):
    """Write an ``.npz`` whose large arrays arrive in chunks along their first axis.

    Arrays are written one after another (a zip archive has one open member at a time);
    memory use is one chunk, whatever the array length. The archive is renamed onto
    ``path`` by :meth:`close`; :meth:`abort` (or an exception inside ``with``) discards it.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = temporary_sibling(self.path)
        self._zip: zipfile.ZipFile | None = zipfile.ZipFile(self._tmp, "w", allowZip64=True)
        self._names: set[str] = set()

    def add(self, name: str, array: np.ndarray) -> None:
        """Write a whole array."""
        array = np.asarray(array, order="C")
        self.add_chunks(name, array.shape, array.dtype, [array])

    def add_chunks(self, name: str, shape: Sequence[int], dtype: np.dtype | type, chunks: Iterable[np.ndarray]) -> None:
        """Write an array of ``shape`` given as consecutive chunks along axis 0."""
        if self._zip is None:
            raise MeshIOError(f"{self.path}: writer is closed")
        if name in self._names:
            raise MeshIOError(f"{self.path}: array {name!r} written twice")
        self._names.add(name)
        dtype = np.dtype(dtype)
        shape = tuple(int(s) for s in shape)
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
        expected = math.prod(shape) * dtype.itemsize
        written = 0
        with self._zip.open(f"{name}.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_2_0(member, header)
            for chunk in chunks:
                chunk = np.asarray(chunk, dtype=dtype, order="C")
                if chunk.shape[1:] != shape[1:]:
                    raise MeshIOError(f"{name}: chunk of shape {chunk.shape} does not fit {shape}")
                member.write(chunk.tobytes())
                written += chunk.nbytes
        if written != expected:
            raise MeshIOError(f"{name}: got {written} bytes of data, shape {shape} needs {expected}")

    def close(self) -> None:
        """Finish the archive and rename it onto the final path."""
        if self._zip is None:
            return
        self._zip.close()
        self._zip = None
        publish(self._tmp, self.path)

    def abort(self) -> None:
        """Discard everything written so far."""
        if self._zip is not None:
            self._zip.close()
            self._zip = None
        self._tmp.unlink(missing_ok=True)


@dataclass
class MeshSequence:
    """A mesh sequence read back from an npz.

    Attributes:
        vertices: ``[T,V,3]`` float32; triangles: ``[F,3]`` int64; valid: ``[T]`` bool;
        timestamps: ``[T]`` float64 seconds; extra: every other array in the file by name.
    """

    vertices: np.ndarray
    triangles: np.ndarray
    valid: np.ndarray
    timestamps: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.vertices.shape[0])


def check_mesh_sequence(vertices: np.ndarray, triangles: np.ndarray, valid: np.ndarray, timestamps: np.ndarray) -> None:
    """Raise :class:`MeshIOError` unless the four arrays describe one consistent sequence."""
    if vertices.ndim != 3 or vertices.shape[2] != 3:
        raise MeshIOError(f"vertices must be [T,V,3], got {vertices.shape}")
    if triangles.ndim != 2 or triangles.shape[1] != 3:
        raise MeshIOError(f"triangles must be [F,3], got {triangles.shape}")
    if triangles.size and (triangles.min() < 0 or triangles.max() >= vertices.shape[1]):
        raise MeshIOError(f"triangle ids outside [0, {vertices.shape[1]})")
    n = vertices.shape[0]
    if valid.shape != (n,) or timestamps.shape != (n,):
        raise MeshIOError(f"valid {valid.shape} and timestamps {timestamps.shape} must both be [{n}]")


def save_mesh_sequence_npz(
    path: str | Path,
    vertices: np.ndarray,
    triangles: np.ndarray,
    valid: np.ndarray,
    timestamps: np.ndarray,
    **extra: np.ndarray,
) -> None:
    """Save a mesh sequence (plus any ``extra`` arrays, e.g. pose or AU probabilities) atomically."""
    vertices = np.asarray(vertices, dtype=np.float32)
    triangles = np.asarray(triangles, dtype=np.int64)
    valid = np.asarray(valid, dtype=bool)
    timestamps = np.asarray(timestamps, dtype=np.float64)
    check_mesh_sequence(vertices, triangles, valid, timestamps)
    clash = sorted(set(extra) & set(MESH_SEQUENCE_KEYS))
    if clash:
        raise MeshIOError(f"extra arrays may not reuse the names {clash}")
    with NpzStreamWriter(path) as writer:
        for name, array in (
            ("vertices", vertices),
            ("triangles", triangles),
            ("valid", valid),
            ("timestamps", timestamps),
        ):
            writer.add(name, array)
        for name, array in extra.items():
            writer.add(name, np.asarray(array))


def load_mesh_sequence_npz(path: str | Path) -> MeshSequence:
    """Read a file written by :func:`save_mesh_sequence_npz` (or ``au-face reconstruct``)."""
    path = Path(path)
    if not path.is_file():
        raise MeshIOError(f"mesh-sequence file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise MeshIOError(f"{path} is not a readable npz: {err}") from err
    missing = [k for k in MESH_SEQUENCE_KEYS if k not in arrays]
    if missing:
        raise MeshIOError(f"{path} is not a mesh-sequence file: missing {missing}")
    vertices, triangles, valid, timestamps = (arrays.pop(k) for k in MESH_SEQUENCE_KEYS)
    seq = MeshSequence(vertices, triangles, valid, timestamps, extra=arrays)
    check_mesh_sequence(seq.vertices, seq.triangles, seq.valid, seq.timestamps)
    return seq


# --------------------------------------------------------------------------- per-frame meshes


def frame_mesh_path(directory: str | Path, frame: int, fmt: str) -> Path:
    """``directory/frame_000123.obj`` for frame number 123."""
    return Path(directory) / f"frame_{frame:06d}.{fmt}"


def write_frame_meshes(
    directory: str | Path,
    vertices: np.ndarray,
    triangles: np.ndarray,
    fmt: str = "obj",
    valid: np.ndarray | None = None,
    frames: Sequence[int] | None = None,
    names: Sequence[str] | None = None,
) -> list[Path]:
    """Write one mesh file per valid frame (``frame_000001.obj``...); return the paths written.

    ``frames`` are the numbers used in the file names (default ``1..T``, matching the AU CSV);
    ``names`` replace them (``<name>.obj``, e.g. a photo's file name).
    All vertices are kept (no merging), so every file has exactly ``V`` vertices; read them
    back with ``trimesh.load(path, process=False, maintain_order=True)``.
    """
    import trimesh

    if fmt not in MESH_FORMATS:
        raise MeshIOError(f"unknown mesh format {fmt!r}; choose from {', '.join(MESH_FORMATS)}")
    vertices = np.asarray(vertices, dtype=np.float64)
    triangles = np.asarray(triangles, dtype=np.int64)
    n = len(vertices)
    valid = np.ones(n, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    frames = list(range(1, n + 1)) if frames is None else [int(f) for f in frames]
    check_mesh_sequence(vertices, triangles, valid, np.zeros(n))
    if len(frames) != n or (names is not None and len(names) != n):
        raise MeshIOError(f"{len(frames)} frame numbers and {len(names or frames)} names for {n} frames")
    written = []
    for t in np.flatnonzero(valid):
        mesh = trimesh.Trimesh(vertices=vertices[t], faces=triangles, process=False)
        target = frame_mesh_path(directory, frames[t], fmt) if names is None else Path(directory) / f"{names[t]}.{fmt}"
        with atomic_path(target) as tmp:
            # trimesh's export returns text for OBJ and bytes for (binary) PLY
            if fmt == "obj":
                tmp.write_text(cast(str, mesh.export(file_type="obj", include_normals=False, include_texture=False)))
            else:
                tmp.write_bytes(cast(bytes, mesh.export(file_type="ply")))
        written.append(target)
    return written
