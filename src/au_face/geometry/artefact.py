"""FaceGeometry: what the model needs to know about a face topology, as one content-hashed artefact."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from au_face.errors import AUFaceError
from au_face.faces.topology import FaceTopology
from au_face.geometry.neutral import NeutralEstimator
from au_face.utils.files import atomic_save_npz

#: Version of the ``.npz`` layout written by :meth:`FaceGeometry.save`.
FORMAT_VERSION = 1
#: Two geometries are the same when each float array agrees to this fraction of its largest
#: magnitude (names, shapes and integer arrays exactly). A rebuild on another CPU, BLAS or thread
#: count differs in the last bits of float arithmetic: the default geometry's template by up to
#: 3.3e-6 at magnitude 7.3 (5e-7 of it), in 1093 of its 1404 values, so no rounding before hashing
#: would give one hash on every machine.
RELATIVE_TOLERANCE = 1e-5
_NEUTRAL = ("template", "identity", "expression")


class GeometryError(AUFaceError, ValueError):
    """A geometry file that is missing, damaged, or does not fit a model or dataset."""


@dataclass(frozen=True, eq=False)
class FaceGeometry:
    """Fixed geometry for one topology and AU list, built once (:func:`au_face.geometry.build`).

    Two geometries are equal when their arrays agree within :data:`RELATIVE_TOLERANCE`
    (:meth:`differences`), so a geometry rebuilt on another machine is the same geometry. The
    :attr:`content_hash` of the exact bytes is stored with files and checkpoints and checked on
    reading them: a changed array is detected, however small the change.

    Attributes:
        topology: the mesh. aus: FACS numbers, K of them.
        masks: ``[K,V]`` AU vertex masks in [0,1].
        basis: ``[E,V,3]`` linear expression basis.
        neutral: the estimator of the person's neutral shape S̄ (None: S̄ is the clip mean only).
        recipe: how it was built (informative; not part of the hash).
    """

    topology: FaceTopology
    aus: tuple[int, ...]
    masks: np.ndarray
    basis: np.ndarray
    neutral: NeutralEstimator | None = None
    recipe: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        v = self.topology.num_vertices
        object.__setattr__(self, "aus", tuple(int(a) for a in self.aus))
        object.__setattr__(self, "masks", np.asarray(self.masks, dtype=np.float32))
        object.__setattr__(self, "basis", np.asarray(self.basis, dtype=np.float32))
        if self.masks.shape != (len(self.aus), v):
            raise GeometryError(
                f"masks are {self.masks.shape}, expected ({len(self.aus)}, {v}) for {self.topology.name}"
            )
        if self.basis.ndim != 3 or self.basis.shape[1:] != (v, 3):
            raise GeometryError(f"expression basis is {self.basis.shape}, expected (E, {v}, 3)")
        if self.neutral is not None and self.neutral.num_vertices != v:
            raise GeometryError(f"neutral estimator is for {self.neutral.num_vertices} vertices, expected {v}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FaceGeometry):
            return False
        return other.content_hash == self.content_hash or not self.differences(other)

    def __hash__(self) -> int:
        # equal geometries may differ in their last bits: hash what must match exactly
        return hash((self.topology.name, self.aus, self.basis.shape, self.neutral is not None))

    def differences(self, other: FaceGeometry) -> list[str]:
        """The arrays of :meth:`arrays` in which ``other`` differs from this geometry: a name, shape,
        dtype kind or integer value that is not the same, or a float array whose largest deviation
        exceeds :data:`RELATIVE_TOLERANCE` of its largest magnitude. Empty: the same geometry."""
        mine, theirs = self.arrays(), other.arrays()
        found = [f"{name} (only in one)" for name in sorted(mine.keys() ^ theirs.keys())]
        for name in sorted(mine.keys() & theirs.keys()):
            a, b = mine[name], theirs[name]
            if a.shape != b.shape or a.dtype.kind != b.dtype.kind:
                found.append(f"{name} ({a.dtype}{list(a.shape)} vs {b.dtype}{list(b.shape)})")
            elif a.dtype.kind != "f":
                if not np.array_equal(a, b):
                    found.append(name)
            else:
                a64, b64 = a.astype(np.float64), b.astype(np.float64)
                deviation = float(np.abs(a64 - b64).max(initial=0.0))
                scale = max(float(np.abs(a64).max(initial=0.0)), float(np.abs(b64).max(initial=0.0)))
                if not deviation <= RELATIVE_TOLERANCE * scale:  # also NaN
                    found.append(f"{name} (by {deviation:.3g}, more than {RELATIVE_TOLERANCE:g} x {scale:.3g})")
        return found

    @property
    def expression_dim(self) -> int:
        return int(self.basis.shape[0])

    @property
    def num_vertices(self) -> int:
        return self.topology.num_vertices

    @property
    def vertex_scale(self) -> float:
        """A tenth of the inter-ocular distance (outer eye corners): displacements in these units are O(1)."""
        lm = self.topology.template[self.topology.landmarks68]
        return float(np.linalg.norm(lm[36] - lm[45]) / 10.0)

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array that defines the geometry, by name (what is hashed and saved)."""
        out = {
            "topology": np.array(self.topology.name),
            "template": self.topology.template,
            "triangles": self.topology.triangles,
            "landmarks68": self.topology.landmarks68,
            "aus": np.array(self.aus, dtype=np.int64),
            "masks": self.masks,
            "basis": self.basis,
        }
        if self.neutral is not None:
            out.update({f"neutral_{n}": getattr(self.neutral, n).cpu().numpy() for n in _NEUTRAL})
        return out

    @cached_property
    def content_hash(self) -> str:
        """SHA-256 of the arrays (names, dtypes, shapes, exact bytes): the tamper check stored with
        files and checkpoints. Equal hash, equal geometry; a rebuild on another machine may hash
        differently and still be equal (see :meth:`differences`). Computed once: the geometry is frozen."""
        digest = hashlib.sha256()
        for name, array in sorted(self.arrays().items()):
            array = np.ascontiguousarray(array)
            digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
            digest.update(array.tobytes() if array.dtype.kind != "U" else str(array).encode())
        return digest.hexdigest()

    def describe(self) -> str:
        """One line: topology, size, AUs, basis, neutral estimator and hash."""
        neutral = "with" if self.neutral is not None else "without"
        return (
            f"{self.topology.name} ({self.num_vertices} vertices), {len(self.aus)} AUs, expression basis "
            f"{self.expression_dim}, {neutral} neutral estimator, sha256 {self.content_hash[:12]}"
        )

    # -- files ----------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the geometry and its hash to an ``.npz``, atomically."""
        path = Path(path)
        meta = {"format": FORMAT_VERSION, "hash": self.content_hash, "recipe": self.recipe}
        atomic_save_npz(path, compressed=True, meta=np.array(json.dumps(meta)), **self.arrays())
        return path

    @classmethod
    def load(cls, path: str | Path) -> FaceGeometry:
        """Read a geometry written by :meth:`save`; :class:`GeometryError` if it is missing, not a
        geometry file, or its arrays no longer match the hash stored with them."""
        path = Path(path)
        if not path.is_file():
            raise GeometryError(f"geometry file not found: {path} (write one with `au-face geometry --out {path}`)")
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            meta = json.loads(str(arrays.pop("meta")))
        except Exception as err:  # numpy raises many types for a file that is not an npz
            raise GeometryError(f"{path} is not an au_face geometry file ({type(err).__name__})") from err
        if meta.get("format") != FORMAT_VERSION:
            raise GeometryError(
                f"{path} has geometry format {meta.get('format')!r}; this au_face reads {FORMAT_VERSION}"
            )
        geometry = cls.from_arrays(arrays, meta.get("recipe", {}))
        if geometry.content_hash != meta.get("hash"):
            raise GeometryError(
                f"{path}: its arrays do not match the hash stored with them (the file was changed or damaged)"
            )
        return geometry

    @classmethod
    def from_arrays(cls, arrays: dict[str, Any], recipe: dict[str, Any] | None = None) -> FaceGeometry:
        """The geometry from :meth:`arrays` (numpy arrays or tensors)."""
        a = {k: v.cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v) for k, v in arrays.items()}
        try:
            topology = FaceTopology(str(a["topology"]), a["template"], a["triangles"], a["landmarks68"])
            neutral = None
            if "neutral_template" in a:
                template, identity, expression = (torch.from_numpy(a[f"neutral_{n}"]) for n in _NEUTRAL)
                neutral = NeutralEstimator(template, identity, expression)
            return cls(topology, tuple(a["aus"].tolist()), a["masks"], a["basis"], neutral, dict(recipe or {}))
        except KeyError as err:
            raise GeometryError(f"geometry arrays lack {err.args[0]!r}") from err

    # -- checkpoints ----------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """Tensors and plain values (loadable with ``torch.load(weights_only=True)``)."""
        state: dict[str, Any] = {
            k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in self.arrays().items() if k != "topology"
        }
        state.update(topology=self.topology.name, hash=self.content_hash, recipe=json.dumps(self.recipe))
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> FaceGeometry:
        """The geometry :meth:`to_state` stored (checked against its hash)."""
        arrays = {k: v for k, v in state.items() if k not in ("hash", "recipe")}
        geometry = cls.from_arrays(arrays, json.loads(state.get("recipe") or "{}"))
        if geometry.content_hash != state.get("hash"):
            raise GeometryError("the checkpoint's geometry does not match the hash stored with it")
        return geometry
