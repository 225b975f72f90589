"""``benchmarks/bench_real_faces.py``'s Face Landmarker column: which bundle it uses, and the CSV it judges."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_real_faces as bench
from au_face.io.au_csv import AUCsvWriter


def test_the_landmarker_bundle_is_the_given_one_then_the_environments_then_the_shared_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    given, from_env = tmp_path / "given.task", tmp_path / "env.task"
    shared = tmp_path / "shared"
    shipped = shared / "data" / "mediapipe" / "face_landmarker.task"
    shipped.parent.mkdir(parents=True)
    for path in (given, from_env, shipped):
        path.write_bytes(b"bundle")
    monkeypatch.setenv(bench.MODEL_ENV, str(from_env))
    assert bench.landmarker_model(given, shared) == given
    assert bench.landmarker_model(tmp_path / "missing.task", shared) == from_env
    monkeypatch.delenv(bench.MODEL_ENV)
    assert bench.landmarker_model(None, shared) == shipped
    shipped.unlink()
    assert bench.landmarker_model(None, shared) is None


def test_face_landmarker_on_the_smiling_photo_is_written_as_the_checks_read_it(
    shared_data: Path, tmp_path: Path
) -> None:
    bundle = shared_data / "mediapipe" / "face_landmarker.task"
    if not bundle.is_file():
        pytest.skip(f"needs Face Landmarker's bundle at {bundle}")
    out = tmp_path / "landmarker"
    bench.write_landmarker(str(shared_data / "video" / "single_face.jpg"), tmp_path / "run", out, bundle)
    rows = list(csv.DictReader(open(out / "landmarker.csv")))
    assert len(rows) == 1
    columns = {int(name[2:4]) for name in rows[0] if name.startswith("AU") and name.endswith("_p")}
    assert columns == set(bench.LANDMARKER_AUS)
    scores = {au: float(rows[0][f"AU{au:02d}_p"]) for au in columns}
    assert all(0.0 <= s <= 1.0 for s in scores.values())
    assert scores[12] > 0.5 > scores[4], scores  # the peer consensus on this photo: a smile, no frown
    with np.load(out / "landmarker.npz") as z:  # its own meshes, for the lip checks
        assert z["vertices"].shape == (1, 468, 3) and bool(z["valid"][0])


def test_on_rates_count_the_frames_with_a_face_only(tmp_path: Path) -> None:
    probs = np.array([[0.9, 0.1], [0.0, 0.0], [0.5, 0.2], [0.2, 0.7], [0.6, 0.49]])
    with AUCsvWriter(tmp_path / "clip_aus.csv", [12, 45]) as writer:
        writer.write(np.arange(1, 6), np.arange(5) / 30, np.array([1, 0, 1, 1, 1], dtype=bool), probs)
    rates, per_frame = bench.clip_on_rates(tmp_path)
    assert rates == pytest.approx({12: 0.75, 45: 0.25})
    assert per_frame == pytest.approx(1.0)
