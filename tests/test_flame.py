"""FLAME layer and its chumpy-free loader, on a small synthetic FLAME-format pickle."""

from __future__ import annotations

import datetime
import importlib.util
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from au_face.errors import AUFaceError
from au_face.faces.flame import FlameFormatError, FlameModel, read_flame_pickle, read_landmark_embedding, rodrigues
from au_face.faces.registry import load_topology
from au_face.utils.assets import MissingAssetError

sys.path.insert(0, str(Path(__file__).parent))
from flame_fixtures import flame_model_dict, write_flame_model, write_landmark_embedding


@pytest.fixture()
def no_chumpy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import chumpy`` fail even if it happens to be installed."""
    monkeypatch.setitem(sys.modules, "chumpy", None)
    monkeypatch.setitem(sys.modules, "chumpy.ch", None)


@pytest.fixture(scope="module")
def flame_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("flame")
    pkl = write_flame_model(folder / "generic_model.pkl")
    n_faces = len(flame_model_dict()["f"])
    return pkl, write_landmark_embedding(folder / "landmark_embedding.npy", n_faces)


@pytest.fixture(scope="module")
def flame(flame_files: tuple[Path, Path]) -> FlameModel:
    return FlameModel.load(*flame_files)


def numpy_lbs(raw: dict, full_pose: np.ndarray) -> np.ndarray:
    """Reference skinning of the raw template with 4x4 homogeneous joint transforms."""
    template = raw["v_template"]
    joints = raw["J_regressor"].toarray() @ template
    parents = raw["kintree_table"][0].copy()
    parents[0] = -1
    rot = rodrigues(torch.from_numpy(full_pose)).numpy()
    feature = np.concatenate([(rot[j] - np.eye(3)).ravel() for j in range(1, len(parents))])
    posed = template + raw["posedirs"] @ feature
    world = []
    for j, parent in enumerate(parents):
        local = np.eye(4)
        local[:3, :3] = rot[j]
        local[:3, 3] = joints[j] - (joints[parent] if parent >= 0 else 0)
        world.append(local if parent < 0 else world[parent] @ local)
    skin = []
    for j in range(len(parents)):
        unrest = np.eye(4)
        unrest[:3, 3] = -joints[j]
        skin.append(world[j] @ unrest)
    blended = np.einsum("vj,jrc->vrc", raw["weights"], np.stack(skin))
    return np.einsum("vrc,vc->vr", blended[:, :3, :3], posed) + blended[:, :3, 3]


def test_fixture_pickles_a_chumpy_object(flame_files: tuple[Path, Path]) -> None:
    raw = flame_files[0].read_bytes()
    assert b"chumpy.ch\nCh\n" in raw and b"csc_matrix" in raw
    assert "chumpy" not in sys.modules or sys.modules["chumpy"] is None


def test_loads_without_chumpy(no_chumpy: None, flame_files: tuple[Path, Path]) -> None:
    with pytest.raises(ImportError):
        import chumpy  # noqa: F401
    arrays = read_flame_pickle(flame_files[0])
    expected = flame_model_dict()
    np.testing.assert_allclose(arrays.shapedirs, expected["shapedirs"].x, rtol=1e-6)
    np.testing.assert_allclose(arrays.joint_regressor, expected["J_regressor"].toarray(), rtol=1e-6)
    assert arrays.parents.tolist() == [-1, 0, 1, 1, 1]
    assert arrays.faces.dtype == np.int64 and arrays.shapedirs.shape[2] == 400


def test_chumpy_is_not_installed() -> None:
    """The loader must never need chumpy; the test environment has none."""
    assert importlib.util.find_spec("chumpy") is None


def test_zero_parameters_give_the_template(flame: FlameModel) -> None:
    out = flame(torch.zeros(2, 100), torch.zeros(2, 50), torch.zeros(2, 15))
    assert out.shape == (2, flame.num_vertices, 3)
    torch.testing.assert_close(out, flame.template.expand(2, -1, -1), atol=1e-7, rtol=0)


def test_expression_is_linear_and_matches_the_basis(flame: FlameModel) -> None:
    expression = torch.randn(1, 50, generator=torch.Generator().manual_seed(1))
    base = flame(expression=torch.zeros(1, 50))
    once = flame(expression=expression) - base
    twice = flame(expression=2 * expression) - base
    torch.testing.assert_close(twice, 2 * once, atol=1e-6, rtol=1e-5)
    expected = torch.einsum("e,evd->vd", expression[0], flame.expression_basis())
    torch.testing.assert_close(once[0], expected, atol=1e-6, rtol=1e-5)
    assert flame.expression_basis().shape == (50, flame.num_vertices, 3)
    assert once.abs().max() > 1e-4


def test_global_rotation_is_rigid_about_the_root(flame: FlameModel) -> None:
    shape = 3 * torch.randn(1, 100, generator=torch.Generator().manual_seed(2))
    rest = flame(shape)
    global_rot = torch.tensor([[0.3, -0.5, 0.2]])
    posed = flame(shape, pose=torch.cat([global_rot, torch.zeros(1, 3)], dim=1))

    def distances(v: torch.Tensor) -> torch.Tensor:
        return (v[0, :, None] - v[0, None]).norm(dim=-1)

    torch.testing.assert_close(distances(posed), distances(rest), atol=1e-6, rtol=1e-5)
    pivot = flame.rest_joints(shape)[:, 0]
    expected = (rest - pivot[:, None]) @ rodrigues(global_rot)[0].T + pivot[:, None]
    torch.testing.assert_close(posed, expected, atol=1e-6, rtol=1e-5)


def test_jaw_pose_moves_only_jaw_weighted_vertices(flame: FlameModel) -> None:
    jaw = torch.tensor([[0.0, 0.0, 0.0, 0.25, 0.0, 0.0]])
    moved = (flame(pose=jaw)[0] - flame.template).norm(dim=-1)
    jaw_weight = flame.weights[:, 2]
    assert moved[jaw_weight == 0].max() < 1e-7
    assert (moved[jaw_weight > 0] > 1e-4).all()


def test_skinning_matches_a_homogeneous_reference(flame: FlameModel) -> None:
    full_pose = np.random.default_rng(3).normal(scale=0.3, size=(5, 3))
    ours = flame(pose=torch.from_numpy(full_pose.reshape(1, 15)).float())[0].numpy()
    np.testing.assert_allclose(ours, numpy_lbs(flame_model_dict(), full_pose), atol=2e-6)


def test_rodrigues_is_smooth_at_zero() -> None:
    vec = torch.zeros(2, 3, requires_grad=True)
    rodrigues(vec).sum().backward()
    assert torch.isfinite(vec.grad).all()
    axis_angle = torch.tensor([0.0, 0.0, np.pi / 2])
    torch.testing.assert_close(
        rodrigues(axis_angle) @ torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0]), atol=1e-6, rtol=0
    )


def test_landmarks_and_topology(flame: FlameModel, flame_files: tuple[Path, Path]) -> None:
    faces, bary = read_landmark_embedding(flame_files[1], flame.faces.shape[0])
    template = flame.template.numpy()
    expected = np.einsum("lkd,lk->ld", template[flame.faces.numpy()[faces]], bary)
    np.testing.assert_allclose(flame.landmarks3d(flame.template[None])[0].numpy(), expected, atol=1e-6)
    topology = flame.topology()
    assert topology.name == "flame" and topology.num_vertices == flame.num_vertices
    nearest = ((template[None] - expected[:, None]) ** 2).sum(-1).argmin(1)
    np.testing.assert_array_equal(topology.landmarks68, nearest)
    assert (
        load_topology("flame", flame_path=flame_files[0], flame_landmarks_path=flame_files[1]).num_vertices
        == flame.num_vertices
    )


def test_missing_landmark_embedding(flame_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AU_FACE_FLAME_LANDMARKS", raising=False)
    model = FlameModel.load(flame_files[0])
    assert model(torch.zeros(1, 100)).shape[1] == model.num_vertices
    with pytest.raises(MissingAssetError, match="landmark_embedding.npy"):
        model.topology()


def test_env_var_paths(flame_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AU_FACE_FLAME", str(flame_files[0]))
    monkeypatch.setenv("AU_FACE_FLAME_LANDMARKS", str(flame_files[1]))
    assert FlameModel.load().topology().num_vertices == len(flame_model_dict()["v_template"])


def test_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(MissingAssetError, match="flame.is.tue.mpg.de") as info:
        FlameModel.load(tmp_path / "generic_model.pkl")
    assert isinstance(info.value, AUFaceError) and isinstance(info.value, FileNotFoundError)


def test_text_file_is_not_a_flame_model(tmp_path: Path) -> None:
    path = tmp_path / "generic_model.pkl"
    path.write_text("this is not a pickle\n")
    with pytest.raises(FlameFormatError, match="generic_model.pkl is not a FLAME model pickle"):
        FlameModel.load(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ([1, 2, 3], "holds a list"),
        ({"v_template": np.zeros((4, 3))}, r"missing \['f', 'shapedirs'"),
        (datetime.date(2020, 1, 1), "refusing to load global datetime.date"),
    ],
)
def test_foreign_pickles_are_rejected(tmp_path: Path, content: object, message: str) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(content, protocol=2))
    with pytest.raises(FlameFormatError, match=message):
        read_flame_pickle(path)


def test_wrong_shapes_are_named(tmp_path: Path) -> None:
    n = len(flame_model_dict()["v_template"])
    path = write_flame_model(tmp_path / "bad.pkl", weights=np.zeros((n, 4)))
    with pytest.raises(FlameFormatError, match=r"weights must be \[168,5\]"):
        read_flame_pickle(path)
    path = write_flame_model(tmp_path / "bad2.pkl", posedirs=None)
    with pytest.raises(FlameFormatError, match="posedirs"):
        read_flame_pickle(path)


def test_bad_landmark_embedding(tmp_path: Path, flame_files: tuple[Path, Path]) -> None:
    np.save(tmp_path / "wrong.npy", {"static_lmk_faces_idx": np.zeros(51)}, allow_pickle=True)
    with pytest.raises(FlameFormatError, match="full_lmk_faces_idx"):
        FlameModel.load(flame_files[0], tmp_path / "wrong.npy")
    small = write_landmark_embedding(tmp_path / "other_mesh.npy", num_faces=10_000)
    with pytest.raises(FlameFormatError, match="another mesh"):
        FlameModel.load(flame_files[0], small)


def test_component_counts(flame_files: tuple[Path, Path]) -> None:
    with pytest.raises(FlameFormatError, match="100 expression"):
        FlameModel.load(flame_files[0], n_expression=101)
    model = FlameModel.load(flame_files[0], n_shape=300, n_expression=100)
    assert model.shapedirs.shape[2] == 300 and model.expression_basis().shape[0] == 100
    with pytest.raises(ValueError, match=r"pose must be \[B,6\]"):
        model(pose=torch.zeros(1, 9))
