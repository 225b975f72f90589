"""DECA coarse reconstructor: ResNet-50 encoder, checkpoint loading by key name, FLAME decoding."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from au_face.coarse.base import CoarseFrames
from au_face.coarse.deca import (
    DECA_NUM_PARAMS,
    DecaCheckpointError,
    DecaEncoder,
    DecaInputError,
    DecaReconstructor,
    MediaPipeFaceBox,
    crop_face,
    crop_window,
    split_deca_codes,
)
from au_face.faces.flame import FlameModel
from au_face.nn.resnet import resnet50
from au_face.utils.assets import MissingAssetError

sys.path.insert(0, str(Path(__file__).parent))
from flame_fixtures import flame_model_dict, write_deca_checkpoint, write_flame_model, write_landmark_embedding

FACE_BOX = (110.0, 70.0, 210.0, 180.0)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("deca")
    torch.manual_seed(0)
    encoder = DecaEncoder()
    return {
        "flame": write_flame_model(folder / "generic_model.pkl"),
        "landmarks": write_landmark_embedding(folder / "landmark_embedding.npy", len(flame_model_dict()["f"])),
        "deca": write_deca_checkpoint(folder / "deca_model.tar", encoder.state_dict()),
    }


@pytest.fixture(scope="module")
def flame(files: dict[str, Path]) -> FlameModel:
    return FlameModel.load(files["flame"], files["landmarks"])


@pytest.fixture(scope="module")
def saved_state(files: dict[str, Path]) -> dict[str, torch.Tensor]:
    return torch.load(files["deca"], weights_only=True)["E_flame"]


@pytest.fixture(scope="module")
def reconstructor(files: dict[str, Path], flame: FlameModel) -> DecaReconstructor:
    def crop_fn(frame: np.ndarray) -> tuple[float, float, float, float] | None:
        return FACE_BOX if frame.any() else None

    return DecaReconstructor(flame, DecaEncoder.load(files["deca"]), crop_fn=crop_fn, keep_crops=True)


def test_resnet50_layout() -> None:
    net = resnet50()
    assert sum(p.numel() for p in net.parameters()) == 23_508_032  # torchvision's ResNet-50 without fc
    assert [len(getattr(net, f"layer{i}")) for i in range(1, 5)] == [3, 4, 6, 3]
    with torch.no_grad():
        assert net.eval()(torch.rand(1, 3, 64, 64)).shape == (1, 2048)  # any size pools to 2048


def test_encoder_uses_deca_key_names() -> None:
    state = DecaEncoder().state_dict()
    for key in (
        "encoder.conv1.weight",
        "encoder.bn1.running_mean",
        "encoder.layer1.0.conv1.weight",
        "encoder.layer1.0.downsample.0.weight",
        "encoder.layer4.2.bn3.running_var",
    ):
        assert key in state
    assert state["layers.0.weight"].shape == (1024, 2048)
    assert state["layers.2.weight"].shape == (DECA_NUM_PARAMS, 1024) == (236, 1024)
    assert not any(k.startswith(("encoder.fc", "layers.1.")) for k in state)


def test_checkpoint_loads_by_key_name(saved_state: dict[str, torch.Tensor], reconstructor: DecaReconstructor) -> None:
    loaded = reconstructor.encoder.state_dict()
    assert loaded.keys() == saved_state.keys()
    for key, value in saved_state.items():
        assert torch.equal(loaded[key], value), key
    assert not reconstructor.encoder.training  # BatchNorm uses the checkpoint's running statistics


def test_checkpoint_with_a_renamed_key_fails_clearly(tmp_path: Path, saved_state: dict[str, torch.Tensor]) -> None:
    state = dict(saved_state)
    state["layers.3.weight"] = state.pop("layers.2.weight")
    path = write_deca_checkpoint(tmp_path / "deca_model.tar", state)
    with pytest.raises(DecaCheckpointError, match=r"missing \(1\): layers.2.weight; unexpected \(1\): layers.3.weight"):
        DecaEncoder.load(path)


def test_state_checks_shapes_and_tolerates_old_batchnorm(saved_state: dict[str, torch.Tensor]) -> None:
    encoder = DecaEncoder()
    old_style = {k: v for k, v in saved_state.items() if not k.endswith("num_batches_tracked")}
    encoder.load_deca_state(old_style)
    torch.testing.assert_close(encoder.state_dict()["layers.0.weight"], saved_state["layers.0.weight"])
    wrong = dict(saved_state, **{"layers.2.weight": torch.zeros(200, 1024)})
    with pytest.raises(DecaCheckpointError, match=r"wrong shape \(1\): layers.2.weight \[200, 1024\] != \[236, 1024\]"):
        encoder.load_deca_state(wrong)


def test_foreign_checkpoints(tmp_path: Path) -> None:
    torch.save({"state_dict": {}}, tmp_path / "other.tar")
    with pytest.raises(DecaCheckpointError, match="no 'E_flame' entry"):
        DecaEncoder.load(tmp_path / "other.tar")
    (tmp_path / "text.tar").write_text("hello")
    with pytest.raises(DecaCheckpointError, match="text.tar is not a readable torch checkpoint"):
        DecaEncoder.load(tmp_path / "text.tar")


def test_missing_files(tmp_path: Path, files: dict[str, Path]) -> None:
    with pytest.raises(MissingAssetError, match="deca_model.tar not found.*yfeng95/DECA"):
        DecaReconstructor.from_files(
            tmp_path / "deca_model.tar", files["flame"], files["landmarks"], crop_fn=lambda f: None
        )
    with pytest.raises(MissingAssetError, match="generic_model.pkl not found.*flame.is.tue.mpg.de"):
        DecaReconstructor.from_files(
            files["deca"], tmp_path / "generic_model.pkl", files["landmarks"], crop_fn=lambda f: None
        )
    with pytest.raises(MissingAssetError, match="landmark_embedding.npy not found"):
        DecaReconstructor.from_files(files["deca"], files["flame"], tmp_path / "lmk.npy", crop_fn=lambda f: None)


def test_code_layout() -> None:
    parts = split_deca_codes(torch.arange(236.0)[None])
    assert {k: v.shape[1] for k, v in parts.items()} == {
        "shape": 100,
        "tex": 50,
        "exp": 50,
        "pose": 6,
        "cam": 3,
        "light": 9,
    }
    assert parts["exp"][0, 0] == 150 and parts["pose"][0, 0] == 200 and parts["cam"][0, 0] == 206
    assert parts["light"].shape == (1, 9, 3) and parts["light"][0, -1, -1] == 235


def test_decode_reproduces_deca_projection(reconstructor: DecaReconstructor, flame: FlameModel) -> None:
    gen = torch.Generator().manual_seed(4)
    codes = torch.zeros(2, 236)
    codes[:, :100] = torch.randn(2, 100, generator=gen)
    codes[:, 150:200] = torch.randn(2, 50, generator=gen)
    codes[:, 200:206] = torch.tensor([[0.2, -0.4, 0.1, 0.15, 0.0, 0.0], [-0.1, 0.3, 0.0, 0.05, 0.02, 0.0]])
    codes[:, 206:209] = torch.tensor([[8.0, 0.01, -0.02], [7.0, -0.03, 0.0]])
    windows = torch.tensor([[160.0, 125.0, 180.0], [300.0, 200.0, 120.0]])
    out = reconstructor.decode(codes, windows)
    posed = (
        out["scale"][:, None, None] * out["vertices"] @ out["rotation"].transpose(1, 2) + out["translation"][:, None]
    )
    # DECA: posed FLAME, orthographic cam s * (xy + t), y flipped, [-1,1] crop coords -> pixels
    parts = split_deca_codes(codes)
    world = flame(parts["shape"], parts["exp"], parts["pose"])
    cam = parts["cam"]
    normalised = cam[:, None, :1] * (world[..., :2] + cam[:, None, 1:])
    normalised[..., 1] *= -1
    pixels = windows[:, None, :2] + normalised * windows[:, None, 2:] / 2
    torch.testing.assert_close(posed[..., :2], pixels, atol=1e-3, rtol=1e-5)
    rot = out["rotation"]
    torch.testing.assert_close(rot @ rot.transpose(1, 2), torch.eye(3).expand(2, 3, 3), atol=1e-5, rtol=0)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(2), atol=1e-5)
    torch.testing.assert_close(
        out["vertices"], flame(parts["shape"], parts["exp"], torch.cat([torch.zeros(2, 3), parts["pose"][:, 3:]], 1))
    )


def test_reconstruct_fields(reconstructor: DecaReconstructor, flame: FlameModel) -> None:
    rng = np.random.default_rng(5)
    face = rng.integers(0, 255, size=(240, 320, 3), dtype=np.uint8)
    frames = [face, np.zeros((240, 320, 3), np.uint8), face]
    seen: list[tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]] = []
    hook = reconstructor.encoder.register_forward_hook(lambda module, args, output: seen.append((args[0], output)))
    try:
        result = reconstructor.reconstruct(frames, [0.0, 0.04, 0.08], fps=25.0)
    finally:
        hook.remove()
    assert isinstance(result, CoarseFrames) and reconstructor.name == "deca"
    assert result.topology == "flame" and result.fps == 25.0
    assert result.valid.tolist() == [True, False, True]
    assert result.vertices.shape == (3, flame.num_vertices, 3)
    assert result.expression.shape == (3, 50) and result.features.shape == (3, 2048)
    assert result.crops.shape == (3, 224, 224, 3) and result.crops.dtype == torch.uint8
    for name in ("vertices", "rotation", "translation", "scale", "landmarks2d", "expression", "features", "crops"):
        assert not getattr(result, name)[1].any(), name
    torch.testing.assert_close(result.vertices[0], result.vertices[2])
    crop = crop_face(face, crop_window(FACE_BOX))
    np.testing.assert_array_equal(result.crops[0].numpy(), crop)
    ((images, (codes, features)),) = seen  # one batch: the two frames with a face, as 224 px crops in [0,1]
    assert images.shape == (2, 3, 224, 224)
    torch.testing.assert_close(images[0], torch.from_numpy(crop).permute(2, 0, 1).float() / 255)
    torch.testing.assert_close(result.features[[0, 2]], features)
    torch.testing.assert_close(result.expression[[0, 2]], codes[:, 150:200])
    landmarks = flame.landmarks3d(result.vertices[[0]])
    expected = result.scale[0] * landmarks[0] @ result.rotation[0].T + result.translation[0]
    torch.testing.assert_close(result.landmarks2d[0], expected[:, :2])
    assert result.timestamps.tolist() == [0.0, 0.04, 0.08]


def test_crop_follows_deca_rule() -> None:
    frame = np.zeros((200, 300, 3), np.uint8)
    frame[95:106, 145:156] = 255  # a white patch centred on (150, 100)
    window = crop_window((120.0, 70.0, 180.0, 130.0))
    assert window == pytest.approx((150.0, 100.0, 60 * 1.1 * 1.25))
    crop = crop_face(frame, window)
    assert crop.shape == (224, 224, 3)
    assert crop[112, 112].min() == 255 and crop[5, 5].max() == 0
    white = np.argwhere(crop[..., 0] > 127)
    assert white.mean(0) == pytest.approx([112, 112], abs=1.5)


def test_input_errors(reconstructor: DecaReconstructor, files: dict[str, Path]) -> None:
    with pytest.raises(DecaInputError, match="RGB uint8"):
        reconstructor.reconstruct([np.zeros((10, 10, 3), np.float32)], [0.0], 25.0)
    with pytest.raises(DecaInputError, match="2 frames but 1 timestamps"):
        reconstructor.reconstruct([np.zeros((10, 10, 3), np.uint8)] * 2, [0.0], 25.0)
    wide = FlameModel.load(files["flame"], files["landmarks"], n_expression=100)
    with pytest.raises(DecaInputError, match="100 shape and 50 expression"):
        DecaReconstructor(wide, reconstructor.encoder, crop_fn=lambda f: None)


def test_from_files_and_reset(files: dict[str, Path]) -> None:
    calls = []

    class Boxes:
        def __call__(self, frame: np.ndarray) -> None:
            return None

        def reset(self) -> None:
            calls.append("reset")

    rec = DecaReconstructor.from_files(files["deca"], files["flame"], files["landmarks"], crop_fn=Boxes())
    rec.reset()
    assert calls == ["reset"]
    result = rec.reconstruct([np.zeros((50, 60, 3), np.uint8)], [0.0], 30.0)
    assert result.num_valid == 0 and result.vertices.shape[1] == rec.topology.num_vertices


def test_mediapipe_face_box_on_a_real_photo(shared_data: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    pytest.importorskip("mediapipe")
    image = cv2.cvtColor(cv2.imread(str(shared_data / "video" / "single_face.jpg")), cv2.COLOR_BGR2RGB)
    finder = MediaPipeFaceBox()
    box = finder(image)
    assert box is not None
    left, top, right, bottom = box
    h, w = image.shape[:2]
    assert 0 <= left < right <= w and 0 <= top < bottom <= h
    assert 0.15 * w < right - left < 0.9 * w and 0.15 * h < bottom - top < 0.9 * h
    finder.reset()
    assert finder(np.zeros_like(image)) is None
    finder.reset()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_decode_on_cuda_matches_cpu(files: dict[str, Path]) -> None:
    codes = 0.1 * torch.randn(1, 236, generator=torch.Generator().manual_seed(6))
    codes[:, 206] = 8.0
    windows = torch.tensor([[100.0, 90.0, 150.0]])
    encoder = DecaEncoder.load(files["deca"])
    results = []
    for device in ("cpu", "cuda"):
        flame = FlameModel.load(files["flame"], files["landmarks"])
        rec = DecaReconstructor(flame, encoder, crop_fn=lambda f: None, device=device)
        results.append({k: v.cpu() for k, v in rec.decode(codes.to(device), windows.to(device)).items()})
    for key, value in results[0].items():
        torch.testing.assert_close(results[1][key], value, atol=1e-4, rtol=1e-4)
