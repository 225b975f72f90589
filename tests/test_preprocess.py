"""``au-face preprocess``: Trainer.predict into the cache, failures reported, kill/restart safe."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

pytest.importorskip("mediapipe")

from au_face.coarse.base import CoarseFrames
from au_face.coarse.mediapipe import MediaPipeReconstructor
from au_face.commands import preprocess
from au_face.commands.preprocess import PreprocessInputError, collect_videos
from au_face.data.cache import CoarseCache


def run_cli(argv: list[str]) -> int:
    return preprocess.main(argv)


def cache_for(out: Path, base: Path, **settings) -> CoarseCache:
    return CoarseCache(out, "mediapipe", MediaPipeReconstructor.version, base=base, **settings)


@pytest.fixture
def videos(tmp_path: Path, video_dir: Path) -> Path:
    """A folder with one good video in a subfolder, a text file named .mp4 and a truncated mp4."""
    root = tmp_path / "videos"
    (root / "sub").mkdir(parents=True)
    shutil.copy2(video_dir / "single_face.mp4", root / "sub" / "good.mp4")
    (root / "notes.mp4").write_text("not a video\n" * 20)
    data = (video_dir / "single_face.mp4").read_bytes()
    (root / "cut.mp4").write_bytes(data[: len(data) // 3])
    (root / "readme.txt").write_text("ignored: not a video extension")
    return root


def test_collect_videos(videos: Path, tmp_path: Path) -> None:
    found = collect_videos([videos, videos / "sub" / "good.mp4"])
    assert sorted(p.name for p in found) == ["cut.mp4", "good.mp4", "notes.mp4"]  # recursive, no duplicates
    with pytest.raises(PreprocessInputError, match="no such video"):
        collect_videos([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(PreprocessInputError, match="no videos"):
        collect_videos([tmp_path / "empty"])
    assert run_cli([str(tmp_path / "missing"), "--out", str(tmp_path / "out")]) == 2


def test_missing_deca_assets_are_a_clear_error(
    videos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    for var in ("AU_FACE_DECA", "AU_FACE_FLAME", "AU_FACE_FLAME_LANDMARKS"):
        monkeypatch.delenv(var, raising=False)
    assert run_cli([str(videos), "--out", str(tmp_path / "out"), "--reconstructor", "deca"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("au-face: error:") and "AU_FACE_" in err and "Traceback" not in err


def test_failures_are_reported_and_others_processed(
    videos: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "cache"
    assert run_cli([str(videos), "--out", str(out), "--max-frames", "12"]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    table = {line.split()[0]: line.split()[1:] for line in captured.out.splitlines()[1:4]}
    assert table["sub/good.mp4"] == ["12", "12", "done"]
    assert table["notes.mp4"] == ["0", "0", "failed"] and table["cut.mp4"] == ["0", "0", "failed"]
    assert "notes.mp4: OpenCV cannot open it as a video" in captured.err
    assert "cut.mp4: OpenCV cannot open it as a video" in captured.err
    cache = cache_for(out, videos, max_frames=12)
    record = cache.load(videos / "sub" / "good.mp4")
    assert len(record) == 12 and record.num_valid == 12 and record.crops.shape == (12, 112, 112, 3)
    manifest = json.loads((out / "manifest.json").read_text())["videos"]
    assert {e["status"] for e in manifest.values()} == {"done", "failed"}
    # a rerun skips the finished video and retries the failed ones
    assert run_cli([str(videos), "--out", str(out), "--max-frames", "12"]) == 1
    rerun = capsys.readouterr().out
    assert "sub/good.mp4" in rerun and " cached" in rerun and "2 of 3 videos processed" in rerun
    # other settings are another result: redone
    (videos / "notes.mp4").unlink()
    (videos / "cut.mp4").unlink()
    assert run_cli([str(videos), "--out", str(out), "--max-frames", "12", "--stride", "3"]) == 0
    assert " done" in capsys.readouterr().out
    record = cache_for(out, videos, stride=3, max_frames=12).load(videos / "sub" / "good.mp4")
    assert np.allclose(np.diff(record.timestamps.numpy()), 0.1, atol=1e-3)


def test_no_face_video_is_cached_but_reported(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    writer = cv2.VideoWriter(str(folder / "wall.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25, (96, 64))
    for i in range(8):
        writer.write(np.full((64, 96, 3), 30 * i, np.uint8))
    writer.release()
    assert run_cli([str(folder), "--out", str(tmp_path / "cache")]) == 1
    captured = capsys.readouterr()
    assert "no_face" in captured.out and "no face found in any of the 8 frames" in captured.err
    record = cache_for(tmp_path / "cache", folder).load(folder / "wall.avi")
    assert len(record) == 8 and record.num_valid == 0


def test_planted_half_written_file_is_redone(tmp_path: Path, video_dir: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copy2(video_dir / "single_face.mp4", folder / "a.mp4")
    cache = cache_for(tmp_path / "cache", folder, max_frames=6)
    cache.root.mkdir()
    cache.path(folder / "a.mp4").write_bytes(b"PK\x03\x04" + os.urandom(500))  # garbage, not in the manifest
    assert run_cli([str(folder), "--out", str(cache.root), "--max-frames", "6"]) == 0
    assert " done" in capsys.readouterr().out
    assert cache.load(folder / "a.mp4").num_valid == 6


def test_kill_and_restart(tmp_path: Path, video_dir: Path) -> None:
    folder, out = tmp_path / "videos", tmp_path / "cache"
    folder.mkdir()
    names = [f"clip{i}.mp4" for i in range(5)]
    for name in names:
        shutil.copy2(video_dir / "single_face.mp4", folder / name)
    command = [sys.executable, "-m", "au_face.commands.preprocess", str(folder), "--out", str(out)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 60
    while not list(out.glob("clip*.npz")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished_before = len(list(out.glob("clip*.npz")))
    assert 1 <= finished_before < len(names), "the kill should land part-way through the videos"
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    cache = cache_for(out, folder)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == sorted(
        [cache.path(folder / n).name for n in names] + ["manifest.json"]
    )
    assert not [p for p in out.iterdir() if ".tmp" in p.name or ".spool." in p.name]  # no leftovers
    manifest = cache.manifest()
    assert len(manifest) == len(names) and all(e["status"] == "done" for e in manifest.values())
    for name in names:
        record = CoarseFrames.load(cache.path(folder / name))
        assert len(record) == 72 and record.num_valid == 72
    table = done.stdout.splitlines()
    assert sum(" cached" in line for line in table) >= finished_before - 1  # finished videos were not redone


def test_appearance_caches_descriptors_in_a_version_of_their_own(tmp_path: Path, video_dir: Path) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copy2(video_dir / "single_face.mp4", folder / "a.mp4")
    out = tmp_path / "cache"
    assert run_cli([str(folder), "--out", str(out), "--max-frames", "4", "--appearance"]) == 0
    record = cache_for(out, folder, max_frames=4, appearance=True).load(folder / "a.mp4")
    assert record.appearance is not None and record.appearance.shape[0] == 4 == record.num_valid
    assert torch.isfinite(record.appearance).all() and (record.appearance.abs().sum(dim=1) > 0).all()
    assert cache_for(out, folder, max_frames=4).missing([folder / "a.mp4"]), "the plain version is not there"


def test_appearance_needs_a_reconstructor_on_mediapipe_points(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from au_face.coarse import registry

    class Flame:  # a reconstructor without appearance descriptors (DECA's FLAME meshes)
        name, version = "mediapipe", "1"

        @classmethod
        def create(cls, device: str = "cpu") -> Flame:
            return cls()

    monkeypatch.setattr(registry, "reconstructor_class", lambda name: Flame)
    (tmp_path / "a.mp4").write_bytes(b"not read")
    assert run_cli([str(tmp_path / "a.mp4"), "--out", str(tmp_path / "c"), "--appearance"]) == 2
    assert "--appearance needs a reconstructor on MediaPipe's points" in capsys.readouterr().err


def test_descriptors_computed_on_their_thread_are_the_frames_own(tmp_path: Path, video_dir: Path) -> None:
    """Descriptors come from a thread while the next frames are tracked: each is its own frame's."""
    from au_face.faces.appearance import appearance_descriptor

    cap = cv2.VideoCapture(str(video_dir / "single_face.mp4"))
    frames = [cv2.cvtColor(cap.read()[1], cv2.COLOR_BGR2RGB) for _ in range(6)]
    cap.release()
    reconstructor = MediaPipeReconstructor(crop_size=0, appearance=True)
    try:
        record = CoarseFrames.from_numpy(reconstructor.reconstruct_arrays(frames, [i / 25 for i in range(6)], 25.0))
    finally:
        reconstructor.close()
    points = record.posed_vertices().numpy()
    want = np.stack([appearance_descriptor(frame, p) for frame, p in zip(frames, points)])
    assert record.num_valid == 6
    got = record.appearance.numpy()
    # the points come back through the pose in float32: a pixel's rounding may move a few HOG values
    # (on one machine 2 of 42,336 values moved by 0.0105): few values move, by little, and the mean stays tiny
    difference = np.abs(got - want)
    assert difference.max() < 0.05 and difference.mean() < 1e-4 and (difference > 0.01).mean() < 1e-3
    distances = np.linalg.norm(got[:, None] - want[None], axis=-1)
    assert (distances.argmin(axis=1) == np.arange(6)).all(), "each descriptor is nearest its own frame's"


def test_a_forked_copy_of_a_reconstructor_describes_on_its_own_thread() -> None:
    import multiprocessing

    from au_face.faces.appearance import LEFT_EYE, RIGHT_EYE

    reconstructor = MediaPipeReconstructor(crop_size=0, appearance=True)
    points = np.zeros((468, 3))
    points[:, :2] = 150.0
    points[list(RIGHT_EYE), 0], points[list(LEFT_EYE), 0] = 120.0, 180.0
    image = np.full((300, 300, 3), 128, np.uint8)
    parent = reconstructor._describe(image, points).result(timeout=30)  # the parent's thread exists now
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=lambda: queue.put(reconstructor._describe(image, points).result(timeout=30)))
    child.start()
    child.join(timeout=60)
    try:
        assert child.exitcode == 0, "the forked copy hung or failed on the parent's thread"
        np.testing.assert_array_equal(queue.get(timeout=5), parent)
    finally:
        if child.is_alive():
            child.kill()
        reconstructor.close()
