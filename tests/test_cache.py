"""CoarseCache: keys, manifest, staleness, leftovers, concurrent writers, the command to run."""

from __future__ import annotations

import json
import multiprocessing
import os
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from au_face.coarse.base import CoarseFrames
from au_face.data.cache import CacheMissError, CoarseCache


def fake_record(num_frames: int = 5, num_valid: int = 5) -> CoarseFrames:
    g = torch.Generator().manual_seed(num_frames)
    valid = torch.arange(num_frames) < num_valid
    vertices = torch.randn(num_frames, 468, 3, generator=g) * valid[:, None, None]
    return CoarseFrames.from_canonical(vertices, valid, fps=30.0, topology="mediapipe")


def cache_video(cache: CoarseCache, video: Path, num_frames: int = 5) -> None:
    fake_record(num_frames).save(cache.prepare(video))
    cache.record(video, "done", num_frames, num_frames)


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for name in ("s1/t1.mp4", "s1/t2.mp4", "s2/t1.mp4", "odd name (1).mov"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(os.urandom(64))
    return root


def test_keys_are_safe_unique_and_relative(dataset: Path, tmp_path: Path) -> None:
    cache = CoarseCache(tmp_path / "cache", "mediapipe", "1", base=dataset)
    keys = [cache.key(dataset / n) for n in ("s1/t1.mp4", "s1/t2.mp4", "s2/t1.mp4", "odd name (1).mov")]
    assert len(set(keys)) == 4
    assert keys[0].startswith("s1__t1.mp4-")
    assert all(set(k) <= set("abcdefghijklmnopqrstuvwxyz0123456789_.-") for k in keys[:3])
    assert "/" not in keys[3] and " " not in keys[3] and not keys[3].startswith(".")
    assert cache.relative_name(dataset / "s1/t1.mp4") == "s1/t1.mp4"
    other = CoarseCache(tmp_path / "cache", "mediapipe", "1", base=tmp_path / "elsewhere")
    assert other.relative_name(dataset / "s1/t1.mp4") == str((dataset / "s1/t1.mp4").resolve())


def test_record_load_and_staleness(dataset: Path, tmp_path: Path) -> None:
    cache = CoarseCache(tmp_path / "cache", "mediapipe", "1", base=dataset)
    video = dataset / "s1/t1.mp4"
    assert not cache.is_done(video) and cache.missing([video]) == [video]
    cache_video(cache, video)
    assert cache.is_done(video) and cache.missing([video]) == []
    assert cache.load(video).vertices.shape == (5, 468, 3)
    manifest = json.loads((tmp_path / "cache/manifest.json").read_text())["videos"]
    entry = manifest[cache.key(video)]
    assert entry["source"] == str(video.resolve()) and entry["frames"] == 5 and entry["status"] == "done"
    assert entry["reconstructor"] == "mediapipe" and entry["version"] == "1" and entry["size"] == 64
    # another version, stride or frame limit does not count
    for other in (
        CoarseCache(tmp_path / "cache", "mediapipe", "2", base=dataset),
        CoarseCache(tmp_path / "cache", "deca", "1", base=dataset),
        CoarseCache(tmp_path / "cache", "mediapipe", "1", base=dataset, stride=2),
        CoarseCache(tmp_path / "cache", "mediapipe", "1", base=dataset, max_frames=10),
    ):
        assert not other.is_done(video)
    # a changed source file makes the entry stale
    stat = video.stat()
    os.utime(video, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert not cache.is_done(video)
    with pytest.raises(CacheMissError, match="au-face preprocess"):
        cache.load(video)


def test_damaged_npz_is_not_done(dataset: Path, tmp_path: Path) -> None:
    cache = CoarseCache(tmp_path / "cache", "mediapipe", "1", base=dataset)
    video = dataset / "s1/t2.mp4"
    cache_video(cache, video)
    cache.path(video).write_bytes(b"PK\x03\x04 half written")
    assert not cache.is_done(video)
    fake_record(7).save(cache.path(video))  # readable, but not the recorded frame count
    assert not cache.is_done(video)
    cache.path(video).unlink()
    assert not cache.is_done(video)


def test_prepare_removes_leftovers_of_killed_writers(dataset: Path, tmp_path: Path) -> None:
    cache = CoarseCache(tmp_path / "cache", "mediapipe", "1", base=dataset)
    video, other = dataset / "s1/t1.mp4", dataset / "s2/t1.mp4"
    cache_video(cache, other)
    name = cache.path(video).name
    (cache.root / f".{name}.abc123.tmp").write_bytes(b"partial")
    (cache.root / f".{name}.spool.xyz").mkdir()
    (cache.root / f".{name}.spool.xyz" / "vertices.bin").write_bytes(b"partial")
    (cache.root / ".manifest.json.q1w2.tmp.json").write_text("{")
    assert cache.prepare(video) == cache.path(video)
    assert not list(cache.root.glob(f".{name}.*"))
    cache.record(other, "done", 5, 5)
    assert not list(cache.root.glob(".manifest.json.*"))
    assert cache.is_done(other)


def test_relocated_dataset_keeps_its_cache(dataset: Path, tmp_path: Path) -> None:
    cache = CoarseCache(tmp_path / "cache", "mediapipe", "1", base=dataset)
    cache_video(cache, dataset / "s2/t1.mp4")
    moved = tmp_path / "moved"
    shutil.copytree(dataset, moved)  # copy2 keeps mtimes
    assert CoarseCache(tmp_path / "cache", "mediapipe", "1", base=moved).is_done(moved / "s2/t1.mp4")


def test_unreadable_manifest_means_redo(dataset: Path, tmp_path: Path) -> None:
    cache = CoarseCache(tmp_path / "cache", "mediapipe", "1", base=dataset)
    video = dataset / "s1/t1.mp4"
    cache_video(cache, video)
    cache.manifest_path.write_text("{not json")
    with pytest.warns(UserWarning, match="unreadable"):
        assert not cache.is_done(video)


def test_missing_message_is_the_command_to_run(dataset: Path, tmp_path: Path) -> None:
    cache = CoarseCache(tmp_path / "cache", "mediapipe", "1", base=dataset, stride=2)
    videos = sorted(dataset.rglob("*.mp4"))
    cache_video(cache, videos[0])
    message = cache.missing_message(videos)
    assert message.startswith("2 of 3 videos have no coarse reconstruction")
    argv = shlex.split(message.splitlines()[1])
    assert argv[:2] == ["au-face", "preprocess"]
    assert [Path(a) for a in argv[2:4]] == videos[1:]
    options = dict(zip(argv[4::2], argv[5::2]))
    assert options == {
        "--out": str(cache.root),
        "--base": str(dataset.resolve()),
        "--stride": "2",
        "--reconstructor": "mediapipe",
    }
    cache_video(cache, videos[1])
    cache_video(cache, videos[2])
    assert cache.missing_message(videos) == ""


def _record_many(root: str, base: str, names: list[str]) -> None:
    cache = CoarseCache(root, "mediapipe", "1", base=base)
    for name in names:
        cache.record(Path(base) / name, "done", 1, 1)


def test_concurrent_writers_lose_no_entry(tmp_path: Path) -> None:
    base = tmp_path / "videos"
    base.mkdir()
    names = [f"v{i:02d}.mp4" for i in range(30)]
    for name in names:
        (base / name).write_bytes(b"x")
    context = multiprocessing.get_context("fork")
    workers = [
        context.Process(target=_record_many, args=(str(tmp_path / "cache"), str(base), names[i::3])) for i in range(3)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    manifest = CoarseCache(tmp_path / "cache", "mediapipe", "1", base=base).manifest()
    assert len(manifest) == 30
    assert np.all([e["status"] == "done" for e in manifest.values()])


def test_from_canonical_has_identity_pose_and_fps_timestamps() -> None:
    record = fake_record(num_frames=4, num_valid=3)
    assert torch.equal(record.posed_vertices(), record.vertices)
    assert torch.allclose(record.timestamps, torch.tensor([0.0, 1 / 30, 2 / 30, 3 / 30], dtype=torch.float64))
    assert torch.allclose(record.mean_shape(), record.vertices[:3].mean(0))
