"""Building a :class:`FaceGeometry` from a recipe, once: ``au_face.geometry.build`` / ``au-face geometry``.

A :class:`GeometrySpec` names the topology, the AU list and how masks, expression basis and neutral
estimator are made. :func:`resolve_geometry` turns a spec into the artefact: a ``file`` is read as
it is (a built ``.npz``, or a checkpoint when fine-tuning); otherwise the geometry is built and kept
in the user cache under a key of the recipe and its input files, so each machine builds it once.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from au_face.aus import resolve_aus
from au_face.geometry.artefact import FaceGeometry, GeometryError
from au_face.utils.assets import FLAME_LANDMARKS, FLAME_MODEL, ICT_MODEL

if TYPE_CHECKING:
    from au_face.faces.ict import ICTFaceModel
    from au_face.geometry.masks import MaskMethod

#: Bump when a recipe starts building different arrays (keys of cached geometries change).
BUILDER_VERSION = 1
#: Coarse frames the PCA basis is fitted to at most.
PCA_FRAMES = 4000


@dataclass(frozen=True)
class GeometrySpec:
    """How to get a geometry. With ``file`` the geometry is read from it; else it is built.

    Args:
        topology: ``mediapipe``, ``ict`` or ``flame``.
        aus: AU set name (``default``, ``bp4d``, ``disfa``, ``affwild2``) or list; with a ``.npz``
            ``file``, None keeps its AUs; with a checkpoint ``file`` the AUs to fine-tune to.
        file: a geometry ``.npz`` (``au-face geometry --out``) or an ``AUFaceTask`` checkpoint, whose
            topology, basis, neutral estimator and masks (for the AUs it knows) are used.
        masks: ``auto`` (ICT masks on ICT meshes; ICT masks carried to the topology when an ICT model
            is given and every AU has ICT shapes; else landmark-anchored), ``ict``, ``transfer``, ``landmarks``.
        mask_rings: boundary width of the masks (mesh rings).
        basis: ``auto`` (ICT blendshapes on ICT and, carried, on MediaPipe when an ICT model is given;
            the FLAME expression space on FLAME; else ``pca``), ``ict``, ``flame`` or ``pca``.
        expression_dim: size of a PCA or FLAME basis.
        pca_meshes: folder of coarse ``.npz`` records (a coarse cache of the training videos) the PCA
            basis is fitted to.
        neutral: add the ICT neutral-shape estimator (ICT and MediaPipe topologies; needs the ICT model).
        identity_modes: ICT identity modes the neutral estimator may use.
        ict_path, flame_path, flame_landmarks_path: model files (default: their environment variables).
    """

    topology: Literal["mediapipe", "ict", "flame"] = "mediapipe"
    aus: str | list[int | str] | None = "default"
    file: str | None = None
    masks: Literal["auto", "ict", "transfer", "landmarks"] = "auto"
    mask_rings: int = 3
    basis: Literal["auto", "ict", "flame", "pca"] = "auto"
    expression_dim: int = 32
    pca_meshes: str | None = None
    neutral: bool = True
    identity_modes: int = 50
    ict_path: str | None = None
    flame_path: str | None = None
    flame_landmarks_path: str | None = None

    def has_ict(self) -> bool:
        return self.ict_path is not None or bool(os.environ.get(ICT_MODEL.env_var))


def resolve_geometry(source: GeometrySpec | FaceGeometry | str | Path | dict) -> FaceGeometry:
    """The geometry ``source`` stands for: itself, a file's (``.npz`` or checkpoint), or a spec's,
    built once per machine (kept under the user cache, keyed by the recipe and its input files)."""
    if isinstance(source, FaceGeometry):
        return source
    if isinstance(source, dict):
        source = GeometrySpec(**source)
    if isinstance(source, (str, Path)):
        source = GeometrySpec(aus=None, file=str(source))
    if source.file is not None:
        return _from_file(source.file, source)
    from au_face.utils.files import user_cache_dir

    path = user_cache_dir() / "geometry" / f"{source.topology}_{_recipe_key(source)}.npz"
    if path.is_file():
        try:
            return FaceGeometry.load(path)
        except GeometryError:
            path.unlink(missing_ok=True)  # a damaged cache entry is rebuilt
    geometry = build(source)
    geometry.save(path)
    return geometry


def build(spec: GeometrySpec | None = None, **fields: Any) -> FaceGeometry:
    """Build the geometry a spec describes (``build(topology="mediapipe", aus="bp4d")`` works too)."""
    from au_face.faces.ict import load_face_model
    from au_face.faces.registry import load_topology
    from au_face.geometry.masks import build_masks
    from au_face.utils.files import user_cache_dir

    spec = spec if spec is not None else GeometrySpec(**fields)
    if spec.file is not None:
        return _from_file(spec.file, spec)
    aus = resolve_aus(spec.aus if spec.aus is not None else "default")
    ict = load_face_model(spec.ict_path) if spec.has_ict() or spec.topology == "ict" else None
    if ict is not None and spec.topology == "ict":
        topology = ict.topology()  # what load_topology("ict") gives, without a second read
    else:
        topology = load_topology(spec.topology, spec.ict_path, spec.flame_path, spec.flame_landmarks_path)
    method = _mask_method(spec, aus, ict)
    masks = build_masks(topology, aus, method, ict, user_cache_dir() / "masks", spec.mask_rings)
    basis, neutral = _basis_and_neutral(spec, topology, ict)
    recipe = {**asdict(spec), "aus": aus, "masks": method, "builder": BUILDER_VERSION}
    return FaceGeometry(topology, tuple(aus), masks, basis, neutral, recipe)


def _mask_method(spec: GeometrySpec, aus: list[int], ict: ICTFaceModel | None) -> MaskMethod:
    if spec.masks != "auto":
        if spec.masks in ("ict", "transfer") and ict is None:
            raise GeometryError(
                f"masks={spec.masks!r} need the ICT model: {ICT_MODEL.description} via ict_path or ${ICT_MODEL.env_var}"
            )
        return spec.masks
    from au_face.faces.ict import has_ict_shapes

    if ict is not None and spec.topology == "ict":
        return "ict"
    if ict is not None and all(has_ict_shapes(a) for a in aus):
        return "transfer"
    return "landmarks"


def _basis_and_neutral(spec: GeometrySpec, topology, ict):
    """Expression basis ``[E,V,3]`` and, where an ICT model is given, the neutral estimator."""
    from au_face.geometry.basis import ict_expression_basis
    from au_face.geometry.neutral import NeutralEstimator, fit_shape_indices

    kind: str = spec.basis
    if kind == "auto":
        kind = {"ict": "ict", "flame": "flame"}.get(spec.topology, "ict" if ict is not None else "pca")
    if kind == "flame":
        return _flame_basis(spec), None
    if kind == "pca":
        return _pca_basis(spec, topology), None
    if kind != "ict":
        raise GeometryError(f"unknown expression basis {kind!r}; use auto, ict, flame or pca")
    if ict is None:
        raise GeometryError(
            f"the ICT expression basis needs {ICT_MODEL.description}: pass ict_path or set {ICT_MODEL.env_var}"
        )
    if spec.topology == "flame":
        raise GeometryError("the ICT expression basis is available on the ict and mediapipe topologies, not flame")
    basis, names = ict_expression_basis(ict)
    identity = ict.identity_deltas[: spec.identity_modes]
    template = ict.neutral
    if spec.topology == "mediapipe":
        from au_face.faces.correspondence import TopologyMap
        from au_face.faces.mediapipe import to_pose_frame

        carry = TopologyMap.between(ict.topology(), topology)
        basis, identity = carry.apply_basis(basis), carry.apply_basis(identity)
        template = to_pose_frame(carry(template), carry(template))
    neutral = None
    if spec.neutral:
        expression = basis[fit_shape_indices(names)]
        neutral = NeutralEstimator(
            torch.from_numpy(np.asarray(template)), torch.from_numpy(np.asarray(identity)), torch.from_numpy(expression)
        )
    return np.asarray(basis, dtype=np.float32), neutral


def _flame_basis(spec: GeometrySpec) -> np.ndarray:
    from au_face.faces.flame import FlameModel

    if spec.topology != "flame":
        raise GeometryError(f"the FLAME expression basis needs the flame topology, not {spec.topology!r}")
    flame = FlameModel.load(
        FLAME_MODEL.resolve(spec.flame_path),
        FLAME_LANDMARKS.resolve(spec.flame_landmarks_path),
        n_expression=spec.expression_dim,
    )
    return flame.expression_basis().detach().cpu().numpy().astype(np.float32)


def _pca_basis(spec: GeometrySpec, topology) -> np.ndarray:
    """PCA of ``S − mean`` over the coarse records under ``pca_meshes`` (evenly sampled frames)."""
    from au_face.coarse.base import CoarseFrames
    from au_face.geometry.basis import fit_pca_basis

    if spec.pca_meshes is None:
        raise GeometryError(
            f"a PCA expression basis on {spec.topology!r} needs pca_meshes (a coarse cache of training videos), "
            f"or give the ICT model ({ICT_MODEL.env_var}) for the carried ICT basis"
        )
    folder = Path(spec.pca_meshes)
    records = [p for p in sorted(folder.rglob("*.npz")) if _is_coarse_record(p)]
    if not records:
        raise GeometryError(f"no coarse records (au-face preprocess output) under {folder} to fit a PCA basis to")
    per_record = max(1, PCA_FRAMES // len(records))
    parts = []
    for path in records:
        coarse = CoarseFrames.load(path)
        if coarse.topology != topology.name:
            raise GeometryError(f"{path} holds {coarse.topology!r} meshes, the geometry is for {topology.name!r}")
        if coarse.num_valid:
            displacement = (coarse.vertices[coarse.valid] - coarse.mean_shape()).numpy()
            parts.append(
                displacement[np.linspace(0, len(displacement) - 1, min(per_record, len(displacement))).astype(int)]
            )
    if not parts:
        raise GeometryError(f"the coarse records under {folder} have no frame with a face")
    return fit_pca_basis(np.concatenate(parts), spec.expression_dim)


def _is_coarse_record(path: Path) -> bool:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {"vertices", "valid", "topology"} <= set(z.files)
    except Exception:  # not an npz: not a record
        return False


def _from_file(file: str, spec: GeometrySpec) -> FaceGeometry:
    """The geometry of ``file`` (``spec.file``), for ``spec``'s AUs."""
    path = Path(file)
    if path.suffix == ".ckpt":
        return from_checkpoint(path, None if spec.aus is None else resolve_aus(spec.aus), spec.mask_rings)
    geometry = FaceGeometry.load(path)
    if spec.aus is not None and list(geometry.aus) != resolve_aus(spec.aus):
        raise GeometryError(f"{path} is for AUs {list(geometry.aus)}, the config asks for {resolve_aus(spec.aus)}")
    return geometry


def from_checkpoint(path: str | Path, aus: list[int] | None = None, mask_rings: int = 3) -> FaceGeometry:
    """A checkpoint's geometry, for fine-tuning to ``aus``: its topology, basis and neutral estimator
    as stored, its masks for the AUs it knows and landmark-anchored masks for new ones."""
    from au_face.geometry.masks import build_masks
    from au_face.io.checkpoints import load_checkpoint
    from au_face.utils.files import user_cache_dir

    stored = FaceGeometry.from_state(load_checkpoint(path)["geometry"])
    if aus is None or list(aus) == list(stored.aus):
        return stored
    known = dict(zip(stored.aus, stored.masks))
    new = [a for a in aus if a not in known]
    built = (
        dict(zip(new, build_masks(stored.topology, new, "landmarks", None, user_cache_dir() / "masks", mask_rings)))
        if new
        else {}
    )
    masks = np.stack([known[a] if a in known else built[a] for a in aus])
    recipe = {"file": str(path), "aus": list(aus), "new_aus": new, "builder": BUILDER_VERSION}
    return FaceGeometry(stored.topology, tuple(aus), masks, stored.basis, stored.neutral, recipe)


def _recipe_key(spec: GeometrySpec) -> str:
    """Hash of the recipe, the builder version and the identity (path, size, time) of its input files."""
    inputs = {}
    for name, asset in (
        ("ict_path", ICT_MODEL),
        ("flame_path", FLAME_MODEL),
        ("flame_landmarks_path", FLAME_LANDMARKS),
    ):
        value = getattr(spec, name) or os.environ.get(asset.env_var)
        if value and Path(value).exists():
            stat = Path(value).stat()
            inputs[name] = [str(Path(value).resolve()), stat.st_size, stat.st_mtime_ns]
    if spec.pca_meshes:
        folder = Path(spec.pca_meshes)
        inputs["pca_meshes"] = [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in sorted(folder.rglob("*.npz"))]
    text = json.dumps({"spec": asdict(spec), "inputs": inputs, "builder": BUILDER_VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
