"""Every face of a video: faces linked into tracks, each reconstructed on its own (``--all-faces``)."""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

import au_face
from au_face.cli import main
from au_face.coarse.shots import shot_change, thumbnail
from au_face.coarse.tracks import MIN_TRACK_FRAMES, TRACK_GAP, FaceTrack, link_faces


def _face(x: float, y: float, width: float = 100.0) -> np.ndarray:
    """A stand-in face: points spanning ``width`` px around the centre ``(x, y)``."""
    return np.array([[x - width / 2, y, 0.0], [x + width / 2, y, 0.0]])


def test_faces_are_linked_by_nearness_through_short_gaps() -> None:
    frames: list[list[np.ndarray]] = []
    for i in range(40):
        faces = [_face(600 - 2 * i, 200)]  # first seen, on the right, moving left
        if i >= 3 and not 10 <= i < 20:  # seen from frame 3, then lost for 10 frames
            faces.append(_face(100 + 3 * i, 220))
        if i == 5:
            faces.append(_face(900, 500))  # glimpsed once: not a track
        frames.append(faces)
    right, left = link_faces(frames)
    assert right.frames.tolist() == list(range(40))
    assert left.frames[0] == 3 and len(left) == 40 - 3 - 10  # one track across the gap
    np.testing.assert_allclose(left.centres[-1], [100 + 3 * 39, 220])
    # first seen first; faces first seen on one frame are numbered from the left
    a, b = link_faces([[_face(500, 0), _face(100, 0)]] * MIN_TRACK_FRAMES)
    assert a.centres[0, 0] == 100 and b.centres[0, 0] == 500
    # a face more than half its width from where a track was is another face
    assert len(link_faces([[_face(100, 0)]] * 10 + [[_face(160, 0)]] * 10)) == 2
    # in a video shorter than MIN_TRACK_FRAMES a face seen throughout is kept
    assert len(link_faces([[_face(100, 0)]] * 3)) == 1
    # one face found twice on each frame is one track
    assert len(link_faces([[_face(100, 0), _face(104, 2)]] * 10)) == 1


def test_no_track_goes_on_across_a_shot_change() -> None:
    frames = [[_face(300, 200)]] * 20
    first, second = link_faces(frames, shots=[12])
    assert first.frames.tolist() == list(range(12)) and second.frames.tolist() == list(range(12, 20))
    assert first.pick(14, [_face(300, 200)]) is None  # (past its last sight: the other track's face)


def test_a_cut_is_a_shot_change_and_a_face_coming_into_view_is_not(video_dir: Path) -> None:
    capture = cv2.VideoCapture(str(video_dir / "WolfgangLanger_Pexels.mp4"))
    frames = [cv2.cvtColor(capture.read()[1], cv2.COLOR_BGR2RGB) for _ in range(3)]
    capture.release()
    face, moved = thumbnail(frames[0]), thumbnail(frames[2])
    assert not shot_change(face, moved)  # two frames on
    grey = np.full_like(frames[0], 60)
    half = frames[0].copy()
    half[:, : half.shape[1] // 2] = 60  # a person coming into view on one half
    assert not shot_change(thumbnail(grey), thumbnail(half))
    other = np.ascontiguousarray(frames[0][::-1, ::-1, ::-1])  # another picture, as after a cut
    assert shot_change(face, thumbnail(other)) and shot_change(thumbnail(grey), face)


def _frames(video: Path, start: int, count: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(video))
    capture.set(cv2.CAP_PROP_POS_FRAMES, start)
    frames = [cv2.cvtColor(capture.read()[1], cv2.COLOR_BGR2RGB) for _ in range(count)]
    capture.release()
    return frames


def test_tracking_starts_again_at_a_cut(video_dir: Path, tmp_path: Path) -> None:
    """Face Mesh's tracker carried the last shot's points over a cut: a laughing face read with its
    mouth closed for most of a second. Now the frames after a cut are tracked as the shot alone."""
    pytest.importorskip("mediapipe")
    from au_face.coarse.mediapipe import MediaPipeReconstructor, ShotChangeWarning

    before = _frames(video_dir / "single_face.mp4", 0, 10)
    after = _frames(video_dir / "WolfgangLanger_Pexels.mp4", 270, 16)
    reconstructor = MediaPipeReconstructor()
    try:
        with pytest.warns(ShotChangeWarning, match="cuts to another shot at 0.33 s"):
            both = reconstructor.reconstruct_arrays(before + after, [i / 30 for i in range(26)], 30.0)
        reconstructor.reset()
        alone = reconstructor.reconstruct_arrays(after, [i / 30 for i in range(16)], 30.0)
    finally:
        reconstructor.close()
    np.testing.assert_allclose(both["vertices"][10:], alone["vertices"], atol=1e-5)
    path = tmp_path / "cut.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (640, 360))
    for frame in before + after:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    with au_face.Reconstructor(refine=False) as reconstruct, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        faces = reconstruct(path, all_faces=True)
    assert [np.flatnonzero(r.meshes.valid).tolist() for r in faces] == [list(range(10)), list(range(10, 26))]
    assert not [w for w in caught if issubclass(w.category, ShotChangeWarning)]  # each shot is read apart


def test_a_track_picks_its_face_near_where_it_was_seen() -> None:
    track = FaceTrack(np.array([0, 1, 2, 100]), np.array([[100.0, 0], [104, 0], [108, 0], [300, 0]]), np.full(4, 100.0))
    ours, other = _face(110, 0), _face(400, 0)
    assert track.pick(3, [other, ours]) is ours
    assert track.pick(2 + TRACK_GAP + 1, [other, ours]) is None  # not seen within TRACK_GAP frames
    assert track.pick(99, [other, _face(310, 0)])[0, 0] == 260  # seen again soon after: where it was then
    assert track.pick(3, [_face(170, 0)]) is None  # another face, not this one


@pytest.fixture(scope="module")
def pair_video(video_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 36 frames of single_face.mp4 beside their mirror image (two faces, 1280×360)."""
    capture = cv2.VideoCapture(str(video_dir / "single_face.mp4"))
    path = tmp_path_factory.mktemp("videos") / "pair.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (1280, 360))
    for _ in range(36):
        frame = capture.read()[1]
        writer.write(np.concatenate([frame, frame[:, ::-1]], axis=1))
    writer.release()
    capture.release()
    return path


def test_every_face_of_a_video_is_reconstructed_as_if_alone(pair_video: Path, video_dir: Path) -> None:
    pytest.importorskip("mediapipe")
    with au_face.Reconstructor() as reconstruct, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (two faces in view)
        faces = reconstruct(pair_video, all_faces=True)
        alone = reconstruct(video_dir / "single_face.mp4", max_frames=36)
        one = reconstruct(video_dir / "single_face.mp4", max_frames=36, all_faces=True)
    assert [r.name for r in faces] == ["pair_face0", "pair_face1"]
    assert [r.aus["face_id"].unique().tolist() for r in faces] == [[0], [1]]
    assert all(r.num_frames == r.num_valid == 36 for r in faces)
    left, right = (r.aus["pose_Tx"].mean() for r in faces)
    assert left < 640 < right
    # the left face is the clip's own: it reads as the clip alone does
    assert np.abs(faces[0].aus.filter(like="_p").to_numpy() - alone.aus.filter(like="_p").to_numpy()).mean() < 0.03
    # a video with one face gives what it gives without all_faces
    assert len(one) == 1 and one[0].name == "single_face_face0"
    np.testing.assert_array_equal(one[0].vertices, alone.vertices)


def test_the_all_faces_command_on_a_video(pair_video: Path, tmp_path: Path, capsys) -> None:
    pytest.importorskip("mediapipe")
    out = tmp_path / "out"
    assert main(["reconstruct", str(pair_video), "--all-faces", "--no-overlay", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        f"pair_face{k}_{kind}" for k in (0, 1) for kind in ("aus.csv", "aus.png", "meshes.npz")
    ]
    assert pd.read_csv(out / "pair_face1_aus.csv")["face_id"].eq(1).all()
    blank = tmp_path / "blank.mp4"
    writer = cv2.VideoWriter(str(blank), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (320, 240))
    for _ in range(10):
        writer.write(np.full((240, 320, 3), 90, np.uint8))
    writer.release()
    capsys.readouterr()
    assert main(["reconstruct", str(blank), "--all-faces", "--out", str(out)]) == 2
    assert "no face found" in capsys.readouterr().err
