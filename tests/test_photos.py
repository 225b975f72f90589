"""Photo collections (``--photos``, a list of paths) against a folder of frames (one video, ``--fps``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

import au_face
from au_face.cli import main
from au_face.coarse.mediapipe import MediaPipeReconstructor, MultipleFacesWarning
from au_face.inference.api import UsageError
from au_face.inference.photos import UnreadablePhotoWarning, reconstruct_photos
from au_face.io.meshes import load_mesh_sequence_npz
from au_face.io.sources import FrameRateAssumedWarning

pytest.importorskip("mediapipe")


@pytest.fixture(scope="module")
def two_people(video_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with two different people: the single-face photo and a frame of the Pexels clip."""
    folder = tmp_path_factory.mktemp("photos")
    shutil.copy(video_dir / "single_face.jpg", folder / "a_single_face.jpg")
    capture = cv2.VideoCapture(str(video_dir / "WolfgangLanger_Pexels.mp4"))
    capture.set(cv2.CAP_PROP_POS_FRAMES, 30)
    ok, frame = capture.read()
    capture.release()
    assert ok
    cv2.imwrite(str(folder / "b_wolfgang.png"), frame)
    return folder


@pytest.fixture(scope="module")
def reconstructor():
    with au_face.Reconstructor() as reconstruct:
        yield reconstruct


def test_two_people_in_a_photo_folder_get_independent_references(two_people: Path, reconstructor) -> None:
    collection = reconstructor(two_people, photos=True)
    names = ["a_single_face.jpg", "b_wolfgang.png"]
    assert collection.photos and collection.num_frames == collection.num_valid == 2
    assert list(collection.aus["file"]) == names and list(collection.aus["success"]) == [1, 1]
    reference = collection.meshes.extra["reference"]
    assert reference.shape == (2, 468, 3)
    # each photo's S̄ and AUs are what that photo gives alone: the other person changes nothing
    for i, name in enumerate(names):
        alone = reconstructor([two_people / name])
        np.testing.assert_allclose(alone.meshes.extra["reference"][0], reference[i], atol=1e-5)
        np.testing.assert_allclose(
            alone.aus.filter(like="_p").to_numpy()[0],
            collection.aus.filter(like="_p").to_numpy()[i],
            atol=1e-5,
        )
    shape_gap = np.linalg.norm(reference[0] - reference[1], axis=-1).mean()
    assert shape_gap > 0.05, "two different faces give two different S̄"
    swapped = reconstructor([two_people / names[1], two_people / names[0]])
    np.testing.assert_allclose(swapped.meshes.extra["reference"][::-1], reference, atol=1e-5)


def test_a_folder_of_frames_stays_one_video_with_a_stated_frame_rate(
    two_people: Path, tmp_path: Path, reconstructor, video_dir: Path
) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        shutil.copy(two_people / "a_single_face.jpg", frames / f"frame_{i}.jpg")
    with pytest.warns(FrameRateAssumedWarning, match="assuming 30 fps"):
        video = reconstructor(frames)
    assert not video.photos and "file" not in video.aus.columns
    np.testing.assert_allclose(video.aus["timestamp"], [0, 1 / 30, 2 / 30], atol=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FrameRateAssumedWarning)
        at_25 = reconstructor(frames, fps=25)
    np.testing.assert_allclose(at_25.aus["timestamp"], [0, 0.04, 0.08], atol=1e-3)
    assert float(at_25.meshes.extra["fps"]) == 25.0
    with warnings.catch_warnings():
        warnings.simplefilter("error", FrameRateAssumedWarning)
        drawn = reconstructor(frames, fps=25, out=tmp_path / "out", overlay=True)
    capture = cv2.VideoCapture(str(drawn.paths["overlay"]))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(25.0) and capture.get(cv2.CAP_PROP_FRAME_COUNT) == 3
    capture.release()
    with pytest.raises(UsageError, match="fps apply to videos and frames"):
        reconstructor(frames, photos=True, fps=25)
    with pytest.raises(au_face.AUFaceError, match="a video has its own"):
        reconstructor(video_dir / "single_face.mp4", fps=25)


def test_the_photos_command_writes_one_csv_and_meshes_named_by_file(two_people: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert (
        main(
            [
                "reconstruct",
                str(two_people),
                "--photos",
                "--out",
                str(out),
                "--mesh-format",
                "obj",
            ]
        )
        == 0
    )
    name = two_people.name
    table = pd.read_csv(out / f"{name}_aus.csv")
    assert list(table["file"]) == ["a_single_face.jpg", "b_wolfgang.png"] and table["AU12_p"].notna().all()
    seq = load_mesh_sequence_npz(out / f"{name}_meshes.npz")
    assert seq.vertices.shape == (2, 468, 3) and list(seq.extra["files"]) == list(table["file"])
    assert sorted(p.name for p in (out / f"{name}_meshes").iterdir()) == [
        "a_single_face.jpg.obj",
        "b_wolfgang.png.obj",
    ]
    assert not list(out.glob("*.png")) and not list(out.glob("*.mp4")), "no AU plot and no overlay for photos"
    assert (
        main(
            [
                "reconstruct",
                str(two_people),
                "--photos",
                "--fps",
                "25",
                "--out",
                str(out),
            ]
        )
        == 2
    )


def test_a_photo_without_a_face_keeps_an_empty_row(two_people: Path, tmp_path: Path, reconstructor) -> None:
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((120, 160, 3), 200, np.uint8))
    with pytest.warns(UserWarning, match="no face found in blank.png"):
        collection = reconstructor([two_people / "a_single_face.jpg", blank])
    assert (
        list(collection.aus["success"]) == [1, 0] and collection.aus.loc[1, "AU12_p"] != collection.aus.loc[1, "AU12_p"]
    )
    cut = tmp_path / "cut.jpg"
    cut.write_bytes((two_people / "a_single_face.jpg").read_bytes()[:5000])
    with pytest.warns(UnreadablePhotoWarning, match="cannot read cut.jpg.*truncated JPEG"):
        collection = reconstructor([cut, two_people / "a_single_face.jpg"])
    assert list(collection.aus["success"]) == [0, 1]
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo")
    with pytest.raises(au_face.AUFaceError, match="notes.txt is not an image"):
        reconstructor([two_people / "a_single_face.jpg", notes])
    with pytest.raises(au_face.AUFaceError, match="is a folder, not an image"):
        reconstructor([two_people / "a_single_face.jpg", two_people])


def test_a_collection_keeps_one_still_image_graph_and_tries_turning_only_poor_fits(
    two_people: Path, monkeypatch
) -> None:
    """No tracking graph is started per photo: one still-image graph serves every photo, and the
    180° check (a second graph) runs only for fits worse than UPRIGHT_RESIDUAL."""
    from au_face.coarse import mediapipe

    built: list[str] = []
    original = mediapipe.MediaPipeReconstructor._face_mesh

    def counting(self, mode: str, faces: int = 1):
        built.append(mode)
        return original(self, mode, faces)

    monkeypatch.setattr(mediapipe.MediaPipeReconstructor, "_face_mesh", counting)
    photos = sorted(two_people.iterdir()) * 2
    monkeypatch.setattr(mediapipe, "UPRIGHT_RESIDUAL", 10.0)  # every fit is good: no photo is tried turned
    with au_face.Reconstructor(refine=False) as reconstruct:
        assert reconstruct(photos).num_valid == 4
        assert built == ["still"], "one still-image graph for all photos, no check of well-fitting faces"
        monkeypatch.setattr(mediapipe, "UPRIGHT_RESIDUAL", 0.0)  # every fit is poor: each photo is tried turned
        assert reconstruct(photos).num_valid == 4
    assert built == ["still", "turned"], "the graph of the check is kept too"


def test_a_still_photo_gets_the_points_of_a_fresh_tracking_graph(two_people: Path) -> None:
    from au_face.coarse.base import SHOT_FIELD
    from au_face.coarse.mediapipe import MediaPipeReconstructor

    reconstructor = MediaPipeReconstructor()
    try:
        for photo in sorted(two_people.iterdir()):
            rgb = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)
            still = reconstructor.reconstruct_still(rgb, 30.0)
            reconstructor.reset()
            tracked = reconstructor.reconstruct_arrays([rgb], [0.0], 30.0)
            assert set(still) == set(tracked) - {SHOT_FIELD} and still["valid"][0]  # (a shot is video's)
            for key in still:
                np.testing.assert_array_equal(still[key], tracked[key], err_msg=key)
    finally:
        reconstructor.close()


def _collection(folder: Path, tmp_path: Path) -> list[Path]:
    """Five photos: the two people (one mirrored), a blank image and a cut JPEG."""
    photos = [folder / "a_single_face.jpg", folder / "b_wolfgang.png"]
    mirrored = tmp_path / "c_mirrored.jpg"
    cv2.imwrite(str(mirrored), cv2.imread(str(photos[1]))[:, ::-1])
    blank = tmp_path / "d_blank.png"
    cv2.imwrite(str(blank), np.full((120, 160, 3), 200, np.uint8))
    cut = tmp_path / "e_cut.jpg"
    cut.write_bytes(photos[0].read_bytes()[:5000])
    return [*photos, mirrored, blank, cut]


def test_batched_refinement_gives_each_photo_what_it_gets_alone(two_people: Path, tmp_path: Path) -> None:
    """One S̄ fit and one forward for a batch of photos give what reference() and refine() give each alone."""
    import torch

    from au_face.coarse.base import CoarseFrames
    from au_face.coarse.mediapipe import MediaPipeReconstructor
    from au_face.inference.passes import refine_photos

    refiner = au_face.load_refiner(au_face.default_checkpoint())
    reconstructor = MediaPipeReconstructor(appearance="appearance" in refiner.frame_inputs)
    try:
        frames = [
            reconstructor.reconstruct_still(cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB), 30.0)
            for p in _collection(two_people, tmp_path)[:4]
        ]
    finally:
        reconstructor.close()
    stacked = {k: np.concatenate([f[k] for f in frames]) for k in frames[0] if frames[0][k].ndim}
    stacked.update(fps=frames[0]["fps"], topology=frames[0]["topology"])
    batched = refine_photos(refiner, stacked)
    assert list(stacked["valid"]) == [True, True, True, False]
    assert np.isnan(batched["au_probs"][3]).all() and not batched["reference"][3].any()
    for i in range(3):
        alone = CoarseFrames.from_numpy(frames[i])
        with torch.inference_mode():
            reference = refiner.reference(alone)
            out = refiner.refine(alone, reference=reference)
        np.testing.assert_allclose(batched["reference"][i], reference.numpy(), atol=1e-4)
        np.testing.assert_allclose(batched["vertices"][i], out.vertices[0].numpy(), atol=1e-4)
        np.testing.assert_allclose(batched["au_probs"][i], out.au_probs[0].numpy(), atol=1e-4)
    assert np.abs(batched["au_probs"][0] - batched["au_probs"][1]).max() > 0.05, "two people, two readings"


#: Photos tracked by a fresh process and a forked one, refined in a refiner process, in batches of 2.
FORKED = """
import sys
from au_face.coarse.mediapipe import MediaPipeReconstructor
from au_face.inference import photos
from au_face.inference.api import open_refiner

photos.BATCH_PHOTOS = 2
with open_refiner(fork=True) as refiner:
    assert type(refiner).__name__ == "RefinerProcess"
    photos.reconstruct_photos(sys.argv[2:], sys.argv[1], MediaPipeReconstructor(), refiner, workers=2)
"""


def test_two_tracking_processes_give_the_rows_of_one(two_people: Path, tmp_path: Path, monkeypatch) -> None:
    """Forked from a fresh process (as ``au-face reconstruct --photos`` does), two tracking processes and
    a refiner process give the files of one process refining in place, row for row."""
    from au_face.inference import photos as photo_mode

    monkeypatch.setattr(photo_mode, "BATCH_PHOTOS", 2)
    collection = _collection(two_people, tmp_path) * 3
    with au_face.Reconstructor() as reconstruct, pytest.warns(UnreadablePhotoWarning, match="e_cut.jpg"):
        with pytest.warns(UserWarning, match="no face found in .*d_blank.png"):
            photo_mode.reconstruct_photos(collection, tmp_path / "one", reconstruct.coarse, reconstruct.refiner)
    forked = subprocess.run(
        [sys.executable, "-c", FORKED, str(tmp_path / "two"), *map(str, collection)], capture_output=True, text=True
    )
    assert forked.returncode == 0, forked.stderr[-2000:]
    one, two = (pd.read_csv(tmp_path / run / "photos_aus.csv") for run in ("one", "two"))
    assert list(one["file"]) == [p.as_posix() for p in collection] and list(one["success"]) == [1, 1, 1, 0, 0] * 3
    pd.testing.assert_frame_equal(one, two)
    meshes = [load_mesh_sequence_npz(tmp_path / run / "photos_meshes.npz") for run in ("one", "two")]
    np.testing.assert_array_equal(meshes[0].vertices, meshes[1].vertices)
    np.testing.assert_array_equal(meshes[0].extra["reference"], meshes[1].extra["reference"])


@pytest.fixture(scope="module")
def group_photo(two_people: Path) -> Path:
    """The two people of ``two_people`` side by side in one photo, on grey (the single face on the left)."""
    left, right = (cv2.imread(str(p)) for p in sorted(two_people.iterdir()))
    height = max(left.shape[0], right.shape[0])
    padded = [
        cv2.copyMakeBorder(x, 0, height - x.shape[0], 0, 0, cv2.BORDER_CONSTANT, value=(128,) * 3)
        for x in (left, right)
    ]
    path = two_people.parent / "group.png"
    cv2.imwrite(str(path), np.concatenate(padded, axis=1))
    return path


def test_every_face_of_a_photo_gets_its_own_row_as_if_alone(
    group_photo: Path, two_people: Path, tmp_path: Path, reconstructor
) -> None:
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((120, 160, 3), 200, np.uint8))
    people = sorted(two_people.iterdir())
    photos = [group_photo, *people, blank]
    with pytest.warns(UserWarning, match="no face found in blank.png"):
        every = reconstructor(photos, all_faces=True)
    table = every.aus
    assert list(table["file"]) == ["group.png", "group.png", people[0].name, people[1].name, "blank.png"]
    assert list(table["frame"]) == [1, 1, 2, 3, 4] and list(table["face_id"]) == [0, 1, 0, 0, 0]
    assert list(table["success"]) == [1, 1, 1, 1, 0]
    assert (every.num_frames, every.num_valid, every.num_faces) == (4, 3, 4) and "(4 faces)" in every.summary()
    assert list(every.meshes.extra["face_id"]) == list(table["face_id"])
    probs = table.filter(like="_p").to_numpy()
    # each face of the group reads as that person's photo alone (the same pixels, elsewhere in the frame)
    for row, alone in ((0, 2), (1, 3)):
        assert np.abs(probs[row] - probs[alone]).mean() < 0.05
    assert table.loc[0, "pose_Tx"] < table.loc[1, "pose_Tx"]  # numbered from the left
    assert table.loc[0, "AU12_c"] == table.loc[2, "AU12_c"] == 1  # the smiling photo's smile
    # a photo with one face gives the row it gives without all_faces
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (the group's second face is ignored there)
        plain = reconstructor(photos)
    np.testing.assert_allclose(plain.aus.filter(like="_p").to_numpy()[1:3], probs[2:4], atol=1e-6)
    assert plain.num_faces == plain.num_valid == 3 and list(plain.aus["face_id"]) == [0, 0, 0, 0]


def test_the_all_faces_command_names_each_face(group_photo: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["reconstruct", str(group_photo), "--all-faces", "--out", str(out), "--mesh-format", "obj"]) == 0
    assert pd.read_csv(out / "group_aus.csv")["face_id"].tolist() == [0, 1]
    assert sorted(p.name for p in (out / "group_meshes").iterdir()) == ["group.png_face0.obj", "group.png_face1.obj"]
    capsys.readouterr()
    assert main(["reconstruct", str(group_photo), "--all-faces", "--max-faces", "2", "--out", str(out)]) == 2
    assert "--all-faces keeps every face" in capsys.readouterr().err


def test_a_face_found_only_in_a_tile_must_be_found_again() -> None:
    """In a tile Face Mesh's detector can take a spacesuit for a face; looked at again around it, that is
    not found, and the real faces are (they were not found in the whole frame either)."""
    from au_face.coarse.mediapipe import MediaPipeReconstructor

    astronaut = pytest.importorskip("skimage.data").astronaut()
    pair = np.ascontiguousarray(np.concatenate([astronaut, astronaut[:, ::-1]], axis=1))
    reconstructor = MediaPipeReconstructor()
    try:
        faces = reconstructor.reconstruct_faces(pair, 30.0)
        assert faces["valid"].tolist() == [True, True]
        np.testing.assert_allclose(faces["translation"][:, 0], [224, 1024 - 224], atol=5)  # the two faces
        with pytest.warns(MultipleFacesWarning, match="2 faces in view"):
            chosen = reconstructor.reconstruct_still(pair, 30.0)
        assert chosen["valid"].tolist() == [True] and abs(chosen["translation"][0, 1] - 124) < 5  # a face, not the suit
    finally:
        reconstructor.close()


def test_a_photo_with_one_face_or_none_gives_the_still_row(two_people: Path) -> None:
    reconstructor = MediaPipeReconstructor(appearance=True)
    try:
        photo = cv2.cvtColor(cv2.imread(str(two_people / "a_single_face.jpg")), cv2.COLOR_BGR2RGB)
        for rgb in (photo, np.full((700, 1300, 3), 90, np.uint8)):  # (the blank one is searched in squares)
            every, still = reconstructor.reconstruct_faces(rgb, 30.0), reconstructor.reconstruct_still(rgb, 30.0)
            assert every.keys() == still.keys()
            for key in still:
                np.testing.assert_array_equal(every[key], still[key], err_msg=key)
    finally:
        reconstructor.close()


def test_one_face_found_twice_apart_is_one_row_after_the_closer_look(video_dir: Path) -> None:
    """On a large photo Face Mesh can place a face's points low in the whole photo and right in a square:
    two finds too far apart to be seen as one until both are looked at closer (here 2 faces, once 3 rows)."""
    photo = cv2.cvtColor(cv2.imread(str(video_dir / "single_face.jpg")), cv2.COLOR_BGR2RGB)
    capture = cv2.VideoCapture(str(video_dir / "WolfgangLanger_Pexels.mp4"))
    capture.set(cv2.CAP_PROP_POS_FRAMES, 300)
    frame = cv2.cvtColor(capture.read()[1], cv2.COLOR_BGR2RGB)
    capture.release()
    left, right = cv2.resize(photo, None, fx=2.5, fy=2.5), cv2.resize(frame, None, fx=4, fy=4)
    canvas = np.full((max(left.shape[0], right.shape[0]) + 200, left.shape[1] + right.shape[1] + 300, 3), 120, np.uint8)
    canvas[100 : 100 + left.shape[0], 100 : 100 + left.shape[1]] = left
    canvas[100 : 100 + right.shape[0], 200 + left.shape[1] : 200 + left.shape[1] + right.shape[1]] = right
    reconstructor = MediaPipeReconstructor()
    try:
        every = reconstructor.reconstruct_faces(canvas, 30.0)
    finally:
        reconstructor.close()
    assert every["valid"].tolist() == [True, True]
    assert every["translation"][0, 0] < 100 + left.shape[1] < every["translation"][1, 0]  # one on each side


def test_every_face_needs_a_reconstructor_that_finds_them(two_people: Path) -> None:
    class OneFace(MediaPipeReconstructor):
        finds_every_face = False

    with pytest.raises(au_face.AUFaceError, match="gives one face per photo"):
        reconstruct_photos(two_people, two_people.parent / "unused", OneFace(), all_faces=True)


def test_the_every_face_example_names_each_face_and_its_aus(group_photo: Path, capsys) -> None:
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "examples" / "every_face.py"
    spec = importlib.util.spec_from_file_location("every_face", path)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lines = example.main(str(group_photo))
    assert [line.split(" (")[0] for line in lines] == ["face 0", "face 1"]
    assert "AU12" in lines[0] and lines[0] in capsys.readouterr().out  # the smiling photo's face, on the left
