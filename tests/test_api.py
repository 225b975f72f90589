"""``au_face.reconstruct`` and ``au-face reconstruct``: one path, inputs, result object, default model, start-up."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

import au_face
from au_face.cli import main
from au_face.io.meshes import load_mesh_sequence_npz
from dataset_fixtures import face_geometry

pytest.importorskip("mediapipe")

SRC = Path(au_face.__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def single_face(video_dir: Path) -> Path:
    return video_dir / "single_face.mp4"


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained mesh-only model on the MediaPipe topology with random masks, basis and refinement head."""
    import lightning

    from au_face.nn.net import NetConfig

    net = NetConfig(modality="mesh", dim=16, token_hidden=16, spatial_layers=1, temporal_layers=1, heads=2)
    task = au_face.AUFaceTask(face_geometry([6, 12]), net=net, clip_length=16)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        task.model.net.expression_head[-1].weight.normal_(0.0, 0.5, generator=g)  # the head starts at zero (identity)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"
    checkpoint = {
        "state_dict": task.state_dict(),
        "hyper_parameters": dict(task.hparams),
        "pytorch-lightning_version": lightning.__version__,
    }
    task.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="module")
def cli_run(single_face: Path, tiny_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli")
    assert main(["reconstruct", str(single_face), "--ckpt", str(tiny_ckpt), "--out", str(out), "--no-overlay"]) == 0
    return out


def test_library_and_cli_give_identical_meshes_and_probabilities(
    single_face: Path, tiny_ckpt: Path, cli_run: Path
) -> None:
    from au_face.coarse.base import CoarseFrames
    from au_face.coarse.mediapipe import MediaPipeReconstructor
    from au_face.coarse.stream import reconstruct_video

    seq = load_mesh_sequence_npz(cli_run / "single_face_meshes.npz")
    coarse = CoarseFrames.concat(list(reconstruct_video(single_face, MediaPipeReconstructor())))
    assert len(coarse) == 72 > 2 * au_face.load_refiner(tiny_ckpt).clip_length  # several overlapping windows
    refined = au_face.load_refiner(tiny_ckpt).refine(coarse)
    np.testing.assert_allclose(seq.extra["coarse_vertices"], coarse.vertices.numpy(), atol=1e-5)
    assert np.abs(seq.vertices - seq.extra["coarse_vertices"]).max() > 1e-3  # the model did refine
    np.testing.assert_allclose(seq.vertices, refined.vertices.numpy(), atol=1e-5)
    np.testing.assert_allclose(seq.extra["au_probs"], refined.au_probs.numpy(), atol=1e-5)

    result = au_face.reconstruct(single_face, tiny_ckpt)
    assert result.refined and result.paths == {} and result.name == "single_face"
    np.testing.assert_allclose(result.vertices, seq.vertices, atol=1e-5)
    cli_csv = pd.read_csv(cli_run / "single_face_aus.csv")
    assert list(result.aus.columns) == list(cli_csv.columns)
    pd.testing.assert_frame_equal(result.aus, cli_csv, atol=1e-4)


def test_result_object_saves_plots_and_needs_pytorch3d(
    single_face: Path, tiny_ckpt: Path, tmp_path: Path, monkeypatch
) -> None:
    result = au_face.reconstruct(single_face, tiny_ckpt, max_frames=20)
    assert result.num_frames == 20 and result.vertices.shape == (20, 468, 3)
    assert {"AU06_p", "AU12_c", "pose_Rx", "confidence"} <= set(result.aus.columns)
    paths = result.save(tmp_path / "saved")
    assert {p.name for p in paths.values()} == {"single_face_meshes.npz", "single_face_aus.csv", "single_face_aus.png"}
    np.testing.assert_array_equal(load_mesh_sequence_npz(paths["meshes"]).vertices, result.vertices)
    pd.testing.assert_frame_equal(pd.read_csv(result.to_csv(tmp_path / "again.csv")), result.aus)
    assert len(result.plot().axes) == 2  # one row per AU
    monkeypatch.setitem(sys.modules, "pytorch3d", None)
    with pytest.raises(au_face.AUFaceError, match=r"pip install 'au_face\[pytorch3d\]'"):
        result.to_pytorch3d()


def test_to_pytorch3d_gives_one_mesh_per_frame(single_face: Path) -> None:
    pytest.importorskip("pytorch3d.structures")
    result = au_face.reconstruct(single_face, refine=False, max_frames=5)
    meshes = result.to_pytorch3d()
    assert len(meshes) == 5
    torch.testing.assert_close(meshes.verts_padded(), torch.from_numpy(result.vertices))
    assert meshes.faces_padded().shape[1] == result.meshes.triangles.shape[0]


def test_images_and_folders_are_inputs_too(single_face: Path, video_dir: Path, tmp_path: Path) -> None:
    image = au_face.reconstruct(video_dir / "single_face.jpg", refine=False)
    assert image.num_frames == 1 and image.num_valid == 1 and image.name == "single_face"
    with pytest.raises(au_face.AUFaceError, match="stride"):
        au_face.reconstruct(video_dir / "single_face.jpg", refine=False, stride=0)

    frames = tmp_path / "frames"
    frames.mkdir()
    capture = cv2.VideoCapture(str(single_face))
    for i in (1, 2, 10):  # natural order: 2 before 10
        ok, bgr = capture.read()
        cv2.imwrite(str(frames / f"f{i}.png"), bgr)
    capture.release()
    sequence = au_face.reconstruct(frames, refine=False)
    assert sequence.num_frames == 3 and sequence.name == "frames"
    np.testing.assert_allclose(sequence.aus["timestamp"], [0.0, 1 / 30, 2 / 30], atol=1e-3)

    videos = tmp_path / "videos"
    (videos / "a").mkdir(parents=True)
    shutil.copy(single_face, videos / "a" / "clip.mp4")
    shutil.copy(single_face, videos / "clip.mp4")
    results = au_face.reconstruct(videos, refine=False, max_frames=4)
    assert [r.name for r in results] == ["a_clip", "clip"] and all(r.num_frames == 4 for r in results)

    out = tmp_path / "out"
    assert main(["reconstruct", str(videos), "--out", str(out), "--no-refine", "--max-frames", "2"]) == 0
    assert sorted(p.name for p in out.glob("*_overlay.mp4")) == ["a_clip_overlay.mp4", "clip_overlay.mp4"]


def test_overlay_is_h264(single_face: Path, tmp_path: Path) -> None:
    pytest.importorskip("imageio_ffmpeg")
    result = au_face.reconstruct(single_face, refine=False, max_frames=3, out=tmp_path, overlay=True)
    capture = cv2.VideoCapture(str(result.paths["overlay"]))
    fourcc = int(capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode()
    capture.release()
    assert fourcc in ("avc1", "h264")


def test_overlay_styles_draw_different_meshes_and_an_unknown_style_is_refused(
    single_face: Path, tmp_path: Path
) -> None:
    means = {}
    for style in ("wire", "shaded"):
        result = au_face.reconstruct(
            single_face, refine=False, max_frames=2, out=tmp_path / style, overlay=True, overlay_style=style
        )
        capture = cv2.VideoCapture(str(result.paths["overlay"]))
        ok, frame = capture.read()
        capture.release()
        assert ok
        means[style] = frame.astype(float).mean()
    assert abs(means["wire"] - means["shaded"]) > 0.5  # the filled mesh covers more of the frame
    with pytest.raises(au_face.AUFaceError, match="unknown overlay style 'solid'.*wire, shaded"):
        au_face.reconstruct(
            single_face, refine=False, max_frames=2, out=tmp_path / "x", overlay=True, overlay_style="solid"
        )
    assert not (tmp_path / "x").exists() or not list((tmp_path / "x").iterdir())


def test_ckpt_none_uses_the_packaged_model_when_present(single_face: Path, tiny_ckpt: Path, monkeypatch) -> None:
    import au_face.inference.api

    monkeypatch.setattr(au_face.inference.api, "default_checkpoint", lambda: None)
    assert not au_face.reconstruct(single_face, max_frames=3).refined
    monkeypatch.setattr(au_face.inference.api, "default_checkpoint", lambda: tiny_ckpt)
    assert au_face.reconstruct(single_face, max_frames=3).refined
    assert not au_face.reconstruct(single_face, max_frames=3, refine=False).refined


def test_default_checkpoint_is_looked_up_in_the_package() -> None:
    path = au_face.default_checkpoint()
    packaged = SRC / "au_face" / "resources" / "models" / "default.ckpt"
    assert path == (packaged if packaged.is_file() else None)


def test_reconstructor_option_and_registry(single_face: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    from au_face.coarse.registry import (
        RECONSTRUCTORS,
        UnknownReconstructorError,
        build_reconstructor,
        reconstructor_class,
    )

    assert RECONSTRUCTORS == ("mediapipe", "deca", "landmarker") and reconstructor_class("deca").name == "deca"
    with pytest.raises(UnknownReconstructorError, match="choose from mediapipe, deca, landmarker"):
        build_reconstructor("openface")
    monkeypatch.delenv("AU_FACE_DECA", raising=False)
    monkeypatch.delenv("AU_FACE_FLAME", raising=False)
    assert (
        main(["reconstruct", str(single_face), "--out", str(tmp_path), "--reconstructor", "deca", "--no-refine"]) == 2
    )
    assert "AU_FACE" in capsys.readouterr().err  # DECA names the files it needs
    assert main(["reconstruct", str(single_face), "--out", str(tmp_path), "--ckpt", "x.ckpt", "--no-refine"]) == 2
    assert "contradict" in capsys.readouterr().err


def test_mediapipe_confidence_comes_from_the_fit(single_face: Path) -> None:
    from au_face.coarse.mediapipe import MediaPipeReconstructor, fit_confidence

    assert fit_confidence(np.array([0.0, 0.5, 1.5])) == pytest.approx([1.0, 0.5, 0.1])
    capture = cv2.VideoCapture(str(single_face))
    ok, bgr = capture.read()
    capture.release()
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    frames = MediaPipeReconstructor(crop_size=0).reconstruct([rgb, np.zeros_like(rgb)], [0.0, 0.04], 25.0)
    assert 0.6 < float(frames.confidence[0]) < 1.0 and float(frames.confidence[1]) == 0.0


def test_import_and_help_stay_light() -> None:
    heavy = ("torch", "lightning", "mediapipe", "wandb", "pandas")
    code = (
        "import sys, au_face; from au_face.cli import main\n"
        "assert main(['--help']) == 0\n"
        "try:\n    main(['reconstruct', '--bogus'])\nexcept SystemExit:\n    pass\n"
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": str(SRC)}, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_native_logs_are_dropped_but_python_stderr_is_kept() -> None:
    code = (
        "import os, sys\nfrom au_face.utils.quiet import native_logs_silenced\n"
        "with native_logs_silenced():\n    os.write(2, b'native log line\\n')\n    print('python message', file=sys.stderr)\n"
        "os.write(2, b'native after\\n')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": str(SRC)}, check=True
    )
    assert done.stderr.splitlines() == ["python message", "native after"]


def test_max_faces_option_reaches_mediapipe(single_face: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    import au_face.coarse.registry as registry

    built = []
    original = registry.build_reconstructor
    monkeypatch.setattr(registry, "build_reconstructor", lambda *a, **k: built.append(original(*a, **k)) or built[-1])
    assert (
        main(
            [
                "reconstruct",
                str(single_face),
                "--out",
                str(tmp_path / "one"),
                "--no-refine",
                "--no-overlay",
                "--max-faces",
                "1",
            ]
        )
        == 0
    )
    assert built[-1].max_faces == 1
    with pytest.raises(SystemExit) as stop:  # argparse refuses the value itself
        main(["reconstruct", str(single_face), "--out", str(tmp_path / "bad"), "--max-faces", "0"])
    assert stop.value.code == 2 and "max-faces" in capsys.readouterr().err
