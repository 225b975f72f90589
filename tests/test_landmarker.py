"""The MediaPipe Face Landmarker (Tasks API) reconstructor from a user-supplied ``.task`` file.

Google's ``face_landmarker.task`` is not on the test machines, so a bundle is built from the
models in the mediapipe wheel: the short-range face detector, the legacy 468-point landmark
model with a PADV2 op appended (478 x 3 outputs, the 10 iris points at the crop centre: the
Tasks graph reads exactly 478 points), and a one-layer blendshape model whose scores are its bias (0, 1/51, ..., 1).
That tests the whole Tasks-API path (bundle, graph, video mode, coordinates, blendshape order);
the landmark model is Face Mesh's own, so it must agree with the legacy reconstructor closely.
Google's model itself is tested only when ``$AU_FACE_LANDMARKER`` points to it.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import warnings
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

pytest.importorskip("mediapipe")

from au_face.cli import main
from au_face.coarse.base import CoarseFrames
from au_face.coarse.landmarker import (
    BLENDSHAPE_NAMES,
    MODEL_ENV,
    FaceLandmarkerReconstructor,
    LandmarkerModelError,
    resolve_model,
)
from au_face.coarse.mediapipe import ImplausibleFitWarning, MediaPipeReconstructor, MultipleFacesWarning
from au_face.coarse.registry import (
    RECONSTRUCTORS,
    ReconstructorOptionError,
    build_reconstructor,
    reconstructor_version,
)
from au_face.coarse.stream import reconstruct_video
from au_face.io.meshes import load_mesh_sequence_npz
from au_face.io.video import VideoReader
from au_face.utils.assets import MissingAssetError

#: Scores the test bundle's blendshape model gives every face (its bias).
TEST_SCORES = np.linspace(0.0, 1.0, len(BLENDSHAPE_NAMES), dtype=np.float32)


# ------------------------------------------------------------------------- the test bundle
def _wheel_model(relative: str) -> bytes:
    import mediapipe

    return (Path(mediapipe.__file__).parent / "modules" / relative).read_bytes()


def _pack(model) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def landmarks_478_model() -> bytes:
    """The wheel's 468-point ``face_landmark.tflite`` with its landmark output padded to 478 x 3.

    The 10 added (iris) points sit at the centre of the model's 192 x 192 crop, inside the face, so
    the face box the Tasks graph draws around all 478 points for tracking is the mesh's own."""
    from mediapipe.tasks.metadata import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(
        schema.Model.GetRootAsModel(_wheel_model("face_landmark/face_landmark.tflite"), 0)
    )
    graph = model.subgraphs[0]
    landmarks, presence = graph.outputs
    assert list(graph.tensors[landmarks].shape) == [1, 1, 1, 1404]
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.PADV2
    code.version = 1
    model.operatorCodes.append(code)

    def add_tensor(shape, dtype, data: bytes | None, name: bytes) -> int:
        buffer = schema.BufferT()
        if data is not None:
            buffer.data = data
        model.buffers.append(buffer)
        tensor = schema.TensorT()
        tensor.shape, tensor.type, tensor.buffer, tensor.name = shape, dtype, len(model.buffers) - 1, name
        graph.tensors.append(tensor)
        return len(graph.tensors) - 1

    paddings = add_tensor(
        [4, 2], schema.TensorType.INT32, np.array([[0, 0]] * 3 + [[0, 30]], np.int32).tobytes(), b"iris_padding"
    )
    centre = add_tensor([], schema.TensorType.FLOAT32, np.array(96.0, np.float32).tobytes(), b"crop_centre")
    padded = add_tensor([1, 1, 1, 1434], schema.TensorType.FLOAT32, None, b"landmarks_478")
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = len(model.operatorCodes) - 1, [landmarks, paddings, centre], [padded]
    op.builtinOptionsType, op.builtinOptions = schema.BuiltinOptions.PadV2Options, schema.PadV2OptionsT()
    graph.operators.append(op)
    graph.outputs = [padded, presence]
    return _pack(model)


def constant_blendshapes_model() -> bytes:
    """A TFLite model ``[1,146,2] -> [1,52]``: one fully connected layer, zero weights, bias :data:`TEST_SCORES`."""
    from mediapipe.tasks.metadata import schema_py_generated as schema

    model = schema.ModelT()
    model.version = 3
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.FULLY_CONNECTED
    code.version = 1
    model.operatorCodes = [code]
    arrays = [None, None, np.zeros((52, 292), np.float32), TEST_SCORES, None]
    model.buffers = []
    for array in arrays:
        buffer = schema.BufferT()
        if array is not None:
            buffer.data = array.tobytes()
        model.buffers.append(buffer)
    graph = schema.SubGraphT()
    graph.tensors = []
    for shape, buffer, name in (
        ([1, 146, 2], 1, b"landmarks"),
        ([52, 292], 2, b"weights"),
        ([52], 3, b"bias"),
        ([1, 52], 4, b"scores"),
    ):
        tensor = schema.TensorT()
        tensor.shape, tensor.type, tensor.buffer, tensor.name = shape, schema.TensorType.FLOAT32, buffer, name
        graph.tensors.append(tensor)
    graph.inputs, graph.outputs = [0], [3]
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0, 1, 2], [3]
    op.builtinOptionsType, op.builtinOptions = (
        schema.BuiltinOptions.FullyConnectedOptions,
        schema.FullyConnectedOptionsT(),
    )
    graph.operators = [op]
    model.subgraphs = [graph]
    return _pack(model)


def write_bundle(path: Path, files: dict[str, bytes]) -> Path:
    from mediapipe.tasks.python.metadata.metadata_writers.model_asset_bundle_utils import create_model_asset_bundle

    create_model_asset_bundle(files, str(path))
    return path


@pytest.fixture(scope="module")
def bundle_files() -> dict[str, bytes]:
    return {
        "face_detector.tflite": _wheel_model("face_detection/face_detection_short_range.tflite"),
        "face_landmarks_detector.tflite": landmarks_478_model(),
        "face_blendshapes.tflite": constant_blendshapes_model(),
    }


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, bundle_files: dict[str, bytes]) -> Path:
    """A working Face Landmarker ``.task`` built from the mediapipe wheel's models."""
    return write_bundle(tmp_path_factory.mktemp("bundle") / "test_landmarker.task", bundle_files)


@pytest.fixture(scope="module")
def landmarker(bundle: Path) -> FaceLandmarkerReconstructor:
    return FaceLandmarkerReconstructor(bundle)


@pytest.fixture(scope="module")
def legacy() -> MediaPipeReconstructor:
    return MediaPipeReconstructor()


@pytest.fixture(scope="module")
def photo(video_dir: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(video_dir / "single_face.jpg")), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def real_model() -> Path:
    """Google's face_landmarker.task, when ``$AU_FACE_LANDMARKER`` names it."""
    value = os.environ.get(MODEL_ENV)
    if not value or not Path(value).is_file():
        pytest.skip(f"Google's face_landmarker.task is not on this machine (set {MODEL_ENV} to test it)")
    return Path(value)


def _one_frame(reconstructor, rgb: np.ndarray) -> CoarseFrames:
    reconstructor.reset()
    return reconstructor.reconstruct([rgb], [0.0], 30.0)


def _face_width(frames: CoarseFrames) -> torch.Tensor:
    x = frames.posed_vertices()[..., 0]
    return x.amax(-1) - x.amin(-1)


# ----------------------------------------------------------------------------- reconstruction
def test_photo_agrees_with_the_legacy_face_mesh(landmarker, legacy, photo: np.ndarray) -> None:
    new, old = _one_frame(landmarker, photo), _one_frame(legacy, photo)
    assert new.valid.tolist() == [True] and old.valid.tolist() == [True]
    assert new.topology == "mediapipe" == old.topology and new.topology == landmarker.topology.name
    assert new.vertices.shape == (1, 468, 3) and torch.isfinite(new.vertices).all()
    assert new.landmarks2d.shape == (1, 68, 2) and new.crops.shape == (1, 112, 112, 3)
    # same landmark model, same face box rule: the points in the image must coincide
    image = (new.posed_vertices() - old.posed_vertices())[0, :, :2].norm(dim=-1)
    assert float(image.mean()) < 0.5, f"mean 2D distance {float(image.mean()):.3f} px"
    assert float(_face_width(old)[0]) > 100  # a real face, not a degenerate mesh
    assert abs(float(new.scale[0] / old.scale[0]) - 1) < 0.01  # z in the same units as x
    assert float((new.vertices - old.vertices).norm(dim=-1).mean()) < 0.05  # template units (cm)
    assert float(new.confidence[0]) > 0.5


def test_blendshape_scores_are_the_expression(landmarker, photo: np.ndarray) -> None:
    from mediapipe.tasks.python.vision.face_landmarker import Blendshapes

    assert len(BLENDSHAPE_NAMES) == len(Blendshapes) == 52
    assert (
        BLENDSHAPE_NAMES[Blendshapes.JAW_OPEN] == "jawOpen"
        and BLENDSHAPE_NAMES[Blendshapes.NOSE_SNEER_RIGHT] == "noseSneerRight"
    )
    blank = np.zeros_like(photo)
    out = landmarker.reconstruct([photo, blank, photo], [0.0, 0.04, 0.08], 25.0)
    assert out.valid.tolist() == [True, False, True]
    assert out.expression.shape == (3, 52) and out.expression.dtype == torch.float32
    np.testing.assert_allclose(out.expression[0].numpy(), TEST_SCORES, atol=1e-6)  # in model output order
    np.testing.assert_allclose(out.expression[2].numpy(), TEST_SCORES, atol=1e-6)
    assert not out.expression[1].any()  # no face: zeros


def test_small_face_found_in_tiles_keeps_its_blendshapes(landmarker, photo: np.ndarray) -> None:
    """A face too small for the detector's view of the whole frame is found in a tile, with its scores."""
    frame = np.full((720, 1280, 3), 100, np.uint8)
    small = cv2.resize(photo, None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA)
    frame[400 : 400 + small.shape[0], 900 : 900 + small.shape[1]] = small
    out = _one_frame(landmarker, frame)
    assert out.valid.tolist() == [True]
    x = out.posed_vertices()[0, :, 0]
    assert 900 < float(x.min()) and float(x.max()) < 900 + small.shape[1]  # on the small face, in the frame's pixels
    np.testing.assert_allclose(out.expression[0].numpy(), TEST_SCORES, atol=1e-6)


def test_bundle_without_blendshapes_has_no_expression(
    tmp_path: Path, bundle_files: dict[str, bytes], photo: np.ndarray
) -> None:
    files = {k: v for k, v in bundle_files.items() if k != "face_blendshapes.tflite"}
    reconstructor = FaceLandmarkerReconstructor(write_bundle(tmp_path / "no_blendshapes.task", files))
    out = _one_frame(reconstructor, photo)
    assert out.valid.tolist() == [True] and out.expression is None
    assert FaceLandmarkerReconstructor(Path(tmp_path / "no_blendshapes.task"), blendshapes=False).blendshapes is False


def test_video_mode_tracks_and_agrees_with_legacy(landmarker, legacy, video_dir: Path) -> None:
    video = video_dir / "single_face.mp4"
    chunks = list(reconstruct_video(video, landmarker, chunk_size=32))
    assert [len(c) for c in chunks] == [32, 32, 8]
    new = CoarseFrames.concat(chunks)
    old = CoarseFrames.concat(list(reconstruct_video(video, legacy, chunk_size=32)))
    assert new.num_valid == 72 == old.num_valid
    assert new.expression.shape == (72, 52) and torch.isfinite(new.vertices).all()
    np.testing.assert_array_equal(new.timestamps.numpy(), old.timestamps.numpy())
    image = (new.posed_vertices() - old.posed_vertices())[..., :2].norm(dim=-1).mean(-1) / _face_width(old)
    assert float(image.mean()) < 0.02, f"mean 2D distance {100 * float(image.mean()):.2f} % of the face width"
    canonical = (new.vertices - old.vertices).norm(dim=-1).mean(-1)
    assert float(canonical.mean()) < 0.3, f"canonical distance {float(canonical.mean()):.3f} cm"
    # a second pass after reset gives the same (the graph restarts its clock), and so does a direct
    # call with repeated timestamps (kept strictly increasing)
    again = CoarseFrames.concat(list(reconstruct_video(video, landmarker, chunk_size=72)))
    assert float((again.vertices - new.vertices).abs().max()) < 1e-3
    with VideoReader(video) as reader:
        frames = [f.rgb for _, f in zip(range(3), reader)]
    landmarker.reset()
    assert landmarker.reconstruct(frames, [0.0, 0.0, 0.0], 25.0).num_valid == 3
    assert landmarker.detect(frames[0]) is not None  # no timestamp: the next millisecond


def test_upside_down_face_is_not_valid(landmarker, photo: np.ndarray) -> None:
    turned = np.ascontiguousarray(photo[::-1, ::-1])
    landmarker.reset()
    with pytest.warns(ImplausibleFitWarning, match="Face Landmarker fits it far better"):
        out = landmarker.reconstruct([turned, turned], [0.0, 0.04], 25.0)
    assert not out.valid.any() and not out.expression.any()


def test_largest_of_several_faces_is_used(landmarker, photo: np.ndarray) -> None:
    small = cv2.resize(photo, (photo.shape[1] // 2, photo.shape[0] // 2))
    canvas = np.zeros((photo.shape[0], photo.shape[1] + small.shape[1] + 20, 3), np.uint8)
    canvas[:, : photo.shape[1]] = photo
    canvas[: small.shape[0], photo.shape[1] + 20 :] = small
    landmarker.reset()
    with pytest.warns(MultipleFacesWarning, match="2 faces in view"):
        out = landmarker.reconstruct([canvas], [0.0], 25.0)
    centre = out.posed_vertices()[0, :, 0].mean()
    assert out.num_valid == 1 and float(centre) < photo.shape[1]  # the large face on the left


def test_every_face_of_a_photo_keeps_its_blendshapes(landmarker, photo: np.ndarray) -> None:
    small = cv2.resize(photo, (photo.shape[1] // 2, photo.shape[0] // 2))
    canvas = np.zeros((photo.shape[0], photo.shape[1] + small.shape[1] + 20, 3), np.uint8)
    canvas[:, small.shape[1] + 20 :] = photo
    canvas[: small.shape[0], : small.shape[1]] = small
    out = landmarker.reconstruct_faces(canvas, 25.0)
    assert out["valid"].tolist() == [True, True]
    assert out["translation"][0, 0] < small.shape[1] < out["translation"][1, 0]  # left to right
    np.testing.assert_allclose(out["expression"], np.stack([TEST_SCORES] * 2), atol=1e-6)  # each row its own face's


def test_pickles_without_its_graphs(landmarker, photo: np.ndarray) -> None:
    _one_frame(landmarker, photo)
    copy = pickle.loads(pickle.dumps(landmarker))
    assert copy._mesh is None and copy.model_path == landmarker.model_path
    assert _one_frame(copy, photo).num_valid == 1
    copy.close()


# ------------------------------------------------------------------------------- registry
def test_registry_and_environment_variable(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "landmarker" in RECONSTRUCTORS and reconstructor_version("landmarker") == FaceLandmarkerReconstructor.version
    monkeypatch.setenv(MODEL_ENV, str(bundle))
    built = build_reconstructor("landmarker")
    assert isinstance(built, FaceLandmarkerReconstructor) and built.model_path == bundle
    assert build_reconstructor("landmarker", model_path=bundle).name == "landmarker"
    with pytest.raises(ReconstructorOptionError, match="not mediapipe"):
        build_reconstructor("mediapipe", model_path=bundle)
    monkeypatch.delenv(MODEL_ENV)
    with pytest.raises(MissingAssetError, match="face_landmarker.task"):
        build_reconstructor("landmarker")


# ------------------------------------------------------------------------------ bad model files
@pytest.fixture(scope="module")
def bad_models(
    tmp_path_factory: pytest.TempPathFactory, bundle: Path, bundle_files: dict[str, bytes]
) -> dict[str, tuple[Path, str]]:
    """Bad ``.task`` files and a phrase the error about each must contain."""
    root = tmp_path_factory.mktemp("bad")
    text = root / "notes.task"
    text.write_text("this is not a model\n")
    cut = root / "cut.task"
    cut.write_bytes(bundle.read_bytes()[:100_000])
    flipped = bytearray(bundle.read_bytes())
    with zipfile.ZipFile(bundle) as z:
        info = z.getinfo("face_landmarks_detector.tflite")
    middle = info.header_offset + 200 + info.file_size // 2
    flipped[middle] ^= 0xFF
    damaged = root / "damaged.task"
    damaged.write_bytes(bytes(flipped))
    only_detector = write_bundle(
        root / "detector_only.task", {"face_detector.tflite": bundle_files["face_detector.tflite"], "x.txt": b"x"}
    )
    legacy_points = write_bundle(
        root / "legacy_468.task",
        {
            "face_detector.tflite": bundle_files["face_detector.tflite"],
            "face_landmarks_detector.tflite": _wheel_model("face_landmark/face_landmark.tflite"),
        },
    )
    garbage = write_bundle(
        root / "garbage.task", {"face_detector.tflite": b"\0" * 64, "face_landmarks_detector.tflite": b"junk" * 4}
    )
    return {
        "missing": (root / "nowhere" / "face_landmarker.task", "not found"),
        "folder": (root, "is a folder"),
        "text": (text, "zip archive"),
        "truncated": (cut, "zip archive"),
        "damaged": (damaged, "damaged"),
        "incomplete": (only_detector, "lacks face_landmarks_detector.tflite"),
        "468 points": (legacy_points, "outputs 1404 values"),
        "garbage": (garbage, "not a readable TFLite model"),
    }


def test_bad_model_files_are_refused_before_any_work(bad_models: dict[str, tuple[Path, str]]) -> None:
    for name, (path, phrase) in bad_models.items():
        with pytest.raises((LandmarkerModelError, MissingAssetError)) as caught:
            resolve_model(path)
        message = str(caught.value)
        assert phrase in message and str(path) in message, name
        assert "face_landmarker.task" in message or "Face Landmarker" in message, name


def _one_line_error(capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    assert main(argv) == 2, argv
    err = capsys.readouterr().err.strip()
    assert err.startswith("au-face: error:") and "\n" not in err and "Traceback" not in err, err
    return err


def test_cli_model_errors(
    bad_models: dict[str, tuple[Path, str]],
    photo: np.ndarray,
    bundle: Path,
    bundle_files: dict[str, bytes],
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    image = tmp_path / "face.png"
    cv2.imwrite(str(image), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    video = tmp_path / "videos" / "face.avi"
    video.parent.mkdir()
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (photo.shape[1], photo.shape[0]))
    for _ in range(3):
        writer.write(cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    writer.release()
    reconstruct = [
        "reconstruct",
        str(image),
        "--out",
        str(tmp_path / "out"),
        "--no-refine",
        "--no-overlay",
        "--reconstructor",
        "landmarker",
    ]
    preprocess = ["preprocess", str(video), "--out", str(tmp_path / "cache"), "--reconstructor", "landmarker"]
    monkeypatch.delenv(MODEL_ENV, raising=False)
    for argv in (reconstruct, preprocess):
        err = _one_line_error(capsys, argv)
        assert "--landmarker-model" in err and MODEL_ENV in err and "face_landmarker.task" in err and "MediaPipe" in err
        for name, (path, phrase) in bad_models.items():
            assert phrase in _one_line_error(capsys, [*argv, "--landmarker-model", str(path)]), name
    bad_detector = write_bundle(
        tmp_path / "bad_detector.task",
        {
            "face_detector.tflite": b"junk" * 16,
            "face_landmarks_detector.tflite": bundle_files["face_landmarks_detector.tflite"],
        },
    )
    assert "MediaPipe cannot load" in _one_line_error(capsys, [*reconstruct, "--landmarker-model", str(bad_detector)])
    monkeypatch.setenv(MODEL_ENV, str(bad_models["text"][0]))
    assert "zip archive" in _one_line_error(capsys, reconstruct)
    wrong = [
        "reconstruct",
        str(image),
        "--out",
        str(tmp_path / "out"),
        "--no-refine",
        "--landmarker-model",
        str(bundle),
    ]
    assert "applies to --reconstructor landmarker" in _one_line_error(capsys, wrong)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# ------------------------------------------------------------------------------ CLI end to end
def test_cli_reconstruct_and_preprocess(
    bundle: Path, video_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    argv = ["reconstruct", str(video_dir / "single_face.jpg"), "--out", str(out), "--no-refine", "--no-overlay"]
    assert main([*argv, "--reconstructor", "landmarker", "--landmarker-model", str(bundle), "--max-faces", "1"]) == 0
    seq = load_mesh_sequence_npz(next(out.rglob("*.npz")))
    assert seq.vertices.shape == (1, 468, 3) and seq.valid.tolist() == [True]
    assert str(seq.extra["topology"]) == "mediapipe"
    np.testing.assert_allclose(seq.extra["expression"][0], TEST_SCORES, atol=1e-6)

    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy2(video_dir / "single_face.mp4", videos / "clip.mp4")
    cache = tmp_path / "cache"
    argv = ["preprocess", str(videos), "--out", str(cache), "--max-frames", "8", "--reconstructor", "landmarker"]
    assert main([*argv, "--landmarker-model", str(bundle)]) == 0
    assert "1 of 1 videos processed" in capsys.readouterr().out
    manifest = json.loads(next(cache.rglob("manifest.json")).read_text())
    assert "landmarker" in json.dumps(manifest)
    cached = CoarseFrames.load(next(p for p in cache.rglob("*.npz")))
    assert (
        len(cached) == 8
        and cached.num_valid == 8
        and cached.topology == "mediapipe"
        and cached.expression.shape == (8, 52)
    )


# ------------------------------------------------------------------------- Google's real model
def test_real_face_landmarker_model(real_model: Path, legacy, photo: np.ndarray) -> None:
    reconstructor = FaceLandmarkerReconstructor(real_model)
    assert reconstructor.blendshapes
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an upright single face: no warning
        new = _one_frame(reconstructor, photo)
    old = _one_frame(legacy, photo)
    assert new.valid.tolist() == [True] and new.topology == "mediapipe" and torch.isfinite(new.vertices).all()
    image = (new.posed_vertices() - old.posed_vertices())[0, :, :2].norm(dim=-1)
    assert float(image.mean()) < 0.02 * float(_face_width(old)[0]), f"mean 2D distance {float(image.mean()):.2f} px"
    assert abs(float(new.scale[0] / old.scale[0]) - 1) < 0.05
    scores = dict(zip(BLENDSHAPE_NAMES, new.expression[0].tolist()))
    assert scores["mouthSmileLeft"] > 0.4 and scores["mouthSmileRight"] > 0.4  # the photo smiles
    assert scores["jawOpen"] < scores["mouthSmileLeft"]
