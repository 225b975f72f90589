"""Writers of small files in the real FLAME / DECA formats, for tests.

``write_flame_model`` produces a Python-2-style (protocol 2) pickle laid out like FLAME 2020's
``generic_model.pkl``: ``shapedirs`` is wrapped in an object that pickles as ``chumpy.ch.Ch``
with chumpy's ``__dict__`` state, ``J_regressor`` is a scipy csc matrix, and the kinematic
tree is FLAME's (root, neck, jaw, left eye, right eye). The mesh is a coarse ellipsoidal
"face" grid: its lower rows are skinned to the jaw, the rest to the neck.
"""

from __future__ import annotations

import pickle
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

ROWS, COLS = 12, 14
N_SHAPE_DIRS = 300 + 100
ROOT_PARENT = 4294967295  # 2**32 - 1, how FLAME stores "no parent"


class FakeCh:
    """Pickles exactly as a chumpy ``Ch`` holding an array (``chumpy.ch Ch`` + ``__dict__`` state)."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = x

    def __getstate__(self) -> dict:
        # chumpy drops _parents/_cache and keeps the rest of __dict__
        return {
            "x": self.x,
            "_dirty_vars": set(),
            "_itr": None,
            "_depends_on_deps": {},
            "_make_dense": False,
            "_make_sparse": False,
        }


FakeCh.__module__ = "chumpy.ch"
FakeCh.__name__ = "Ch"
FakeCh.__qualname__ = "Ch"


@contextmanager
def _chumpy_importable_for_pickling() -> Iterator[None]:
    """pickle checks that ``chumpy.ch.Ch`` resolves to the class it writes; make it so, briefly."""
    saved = {name: sys.modules.get(name) for name in ("chumpy", "chumpy.ch")}
    package = types.ModuleType("chumpy")
    module = types.ModuleType("chumpy.ch")
    module.Ch = FakeCh
    package.ch = module
    sys.modules.update({"chumpy": package, "chumpy.ch": module})
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old


def _grid_mesh() -> tuple[np.ndarray, np.ndarray]:
    """Vertices on the front of an ellipsoid (metres, y up, z towards the viewer) and grid triangles."""
    elevation = np.linspace(np.radians(55), np.radians(-60), ROWS)
    azimuth = np.linspace(np.radians(-80), np.radians(80), COLS)
    el, az = np.meshgrid(elevation, azimuth, indexing="ij")
    verts = np.stack([0.075 * np.cos(el) * np.sin(az), 0.1 * np.sin(el), 0.09 * np.cos(el) * np.cos(az)], axis=-1)
    ids = np.arange(ROWS * COLS).reshape(ROWS, COLS)
    a, b, c, d = ids[:-1, :-1], ids[:-1, 1:], ids[1:, :-1], ids[1:, 1:]
    faces = np.concatenate([np.stack([a, c, b], -1).reshape(-1, 3), np.stack([b, c, d], -1).reshape(-1, 3)])
    return verts.reshape(-1, 3), faces


def flame_model_dict(seed: int = 0) -> dict:
    """The dict stored in the synthetic ``generic_model.pkl`` (shapedirs wrapped in :class:`FakeCh`)."""
    rng = np.random.default_rng(seed)
    verts, faces = _grid_mesh()
    n = len(verts)
    row = np.repeat(np.arange(ROWS), COLS)
    weights = np.zeros((n, 5))
    jaw_rows = row >= ROWS - 4
    blend_row = row == ROWS - 5
    weights[jaw_rows, 2] = 1.0
    weights[blend_row, 1] = weights[blend_row, 2] = 0.5
    weights[~(jaw_rows | blend_row), 1] = 1.0

    def mean_of(mask: np.ndarray) -> np.ndarray:
        return mask.astype(float) / mask.sum()

    x = verts[:, 0]
    regressor = np.stack(
        [
            mean_of(np.ones(n, bool)),  # root: head centre
            mean_of(row == ROWS - 1),  # neck: bottom row
            mean_of(blend_row),  # jaw hinge
            mean_of((row == 3) & (x > 0.02)),  # left eye
            mean_of((row == 3) & (x < -0.02)),  # right eye
        ]
    )
    posedirs = rng.normal(scale=2e-3, size=(n, 3, 36))
    posedirs[weights[:, 2] == 0, :, 9:18] = 0.0  # the jaw's correctives touch only jaw-skinned vertices
    return {
        "v_template": verts,
        "f": faces.astype(np.uint32),
        "shapedirs": FakeCh(rng.normal(scale=1e-3, size=(n, 3, N_SHAPE_DIRS))),
        "posedirs": posedirs,
        "J_regressor": sp.csc_matrix(regressor),
        "J": regressor @ verts,
        "kintree_table": np.array([[ROOT_PARENT, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.int64),
        "weights": weights,
        "bs_style": "lbs",
        "bs_type": "lrotmin",
    }


def write_flame_model(path: str | Path, seed: int = 0, **overrides) -> Path:
    """Write a small FLAME-format pickle; ``overrides`` replace or (with value None) drop keys."""
    data = flame_model_dict(seed)
    for key, value in overrides.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path = Path(path)
    with _chumpy_importable_for_pickling(), open(path, "wb") as handle:
        pickle.dump(data, handle, protocol=2)
    return path


def write_landmark_embedding(path: str | Path, num_faces: int, seed: int = 0) -> Path:
    """Write a DECA-style ``landmark_embedding.npy`` (np.save'd dict; dynamic contour as torch tensors)."""
    rng = np.random.default_rng(seed)
    face_ids = rng.choice(num_faces, size=68, replace=False).astype(np.int64)
    bary = rng.dirichlet(np.ones(3), size=68).astype(np.float32)
    embedding = {
        "static_lmk_faces_idx": face_ids[17:],
        "static_lmk_bary_coords": bary[17:],
        "dynamic_lmk_faces_idx": torch.from_numpy(rng.integers(0, num_faces, size=(79, 17))),
        "dynamic_lmk_bary_coords": torch.from_numpy(rng.dirichlet(np.ones(3), size=(79, 17)).astype(np.float32)),
        "full_lmk_faces_idx": face_ids[None],
        "full_lmk_bary_coords": bary[None],
    }
    path = Path(path)
    np.save(path, embedding, allow_pickle=True)
    return path


def write_deca_checkpoint(path: str | Path, e_flame: dict[str, torch.Tensor]) -> Path:
    """Write a ``deca_model.tar``-style checkpoint: ``E_flame`` plus (ignored) detail networks."""
    detail = {"encoder.conv1.weight": torch.zeros(2, 3, 1, 1)}
    path = Path(path)
    torch.save({"E_flame": e_flame, "E_detail": detail, "D_detail": {"layers.0.weight": torch.zeros(2)}}, path)
    return path
