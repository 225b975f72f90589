"""Output formats: npz mesh sequences, per-frame OBJ/PLY, the AU CSV, atomic writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh

from au_face.errors import AUFaceError
from au_face.io.au_csv import HEAD_TO_CAMERA, AUCsvWriter, au_csv_columns, euler_angles, read_au_csv
from au_face.io.meshes import (
    MeshIOError,
    NpzStreamWriter,
    load_mesh_sequence_npz,
    save_mesh_sequence_npz,
    write_frame_meshes,
)


@pytest.fixture()
def sequence() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    vertices = rng.normal(size=(6, 12, 3)).astype(np.float32)
    # vertex 11 is referenced by no triangle: it must survive the round trip anyway
    triangles = np.array([[0, 1, 2], [2, 3, 4], [4, 5, 6], [6, 7, 8], [8, 9, 10]])
    valid = np.array([1, 1, 0, 1, 1, 1], dtype=bool)
    return {"vertices": vertices, "triangles": triangles, "valid": valid, "timestamps": np.arange(6) / 25.0}


def test_npz_round_trip_keeps_extra_arrays(tmp_path: Path, sequence: dict) -> None:
    pose = np.random.default_rng(1).normal(size=(6, 3, 3))
    save_mesh_sequence_npz(tmp_path / "seq.npz", **sequence, rotation=pose, topology=np.asarray("mediapipe"))
    seq = load_mesh_sequence_npz(tmp_path / "seq.npz")
    np.testing.assert_array_equal(seq.vertices, sequence["vertices"])
    np.testing.assert_array_equal(seq.triangles, sequence["triangles"])
    np.testing.assert_array_equal(seq.valid, sequence["valid"])
    np.testing.assert_allclose(seq.timestamps, sequence["timestamps"])
    np.testing.assert_allclose(seq.extra["rotation"], pose)
    assert str(seq.extra["topology"]) == "mediapipe"
    assert len(seq) == 6
    assert [p.name for p in tmp_path.iterdir()] == ["seq.npz"]  # no temporary left behind


def test_npz_chunked_writer_matches_numpy_reader(tmp_path: Path) -> None:
    data = np.arange(5 * 4 * 3, dtype=np.float32).reshape(5, 4, 3)
    with NpzStreamWriter(tmp_path / "c.npz") as writer:
        writer.add_chunks("x", data.shape, data.dtype, [data[:2], data[2:3], data[3:]])
        writer.add("flag", np.asarray(True))
    with np.load(tmp_path / "c.npz") as z:
        np.testing.assert_array_equal(z["x"], data)
        assert bool(z["flag"])


def test_npz_writer_rejects_short_data_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(MeshIOError, match="bytes"):
        with NpzStreamWriter(tmp_path / "c.npz") as writer:
            writer.add_chunks("x", (5, 3), np.float32, [np.zeros((4, 3))])
    assert list(tmp_path.iterdir()) == []


def test_npz_rejects_inconsistent_sequences(tmp_path: Path, sequence: dict) -> None:
    with pytest.raises(MeshIOError, match="valid"):
        save_mesh_sequence_npz(tmp_path / "s.npz", **{**sequence, "valid": np.ones(5, bool)})
    with pytest.raises(MeshIOError, match="triangle ids"):
        save_mesh_sequence_npz(tmp_path / "s.npz", **{**sequence, "triangles": np.array([[0, 1, 12]])})
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(AUFaceError, match="missing"):
        load_mesh_sequence_npz(tmp_path / "other.npz")
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(MeshIOError, match="not a readable npz"):
        load_mesh_sequence_npz(tmp_path / "junk.npz")


@pytest.mark.parametrize("fmt", ["obj", "ply"])
def test_frame_meshes_reload_with_every_vertex(tmp_path: Path, sequence: dict, fmt: str) -> None:
    frames = [10, 12, 14, 16, 18, 20]
    paths = write_frame_meshes(tmp_path, sequence["vertices"], sequence["triangles"], fmt, sequence["valid"], frames)
    assert [p.name for p in paths] == [f"frame_{f:06d}.{fmt}" for f in (10, 12, 16, 18, 20)]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)
    mesh = trimesh.load(paths[2], process=False, maintain_order=True)
    assert mesh.vertices.shape == (12, 3)
    np.testing.assert_allclose(mesh.vertices, sequence["vertices"][3], atol=1e-6)
    np.testing.assert_array_equal(mesh.faces, sequence["triangles"])


def test_frame_meshes_unknown_format(tmp_path: Path, sequence: dict) -> None:
    with pytest.raises(MeshIOError, match="obj, ply"):
        write_frame_meshes(tmp_path, sequence["vertices"], sequence["triangles"], "stl")


def test_au_csv_layout_and_round_trip(tmp_path: Path) -> None:
    aus = [1, 12, 25]
    assert au_csv_columns(aus) == [
        "frame", "face_id", "timestamp", "confidence", "success",
        "pose_Tx", "pose_Ty", "pose_Tz", "pose_Rx", "pose_Ry", "pose_Rz",
        "AU01_p", "AU12_p", "AU25_p", "AU01_c", "AU12_c", "AU25_c",
    ]  # fmt: skip
    probs = np.array([[0.1, 0.7, 0.5], [0.0, 0.0, 0.0], [0.9, 0.2, 0.49]])
    with AUCsvWriter(tmp_path / "aus.csv", aus) as writer:
        writer.write([1, 2], [0.0, 0.04], [True, False], probs[:2], confidence=[0.93, 0.0])
        writer.write([3], [0.08], [True], probs[2:])
        assert not (tmp_path / "aus.csv").exists()  # only a temporary while streaming
    lines = (tmp_path / "aus.csv").read_text().splitlines()
    assert lines[1] == "1,0,0.000,0.93,1,,,,,,,0.1000,0.7000,0.5000,0,1,1"
    assert lines[2] == "2,0,0.040,0.00,0,,,,,,,,,,,,"
    table = read_au_csv(tmp_path / "aus.csv")
    assert table.aus == aus
    np.testing.assert_array_equal(table.frames, [1, 2, 3])
    np.testing.assert_allclose(table.timestamps, [0.0, 0.04, 0.08])
    np.testing.assert_array_equal(table.success, [True, False, True])
    np.testing.assert_allclose(table.probs[[0, 2]], probs[[0, 2]])
    assert np.isnan(table.probs[1]).all()
    np.testing.assert_array_equal(table.occurrence, [[0, 1, 1], [-1, -1, -1], [1, 0, 0]])


def test_au_csv_pose_columns_follow_openface(tmp_path: Path) -> None:
    rx, ry, rz = 0.1, -0.4, 0.25
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    rotation = (
        np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
        @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
        @ np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    )
    np.testing.assert_allclose(euler_angles(rotation[None]), [[rx, ry, rz]], atol=1e-12)
    with AUCsvWriter(tmp_path / "pose.csv", []) as writer:
        head = rotation @ HEAD_TO_CAMERA  # the canonical head y up, z to the viewer: facing the camera is 0
        writer.write(
            [1, 2], [0.0, 0.04], [True, False], rotation=np.stack([head] * 2), translation=[[320.0, 180.5, -2.0]] * 2
        )
    lines = (tmp_path / "pose.csv").read_text().splitlines()
    assert lines == [
        "frame,face_id,timestamp,confidence,success,pose_Tx,pose_Ty,pose_Tz,pose_Rx,pose_Ry,pose_Rz",
        "1,0,0.000,1.00,1,320.0,180.5,-2.0,0.100,-0.400,0.250",
        "2,0,0.040,0.00,0,,,,,,",
    ]
    assert read_au_csv(tmp_path / "pose.csv").aus == []


def test_au_csv_interrupted_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        with AUCsvWriter(tmp_path / "aus.csv", [6]) as writer:
            writer.write([1], [0.0], [True], [[0.3]])
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_au_csv_reader_tolerates_openface_spacing_and_rejects_other_files(tmp_path: Path) -> None:
    (tmp_path / "spaced.csv").write_text(
        "frame, timestamp, confidence, success, AU06_p, AU06_c\n1, 0.5, 0.9, 1, 0.8, 1\n"
    )
    table = read_au_csv(tmp_path / "spaced.csv")
    assert table.aus == [6] and table.probs[0, 0] == pytest.approx(0.8)
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(MeshIOError, match="not an au_face AU csv"):
        read_au_csv(tmp_path / "other.csv")


def test_au_csv_writer_checks_row_shapes(tmp_path: Path) -> None:
    with pytest.raises(MeshIOError, match="AU rows"):
        with AUCsvWriter(tmp_path / "aus.csv", [1, 2]) as writer:
            writer.write([1, 2], [0.0, 0.1], [True, True], np.zeros((2, 3)))
    assert list(tmp_path.iterdir()) == []
