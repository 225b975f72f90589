"""FLAME head model (Li et al. 2017) as a pure torch layer, read without chumpy.

The official ``generic_model.pkl`` is a Python-2 pickle whose ``shapedirs`` is a chumpy
``Ch`` object. :func:`read_flame_pickle` unpickles it with a restricted unpickler that
replaces every chumpy class by a stand-in recording the pickled state, then takes the
wrapped array (chumpy keeps it in its ``x`` attribute). Only numpy, scipy.sparse and a
few builtins may be referenced by the file; anything else is refused.
"""

from __future__ import annotations

import codecs
import copyreg
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from au_face.errors import AUFaceError
from au_face.faces.topology import FaceTopology
from au_face.utils.assets import FLAME_LANDMARKS, FLAME_MODEL, MissingAssetError

#: Shape components in FLAME's ``shapedirs``; the expression components follow them.
FLAME_SHAPE_COMPONENTS = 300
#: FLAME joint order: global (root), neck, jaw, left eye, right eye.
FLAME_JOINTS = ("global", "neck", "jaw", "left_eye", "right_eye")

_REQUIRED_KEYS = ("v_template", "f", "shapedirs", "posedirs", "J_regressor", "kintree_table", "weights")
_NUMPY_MODULES = {
    "numpy",
    "numpy.core.multiarray",
    "numpy._core.multiarray",
    "numpy.core.numeric",
    "numpy._core.numeric",
}
_NUMPY_NAMES = {"_reconstruct", "ndarray", "dtype", "scalar", "_frombuffer"}
_BUILTIN_NAMES = {
    "set",
    "frozenset",
    "object",
    "list",
    "dict",
    "tuple",
    "int",
    "float",
    "complex",
    "bool",
    "str",
    "bytes",
    "bytearray",
    "slice",
}


class FlameFormatError(AUFaceError, ValueError):
    """A file that should be a FLAME model or landmark embedding is not one."""


class _ChumpyObject:
    """Stand-in for any chumpy class: keeps the pickled state instead of rebuilding the object."""

    chumpy_class = "chumpy"

    def __setstate__(self, state: Any) -> None:
        self.state = state


_CHUMPY_STANDINS: dict[str, type] = {}


def _chumpy_standin(module: str, name: str) -> type:
    qualified = f"{module}.{name}"
    if qualified not in _CHUMPY_STANDINS:
        _CHUMPY_STANDINS[qualified] = type(name, (_ChumpyObject,), {"chumpy_class": qualified})
    return _CHUMPY_STANDINS[qualified]


class _FlameUnpickler(pickle.Unpickler):
    """Resolves only the globals a FLAME pickle needs; chumpy classes become stand-ins."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "chumpy" or module.startswith("chumpy."):
            return _chumpy_standin(module, name)
        if module.startswith("scipy.sparse") and name.endswith("_matrix") and hasattr(sp, name):
            return getattr(sp, name)  # old pickles name private modules such as scipy.sparse.csc
        if module in _NUMPY_MODULES and name in _NUMPY_NAMES:
            return super().find_class(module, name)
        if module in ("copy_reg", "copyreg") and name == "_reconstructor":
            return copyreg._reconstructor  # type: ignore[attr-defined]  # runtime name, absent from typeshed's copyreg stub
        if module == "_codecs" and name == "encode":
            return codecs.encode  # how Python 3 writes bytes at protocol 2
        if module in ("__builtin__", "builtins") and name in _BUILTIN_NAMES:
            return super().find_class("builtins", name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


class _Opaque:
    """Stand-in for any torch object in a landmark embedding (never rebuilt: those keys are unused)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


class _EmbeddingUnpickler(_FlameUnpickler):
    """The FLAME unpickler; torch classes (DECA's dynamic-contour tensors) become inert stand-ins."""

    def find_class(self, module: str, name: str) -> Any:
        if module.split(".")[0] == "torch" or (module == "collections" and name == "OrderedDict"):
            return _Opaque
        return super().find_class(module, name)


def _load_npy(path: Path) -> Any:
    """A ``.npy`` file; an object array is unpickled with :class:`_EmbeddingUnpickler`, never freely."""
    with open(path, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        _, _, dtype = read_header(handle)
        if not dtype.hasobject:
            handle.seek(0)
            return np.load(handle, allow_pickle=False)
        return _EmbeddingUnpickler(handle, encoding="latin1").load()


def _as_array(value: Any, key: str, path: Path) -> np.ndarray:
    """A pickled value as a dense numpy array (chumpy stand-ins and sparse matrices unwrapped)."""
    if isinstance(value, _ChumpyObject):
        state = value.state if isinstance(getattr(value, "state", None), dict) else {}
        if "x" not in state:
            raise FlameFormatError(
                f"{path}: {key!r} is a {value.chumpy_class} object without an array ('x') in its state"
            )
        value = state["x"]
    if sp.issparse(value):
        return value.toarray()
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as err:
        raise FlameFormatError(f"{path}: {key!r} is not an array ({type(value).__name__})") from err


@dataclass(frozen=True)
class FlameArrays:
    """The arrays of a FLAME model file, validated (``V`` vertices, ``J`` joints).

    Attributes:
        template: ``[V,3]`` float32; faces: ``[F,3]`` int64;
        shapedirs: ``[V,3,S+E]`` float32 (``S`` = 300 shape, then expression components);
        posedirs: ``[V,3,9(J-1)]``; joint_regressor: ``[J,V]``; parents: ``[J]`` (-1 for the root);
        weights: ``[V,J]`` skinning weights.
    """

    template: np.ndarray
    faces: np.ndarray
    shapedirs: np.ndarray
    posedirs: np.ndarray
    joint_regressor: np.ndarray
    parents: np.ndarray
    weights: np.ndarray


def read_flame_pickle(path: str | Path) -> FlameArrays:
    """Read and check a FLAME ``generic_model.pkl`` (chumpy need not be installed)."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            data = _FlameUnpickler(handle, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as err:
        raise FlameFormatError(f"{path} is not a FLAME model pickle: {err}") from err
    if not isinstance(data, dict):
        raise FlameFormatError(f"{path} is not a FLAME model: it holds a {type(data).__name__}, not a dict of arrays")
    missing = [k for k in _REQUIRED_KEYS if k not in data]
    if missing:
        raise FlameFormatError(f"{path} is not a FLAME model: missing {missing} (found {sorted(map(str, data))})")
    raw = {k: _as_array(data[k], k, path) for k in _REQUIRED_KEYS}

    def bad(what: str) -> FlameFormatError:
        return FlameFormatError(f"{path} is not a valid FLAME model: {what}")

    template = raw["v_template"]
    if template.ndim != 2 or template.shape[1] != 3:
        raise bad(f"v_template must be [V,3], got {list(template.shape)}")
    n_verts = template.shape[0]
    faces = raw["f"]
    if faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer):
        raise bad(f"f must be integer [F,3], got {faces.dtype} {list(faces.shape)}")
    if faces.size and (faces.min() < 0 or faces.max() >= n_verts):
        raise bad(f"f has vertex ids outside [0, {n_verts})")
    kintree = raw["kintree_table"]
    if kintree.ndim != 2 or kintree.shape[0] != 2:
        raise bad(f"kintree_table must be [2,J], got {list(kintree.shape)}")
    n_joints = kintree.shape[1]
    parents = kintree[0].astype(np.int64)
    parents[0] = -1  # stored as 2**32 - 1
    if (parents[1:] < 0).any() or (parents[1:] >= np.arange(1, n_joints)).any():
        raise bad("kintree_table parents must precede their children")
    expected = {
        "shapedirs": (n_verts, 3, None),
        "posedirs": (n_verts, 3, 9 * (n_joints - 1)),
        "J_regressor": (n_joints, n_verts),
        "weights": (n_verts, n_joints),
    }
    for key, shape in expected.items():
        got = raw[key].shape
        if len(got) != len(shape) or any(s is not None and s != g for s, g in zip(shape, got)):
            want = ",".join("K" if s is None else str(s) for s in shape)
            raise bad(f"{key} must be [{want}] for {n_verts} vertices and {n_joints} joints, got {list(got)}")
    if raw["shapedirs"].shape[2] <= FLAME_SHAPE_COMPONENTS:
        raise bad(
            f"shapedirs has {raw['shapedirs'].shape[2]} components; FLAME has {FLAME_SHAPE_COMPONENTS} shape + expression"
        )
    return FlameArrays(
        template=template.astype(np.float32),
        faces=faces.astype(np.int64),
        shapedirs=raw["shapedirs"].astype(np.float32),
        posedirs=raw["posedirs"].astype(np.float32),
        joint_regressor=raw["J_regressor"].astype(np.float32),
        parents=parents,
        weights=raw["weights"].astype(np.float32),
    )


def read_landmark_embedding(path: str | Path, num_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """The 68 iBUG landmarks of DECA's ``landmark_embedding.npy``: face ids ``[68]``, barycentrics ``[68,3]``."""
    path = Path(path)
    try:
        loaded = _load_npy(path)
        data = (
            loaded.item()
            if isinstance(loaded, np.ndarray) and loaded.dtype == object and loaded.shape == ()
            else loaded
        )
    except (OSError, ValueError, EOFError, TypeError, AttributeError, pickle.UnpicklingError) as err:
        raise FlameFormatError(f"{path} is not a FLAME landmark embedding (.npy dict): {err}") from err
    keys = ("full_lmk_faces_idx", "full_lmk_bary_coords")
    if not isinstance(data, dict) or any(k not in data for k in keys):
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise FlameFormatError(f"{path} is not a FLAME landmark embedding: needs {list(keys)}, found {found}")
    face_ids = np.asarray(data["full_lmk_faces_idx"]).reshape(-1).astype(np.int64)
    bary = np.asarray(data["full_lmk_bary_coords"], dtype=np.float32).reshape(-1, 3)
    if face_ids.shape != (68,) or bary.shape != (68, 3):
        raise FlameFormatError(
            f"{path}: full landmarks must be 68 faces and [68,3] barycentrics, got {face_ids.shape} and {bary.shape}"
        )
    if face_ids.min() < 0 or face_ids.max() >= num_faces:
        raise FlameFormatError(
            f"{path}: landmark face ids outside the model's {num_faces} faces (embedding for another mesh?)"
        )
    return face_ids, bary


def rodrigues(axis_angle: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``[...,3,3]`` from axis-angle vectors ``[...,3]`` (smooth at zero)."""
    theta = axis_angle.norm(dim=-1, keepdim=True)[..., None]  # [...,1,1]
    small = theta < 1e-4
    safe = torch.where(small, torch.ones_like(theta), theta)
    sin_term = torch.where(small, 1 - theta**2 / 6, torch.sin(safe) / safe)
    cos_term = torch.where(small, 0.5 - theta**2 / 24, (1 - torch.cos(safe)) / safe**2)
    x, y, z = axis_angle.unbind(-1)
    zero = torch.zeros_like(x)
    skew = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(*axis_angle.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device)
    return eye + sin_term * skew + cos_term * skew @ skew


class FlameModel(nn.Module):
    """FLAME: shape/expression blendshapes, pose correctives and linear blend skinning.

    ``forward(shape [B,Ns], expression [B,Ne], pose [B,6|3J]) -> vertices [B,V,3]``. A 6-vector
    pose is DECA's layout (global rotation, jaw) with neck and eyes at rest; ``3J`` values give
    every joint in :data:`FLAME_JOINTS` order. All rotations are axis-angle.
    """

    template: torch.Tensor
    faces: torch.Tensor
    shapedirs: torch.Tensor
    exprdirs: torch.Tensor
    posedirs: torch.Tensor
    joint_regressor: torch.Tensor
    parents: torch.Tensor
    weights: torch.Tensor
    landmark_faces: torch.Tensor | None
    landmark_bary: torch.Tensor | None

    def __init__(
        self,
        arrays: FlameArrays,
        n_shape: int = 100,
        n_expression: int = 50,
        landmark_faces: np.ndarray | None = None,
        landmark_bary: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        n_expr_available = arrays.shapedirs.shape[2] - FLAME_SHAPE_COMPONENTS
        if not 0 <= n_shape <= FLAME_SHAPE_COMPONENTS or not 0 <= n_expression <= n_expr_available:
            raise FlameFormatError(
                f"FLAME has {FLAME_SHAPE_COMPONENTS} shape and {n_expr_available} expression components; "
                f"asked for {n_shape} and {n_expression}"
            )
        self.n_shape = n_shape
        self.n_expression = n_expression
        n_verts = arrays.template.shape[0]
        dirs = torch.from_numpy(arrays.shapedirs)
        self.register_buffer("template", torch.from_numpy(arrays.template))
        self.register_buffer("faces", torch.from_numpy(arrays.faces))
        self.register_buffer("shapedirs", dirs[:, :, :n_shape].contiguous())
        start = FLAME_SHAPE_COMPONENTS
        self.register_buffer("exprdirs", dirs[:, :, start : start + n_expression].contiguous())
        # [9(J-1), V*3]: rows follow the flattened (R_j - I) of joints 1..J-1
        self.register_buffer("posedirs", torch.from_numpy(arrays.posedirs).reshape(n_verts * 3, -1).T.contiguous())
        self.register_buffer("joint_regressor", torch.from_numpy(arrays.joint_regressor))
        self.register_buffer("parents", torch.from_numpy(arrays.parents))
        self.register_buffer("weights", torch.from_numpy(arrays.weights))
        self.landmarks68: np.ndarray | None = None
        if landmark_faces is not None and landmark_bary is not None:
            self.register_buffer("landmark_faces", torch.from_numpy(np.asarray(landmark_faces, dtype=np.int64)))
            self.register_buffer("landmark_bary", torch.from_numpy(np.asarray(landmark_bary, dtype=np.float32)))
            self.landmarks68 = self._nearest_landmark_vertices()
        else:
            self.landmark_faces = None
            self.landmark_bary = None

    @classmethod
    def load(
        cls,
        pkl_path: str | Path | None = None,
        landmark_embedding_path: str | Path | None = None,
        n_shape: int = 100,
        n_expression: int = 50,
    ) -> FlameModel:
        """Read ``generic_model.pkl`` and, optionally, DECA's ``landmark_embedding.npy``.

        Paths default to ``$AU_FACE_FLAME`` / ``$AU_FACE_FLAME_LANDMARKS``; without a landmark
        embedding the model works but :meth:`topology` and :meth:`landmarks3d` are unavailable.
        """
        arrays = read_flame_pickle(FLAME_MODEL.resolve(pkl_path))
        faces = bary = None
        if landmark_embedding_path is not None or FLAME_LANDMARKS.env_var in os.environ:
            faces, bary = read_landmark_embedding(FLAME_LANDMARKS.resolve(landmark_embedding_path), len(arrays.faces))
        return cls(arrays, n_shape, n_expression, faces, bary)

    @property
    def num_vertices(self) -> int:
        return int(self.template.shape[0])

    @property
    def num_joints(self) -> int:
        return int(self.parents.shape[0])

    @staticmethod
    def _missing_landmarks() -> MissingAssetError:
        return MissingAssetError(
            f"{FLAME_LANDMARKS.description} is needed for FLAME landmarks: pass landmark_embedding_path "
            f"or set {FLAME_LANDMARKS.env_var}. Obtain it from {FLAME_LANDMARKS.source}."
        )

    def _require_landmarks(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The landmark embedding ``(faces [68], bary [68,3])``; MissingAssetError without one."""
        if self.landmark_faces is None or self.landmark_bary is None:
            raise self._missing_landmarks()
        return self.landmark_faces, self.landmark_bary

    def _nearest_landmark_vertices(self) -> np.ndarray:
        points = self.landmarks3d(self.template[None])[0].detach().cpu().numpy()
        template = self.template.detach().cpu().numpy()
        distances = ((template[None, :, :] - points[:, None, :]) ** 2).sum(-1)
        return distances.argmin(axis=1).astype(np.int64)

    def topology(self) -> FaceTopology:
        """The FLAME mesh with the vertex nearest to each of the 68 embedded landmarks."""
        if self.landmarks68 is None:  # set in __init__ together with the landmark embedding
            raise self._missing_landmarks()
        return FaceTopology("flame", self.template.cpu().numpy(), self.faces.cpu().numpy(), self.landmarks68)

    def landmarks3d(self, vertices: torch.Tensor) -> torch.Tensor:
        """``[B,68,3]`` landmarks of ``vertices [B,V,3]`` by barycentric interpolation."""
        landmark_faces, landmark_bary = self._require_landmarks()
        corners = vertices[:, self.faces[landmark_faces]]  # [B,68,3,3]
        return torch.einsum("blkd,lk->bld", corners, landmark_bary)

    def expression_basis(self) -> torch.Tensor:
        """``[Ne,V,3]`` linear expression basis (the vertex offset per unit expression code)."""
        return self.exprdirs.permute(2, 0, 1)

    def _batch(self, *tensors: torch.Tensor | None) -> int:
        sizes = {t.shape[0] for t in tensors if t is not None}
        if len(sizes) != 1:
            raise ValueError(f"FLAME inputs need one common batch size, got {sorted(sizes) or 'no inputs'}")
        return sizes.pop()

    def _codes(self, codes: torch.Tensor | None, count: int, batch: int, what: str) -> torch.Tensor:
        if codes is None:
            return self.template.new_zeros(batch, count)
        if codes.ndim != 2 or codes.shape[1] != count:
            raise ValueError(f"{what} must be [B,{count}], got {list(codes.shape)}")
        return codes.to(self.template)

    def full_pose(self, pose: torch.Tensor | None, batch: int) -> torch.Tensor:
        """``[B,J,3]`` per-joint axis-angle from a DECA 6-vector or a full ``3J`` pose."""
        n_joints = self.num_joints
        if pose is None:
            return self.template.new_zeros(batch, n_joints, 3)
        pose = pose.to(self.template)
        if pose.ndim == 2 and pose.shape[1] == 3 * n_joints:
            return pose.reshape(batch, n_joints, 3)
        if pose.ndim == 2 and pose.shape[1] == 6 and n_joints == len(FLAME_JOINTS):
            full = self.template.new_zeros(batch, n_joints, 3)
            full[:, FLAME_JOINTS.index("global")] = pose[:, :3]
            full[:, FLAME_JOINTS.index("jaw")] = pose[:, 3:]
            return full
        raise ValueError(f"pose must be [B,6] (global, jaw) or [B,{3 * n_joints}], got {list(pose.shape)}")

    def shaped(self, shape: torch.Tensor | None = None, expression: torch.Tensor | None = None) -> torch.Tensor:
        """``[B,V,3]`` template plus shape and expression blendshapes (before posing)."""
        batch = self._batch(shape, expression)
        shape = self._codes(shape, self.n_shape, batch, "shape")
        expression = self._codes(expression, self.n_expression, batch, "expression")
        offsets = torch.einsum("bs,vds->bvd", shape, self.shapedirs) + torch.einsum(
            "be,vde->bvd", expression, self.exprdirs
        )
        return self.template + offsets

    def rest_joints(self, shape: torch.Tensor | None = None, expression: torch.Tensor | None = None) -> torch.Tensor:
        """``[B,J,3]`` joint locations regressed from the unposed shape; joint 0 is the global pivot."""
        return torch.einsum("jv,bvd->bjd", self.joint_regressor, self.shaped(shape, expression))

    def forward(
        self,
        shape: torch.Tensor | None = None,
        expression: torch.Tensor | None = None,
        pose: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Posed vertices ``[B,V,3]``; omitted inputs are zeros (at least one must be given)."""
        batch = self._batch(shape, expression, pose)
        if shape is None and expression is None:
            shape = self.template.new_zeros(batch, self.n_shape)
        v_shaped = self.shaped(shape, expression)
        joints = torch.einsum("jv,bvd->bjd", self.joint_regressor, v_shaped)
        rotations = rodrigues(self.full_pose(pose, batch))  # [B,J,3,3]
        eye = torch.eye(3, dtype=rotations.dtype, device=rotations.device)
        pose_feature = (rotations[:, 1:] - eye).reshape(batch, -1)
        v_posed = v_shaped + (pose_feature @ self.posedirs).reshape(batch, -1, 3)
        transforms = self._skinning_transforms(rotations, joints)  # [B,J,3,4]
        per_vertex = torch.einsum("vj,bjrc->bvrc", self.weights, transforms)
        return torch.einsum("bvrc,bvc->bvr", per_vertex[..., :3], v_posed) + per_vertex[..., 3]

    def _skinning_transforms(self, rotations: torch.Tensor, joints: torch.Tensor) -> torch.Tensor:
        """World transforms of each joint relative to its rest placement, ``[B,J,3,4]``."""
        parents = self.parents.tolist()
        world_rot: list[torch.Tensor] = []
        world_pos: list[torch.Tensor] = []
        for j, parent in enumerate(parents):
            if parent < 0:
                world_rot.append(rotations[:, j])
                world_pos.append(joints[:, j])
            else:
                offset = joints[:, j] - joints[:, parent]
                world_rot.append(world_rot[parent] @ rotations[:, j])
                world_pos.append(world_pos[parent] + (world_rot[parent] @ offset[..., None])[..., 0])
        rot = torch.stack(world_rot, dim=1)
        pos = torch.stack(world_pos, dim=1)
        # x -> R_world (x - J_rest) + J_world
        trans = pos - (rot @ joints[..., None])[..., 0]
        return torch.cat([rot, trans[..., None]], dim=-1)
