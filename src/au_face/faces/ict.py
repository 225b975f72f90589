"""ICT-FaceKit morphable face model (MIT licence, USC ICT Vision and Graphics Lab).

Reads either the original ``FaceXModel`` folder of OBJ files or the converted npz
(``ict_facekit_light_neutral_expr57_id50.npz``). Both give the same arrays.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from au_face.aus import au_label, parse_au
from au_face.errors import AUFaceError
from au_face.faces.topology import FaceTopology

ICT_SOURCE = "ICT-FaceKit (https://github.com/ICT-VGL/ICT-FaceKit, MIT licence)"

#: Vertex ranges of the ICT topology (from the ICT-FaceKit README).
ICT_REGIONS: dict[str, tuple[int, int]] = {
    "narrow": (0, 6706),  # narrow face area
    "face": (0, 9409),  # full face area
    "full": (0, 26719),  # whole head with eyes, teeth, mouth socket
}

#: FACS AU -> ICT expression shapes, the official table of ICT-FaceKit's
#: ``README_expression_shapes_FACS_mapping.md`` (AU30 is split there into left/right; we use both).
ICT_FACS_TABLE: dict[int, tuple[str, ...]] = {
    1: ("browInnerUp_L", "browInnerUp_R"),
    2: ("browOuterUp_L", "browOuterUp_R"),
    4: ("browDown_L", "browDown_R"),
    5: ("eyeWide_L", "eyeWide_R"),
    6: ("cheekSquint_L", "cheekSquint_R"),
    7: ("eyeSquint_L", "eyeSquint_R"),
    9: ("noseSneer_L", "noseSneer_R"),
    10: ("mouthShrugUpper",),
    11: ("mouthUpperUp_L", "mouthUpperUp_R"),
    12: ("mouthSmile_L", "mouthSmile_R"),
    14: ("mouthDimple_L", "mouthDimple_R"),
    15: ("mouthFrown_L", "mouthFrown_R"),
    16: ("mouthLowerDown_L", "mouthLowerDown_R"),
    17: ("mouthShrugLower",),
    18: ("mouthPucker",),
    20: ("mouthStretch_L", "mouthStretch_R"),
    22: ("mouthFunnel",),
    24: ("mouthPress_L", "mouthPress_R"),
    27: ("jawOpen",),
    28: ("mouthRollLower", "mouthRollUpper"),
    29: ("jawForward",),
    30: ("jawLeft", "jawRight"),
    33: ("cheekPuff_L", "cheekPuff_R"),
    45: ("eyeBlink_L", "eyeBlink_R"),
    61: ("eyeLookOut_L", "eyeLookIn_R"),
    62: ("eyeLookOut_R", "eyeLookIn_L"),
    63: ("eyeLookUp_L", "eyeLookUp_R"),
    64: ("eyeLookDown_L", "eyeLookDown_R"),
}

#: au_face's approximations for benchmark AUs the official table leaves out, as
#: shape -> weight at full activation. Documented in docs/architecture.md.
ICT_FACS_EXTENSION: dict[int, dict[str, float]] = {
    23: {"mouthRollLower": 0.35, "mouthRollUpper": 0.35, "mouthFunnel": 0.2},  # lip tightener: narrowed red lips
    25: {"mouthLowerDown_L": 0.5, "mouthLowerDown_R": 0.5, "jawOpen": 0.1},  # lips part
    26: {"jawOpen": 0.5},  # jaw drop (AU27 is the full jawOpen)
}


class ICTAssetError(AUFaceError, FileNotFoundError):
    """Raised when ICT-FaceKit files are missing or malformed."""


def ict_blendshape_weights(au: int | str) -> dict[str, float]:
    """ICT expression-shape weights that produce ``au`` at full activation."""
    number = parse_au(au)
    if number in ICT_FACS_TABLE:
        return {name: 1.0 for name in ICT_FACS_TABLE[number]}
    if number in ICT_FACS_EXTENSION:
        return dict(ICT_FACS_EXTENSION[number])
    raise KeyError(f"{au_label(number)} has no ICT expression shape mapping")


def has_ict_shapes(au: int | str) -> bool:
    """Whether ``au`` has an ICT expression-shape mapping (official table or au_face's extension)."""
    return parse_au(au) in ICT_FACS_TABLE or parse_au(au) in ICT_FACS_EXTENSION


@dataclass(frozen=True)
class ICTFaceModel:
    """Linear ICT face model: ``S = neutral + sum_i a_i id_i + sum_j w_j expr_j``."""

    neutral: np.ndarray  # [V,3] float32, centimetres
    triangles: np.ndarray  # [F,3] int64
    landmarks68: np.ndarray  # [68] int64 (Multi-PIE / iBUG-68 order)
    expression_names: tuple[str, ...]
    expression_deltas: np.ndarray  # [E,V,3]
    identity_deltas: np.ndarray  # [I,V,3]

    @classmethod
    def load(cls, path: str | Path, **folder_kwargs) -> ICTFaceModel:
        """Load from the converted npz or from an original ``FaceXModel`` folder."""
        path = Path(path)
        if path.is_dir():
            return cls.from_folder(path, **folder_kwargs)
        return cls.from_npz(path)

    @classmethod
    def from_npz(cls, path: str | Path) -> ICTFaceModel:
        """Read ``ict_facekit_light_neutral_expr57_id50.npz`` (or a file of the same layout)."""
        path = Path(path)
        if not path.is_file():
            raise ICTAssetError(
                f"ICT-FaceKit npz not found: {path}. It is the converted ICT face model "
                f"(neutral, triangles, expression/identity deltas) from {ICT_SOURCE}."
            )
        keys = (
            "neutral",
            "triangles",
            "expression_names",
            "expression_deltas",
            "identity_deltas",
            "landmarks68_multipie",
        )
        try:
            with np.load(path) as z:
                missing = [k for k in keys if k not in z.files]
                if missing:
                    raise ICTAssetError(f"{path} is not an ICT-FaceKit npz: missing arrays {missing}")
                arrays = {k: z[k] for k in keys}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:  # truncated or damaged
            raise ICTAssetError(f"{path} is not a readable npz file (truncated or damaged?): {err}") from err
        return cls(
            neutral=arrays["neutral"].astype(np.float32),
            triangles=arrays["triangles"].astype(np.int64),
            landmarks68=arrays["landmarks68_multipie"].astype(np.int64),
            expression_names=tuple(str(n) for n in arrays["expression_names"]),
            expression_deltas=arrays["expression_deltas"].astype(np.float32),
            identity_deltas=arrays["identity_deltas"].astype(np.float32),
        )

    @classmethod
    def from_folder(
        cls,
        folder: str | Path,
        expressions: Sequence[str] | None = None,
        num_identities: int | None = None,
    ) -> ICTFaceModel:
        """Read the original ``FaceXModel`` folder.

        Args:
            folder: contains ``generic_neutral_mesh.obj``, ``vertex_indices.json``, one OBJ per
                expression shape and ``identityNNN.obj`` PCA modes.
            expressions: shape names to read; default all listed in ``vertex_indices.json``.
            num_identities: identity modes to read; default all ``identity*.obj`` present.
        """
        folder = Path(folder)
        neutral_path = folder / "generic_neutral_mesh.obj"
        index_path = folder / "vertex_indices.json"
        for required in (neutral_path, index_path):
            if not required.is_file():
                raise ICTAssetError(
                    f"missing {required.name} in {folder}: expected the FaceXModel folder of {ICT_SOURCE}"
                )
        index = json.loads(index_path.read_text())
        neutral, triangles = read_obj(neutral_path)
        names = tuple(expressions) if expressions is not None else tuple(index["expressions"])
        expression_deltas = (
            np.stack([_read_delta(folder / f"{n}.obj", neutral) for n in names])
            if names
            else np.zeros((0, *neutral.shape), np.float32)
        )
        identity_paths = sorted(folder.glob("identity*.obj"))
        if num_identities is not None:
            if num_identities > len(identity_paths):
                raise ICTAssetError(f"{folder} holds {len(identity_paths)} identity OBJs, {num_identities} requested")
            identity_paths = identity_paths[:num_identities]
        identity_deltas = (
            np.stack([_read_delta(p, neutral) for p in identity_paths])
            if identity_paths
            else np.zeros((0, *neutral.shape), np.float32)
        )
        return cls(
            neutral=neutral,
            triangles=triangles,
            landmarks68=np.asarray(index["idx_to_landmark_verts"], dtype=np.int64),
            expression_names=names,
            expression_deltas=expression_deltas,
            identity_deltas=identity_deltas,
        )

    @property
    def num_vertices(self) -> int:
        return int(self.neutral.shape[0])

    def restrict(self, region: str = "narrow") -> ICTFaceModel:
        """The model on one vertex region of :data:`ICT_REGIONS` (triangles re-indexed)."""
        if region not in ICT_REGIONS:
            raise ValueError(f"unknown ICT region {region!r}; choose from {sorted(ICT_REGIONS)}")
        start, stop = ICT_REGIONS[region]
        topo = FaceTopology("ict", self.neutral, self.triangles, self.landmarks68).submesh(np.arange(start, stop))
        return replace(
            self,
            neutral=topo.template,
            triangles=topo.triangles,
            landmarks68=topo.landmarks68,
            expression_deltas=self.expression_deltas[:, start:stop],
            identity_deltas=self.identity_deltas[:, start:stop],
        )

    def topology(self, name: str = "ict") -> FaceTopology:
        """This model's mesh as a :class:`FaceTopology`."""
        return FaceTopology(name, self.neutral, self.triangles, self.landmarks68)

    def expression_index(self, name: str) -> int:
        try:
            return self.expression_names.index(name)
        except ValueError:
            raise KeyError(f"ICT model has no expression shape {name!r}") from None

    def au_weights(self, au: int | str) -> np.ndarray:
        """``[E]`` expression weights that produce ``au`` at full activation."""
        weights = np.zeros(len(self.expression_names), dtype=np.float32)
        for name, w in ict_blendshape_weights(au).items():
            weights[self.expression_index(name)] = w
        return weights

    def au_basis(self, aus: Sequence[int]) -> np.ndarray:
        """``[K,E]`` matrix mapping AU activations to expression weights."""
        return np.stack([self.au_weights(a) for a in aus])

    def shape(self, identity: np.ndarray | None = None, expression: np.ndarray | None = None) -> np.ndarray:
        """Vertices ``[..., V, 3]`` for identity coefficients ``[..., I']`` and expression weights ``[..., E]``."""
        out = self.neutral
        if identity is not None:
            identity = np.asarray(identity, dtype=np.float32)
            out = out + np.einsum("...i,ivc->...vc", identity, self.identity_deltas[: identity.shape[-1]])
        if expression is not None:
            expression = np.asarray(expression, dtype=np.float32)
            out = out + np.einsum("...e,evc->...vc", expression, self.expression_deltas)
        return np.asarray(out, dtype=np.float32)


def load_face_model(path: str | Path | None = None) -> ICTFaceModel:
    """The ICT model on the narrow face region, from ``path`` or ``$AU_FACE_ICT`` (the form every
    topology, mask and geometry builder uses)."""
    from au_face.utils.assets import ICT_MODEL

    return ICTFaceModel.load(ICT_MODEL.resolve(path)).restrict("narrow")


def read_obj(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read vertices ``[V,3]`` and triangles ``[F,3]`` (polygons fan-split) from an OBJ file."""
    path = Path(path)
    vertices: list[list[float]] = []
    triangles: list[tuple[int, int, int]] = []
    try:
        with open(path, encoding="utf-8", errors="strict") as fh:
            for line in fh:
                if line.startswith("v "):
                    vertices.append([float(x) for x in line.split()[1:4]])
                elif line.startswith("f "):
                    ids = [int(tok.split("/")[0]) - 1 for tok in line.split()[1:]]
                    triangles.extend((ids[0], ids[i], ids[i + 1]) for i in range(1, len(ids) - 1))
    except (UnicodeDecodeError, ValueError, IndexError) as err:
        raise ICTAssetError(f"{path} is not a readable OBJ file: {err}") from err
    if not vertices:
        raise ICTAssetError(f"{path} has no vertices; not an OBJ mesh")
    return np.asarray(vertices, dtype=np.float32), np.asarray(triangles, dtype=np.int64).reshape(-1, 3)


def _read_delta(path: Path, neutral: np.ndarray) -> np.ndarray:
    if not path.is_file():
        raise ICTAssetError(f"missing shape file {path.name} in {path.parent} ({ICT_SOURCE} FaceXModel folder)")
    vertices, _ = read_obj(path)
    if vertices.shape != neutral.shape:
        raise ICTAssetError(f"{path} has {len(vertices)} vertices, the neutral mesh {len(neutral)}")
    return vertices - neutral
