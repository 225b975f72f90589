"""Label readers of the real formats, alignment to video frames, and the fold protocols."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from au_face.aus import AU_SETS
from au_face.data.folds import FoldError, fold_split, load_protocol
from au_face.data.labels import (
    LabelAlignmentError,
    LabelFormatError,
    LabelTrack,
    MissingLabelsError,
    affwild2_annotation_files,
    affwild2_video_name,
    align_labels,
    align_to_frames,
    read_affwild2,
    read_bp4d,
    read_disfa,
    read_folder_csv,
)
from au_face.errors import AUFaceError
from dataset_fixtures import (
    make_affwild2,
    make_bp4d,
    make_disfa,
    write_affwild2_txt,
    write_bp4d_csv,
    write_disfa_au,
    write_folder_csv,
)

# ----------------------------------------------------------------------------- BP4D


def test_bp4d_codes_uncoded_and_column_selection(tmp_path: Path) -> None:
    frames = [2440, 2441, 2442]
    labels = {au: [0, 1, 0] for au in AU_SETS["bp4d"]}
    labels[12] = [1, 9, 0]
    labels[5] = [1, 1, 1]  # coded in BP4D but not in the BP4D-12 set
    path = write_bp4d_csv(tmp_path / "F001_T1.csv", frames, labels)
    track = read_bp4d(path)
    assert track.aus == list(AU_SETS["bp4d"])
    assert track.frames.tolist() == frames
    assert track.labels.dtype == np.int8
    assert track.labels[:, track.aus.index(12)].tolist() == [1, -1, 0]
    assert track.labels[:, track.aus.index(1)].tolist() == [0, 1, 0]
    assert track.intensities is None
    only = read_bp4d(path, aus=["AU05", 12])
    assert only.aus == [5, 12]
    assert only.labels[:, 0].tolist() == [1, 1, 1]


def test_bp4d_bom_crlf_whitespace_and_order(tmp_path: Path) -> None:
    labels = {au: [1, 0] for au in AU_SETS["bp4d"]}
    path = write_bp4d_csv(tmp_path / "M001_T2.csv", [11, 10], labels, bom=True, crlf=True)
    text = path.read_bytes().replace(b",", b" , ")
    path.write_bytes(text + b"\r\n\r\n")
    track = read_bp4d(path)
    assert track.frames.tolist() == [10, 11]  # rows sorted by frame
    assert track.labels[:, 0].tolist() == [0, 1]


def test_bp4d_errors_name_file_and_line(tmp_path: Path) -> None:
    labels = {au: [0, 1, 0] for au in AU_SETS["bp4d"]}
    path = write_bp4d_csv(tmp_path / "F002_T1.csv", [1, 2, 3], labels)
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace(",1,", ",x,", 1)
    path.write_text("\n".join(lines))
    with pytest.raises(LabelFormatError, match=r"F002_T1\.csv:3: .*'x' is not a number"):
        read_bp4d(path)

    labels[4] = [0, 3, 0]
    bad = write_bp4d_csv(tmp_path / "F003_T1.csv", [1, 2, 3], labels)
    with pytest.raises(LabelFormatError, match=r"F003_T1\.csv:3: column 4: 3 is not a BP4D code"):
        read_bp4d(bad)

    narrow = write_bp4d_csv(tmp_path / "F004_T1.csv", [1, 2, 3], {1: [0, 0, 0]}, max_au=20)
    with pytest.raises(LabelFormatError, match=r"F004_T1\.csv:1: no column for AU23, AU24"):
        read_bp4d(narrow)

    dup = write_bp4d_csv(tmp_path / "F005_T1.csv", [1, 1, 2], {au: [0, 0, 0] for au in AU_SETS["bp4d"]})
    with pytest.raises(LabelFormatError, match=r"F005_T1\.csv:3: frame 1 appears twice"):
        read_bp4d(dup)
    with pytest.raises(MissingLabelsError):
        read_bp4d(tmp_path / "nope.csv")


def test_bp4d_fixture_layout(tmp_path: Path) -> None:
    au_occ = make_bp4d(tmp_path, num_frames=5, first_frame=100)
    assert au_occ == tmp_path / "AUCoding" / "AU_OCC"
    track = read_bp4d(au_occ / "F001_T1.csv")
    assert track.frames.tolist() == [100, 101, 102, 103, 104]
    assert track.labels[0, track.aus.index(23)] == -1


# ----------------------------------------------------------------------------- DISFA


def test_disfa_threshold_and_intensities(tmp_path: Path) -> None:
    subject = tmp_path / "ActionUnit_Labels" / "SN001"
    for au in AU_SETS["disfa"]:
        write_disfa_au(subject / f"SN001_au{au}.txt", [0, 1, 2, 5])
    track = read_disfa(subject)
    assert track.frames.tolist() == [1, 2, 3, 4]
    assert track.aus == list(AU_SETS["disfa"])
    assert track.labels[:, 0].tolist() == [0, 0, 1, 1]
    assert track.intensities is not None and track.intensities[:, 0].tolist() == [0, 1, 2, 5]
    strict = read_disfa(subject, aus=[1, 2], threshold=3)
    assert strict.labels[:, 1].tolist() == [0, 0, 0, 1]


def test_disfa_missing_file_and_bad_values(tmp_path: Path) -> None:
    labels_dir = make_disfa(tmp_path, subjects=("SN003",), num_frames=4)
    (labels_dir / "SN003" / "SN003_au26.txt").unlink()
    with pytest.raises(MissingLabelsError, match=r"AU26 of SN003 .*SN003_au26\.txt"):
        read_disfa(labels_dir / "SN003")
    assert read_disfa(labels_dir / "SN003", aus=[1, 25]).labels.shape == (4, 2)
    write_disfa_au(labels_dir / "SN003" / "SN003_au1.txt", [0, 7, 0, 0])
    with pytest.raises(LabelFormatError, match=r"SN003_au1\.txt:2: intensity 7 is outside"):
        read_disfa(labels_dir / "SN003", aus=[1])
    with pytest.raises(MissingLabelsError):
        read_disfa(labels_dir / "SN099")


def test_disfa_files_covering_different_frames(tmp_path: Path) -> None:
    subject = tmp_path / "SN002"
    write_disfa_au(subject / "SN002_au1.txt", [3, 3, 3, 3])
    write_disfa_au(subject / "SN002_au2.txt", [4, 4])  # shorter file: frames 3, 4 unknown for AU2
    track = read_disfa(subject, aus=[1, 2])
    assert track.frames.tolist() == [1, 2, 3, 4]
    assert track.labels[:, 1].tolist() == [1, 1, -1, -1]
    assert np.isnan(track.intensities[2:, 1]).all()


# ----------------------------------------------------------------------------- Aff-Wild2


def test_affwild2_frames_are_one_based_lines(tmp_path: Path) -> None:
    rows = [[-1] * 12, [1] + [0] * 11, [0] * 11 + [1]]
    path = write_affwild2_txt(tmp_path / "video1.txt", rows)
    track = read_affwild2(path)
    assert track.frames.tolist() == [1, 2, 3]
    assert track.aus == list(AU_SETS["affwild2"])
    assert track.labels[0].tolist() == [-1] * 12
    assert track.labels[1, 0] == 1 and track.labels[2, 11] == 1
    assert read_affwild2(path, aus=["AU26", "AU1"]).labels[2].tolist() == [1, 0]


def test_affwild2_malformed(tmp_path: Path) -> None:
    path = write_affwild2_txt(tmp_path / "v.txt", [[0] * 12, [0] * 11])
    with pytest.raises(LabelFormatError, match=r"v\.txt:3: 11 values for 12 AUs"):
        read_affwild2(path)
    path.write_text(
        "AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26\n" + "0," * 11 + "0\n\n" + "0," * 11 + "1\n"
    )
    with pytest.raises(LabelFormatError, match=r"v\.txt:3: blank line"):
        read_affwild2(path)
    path.write_text("AU1,AU2\n2,0\n")
    with pytest.raises(LabelFormatError, match=r"v\.txt:2: column AU1: 2 is not 0, 1 or -1"):
        read_affwild2(path, aus=[1, 2])
    with pytest.raises(LabelFormatError, match=r"v\.txt:1: no column for AU04"):
        read_affwild2(path)


def test_affwild2_official_split(tmp_path: Path) -> None:
    au_root = make_affwild2(tmp_path, train=("a", "b_left", "b_right"), val=("c",), num_frames=4)
    train = affwild2_annotation_files(tmp_path, "train")
    assert [p.name for p in train] == ["a.txt", "b_left.txt", "b_right.txt"]
    assert [p.name for p in affwild2_annotation_files(au_root, "val")] == ["c.txt"]
    assert [affwild2_video_name(p) for p in train] == ["a", "b", "b"]
    with pytest.raises(MissingLabelsError, match="Validation_Set"):
        affwild2_annotation_files(tmp_path / "elsewhere", "val")


# ----------------------------------------------------------------------------- generic folder CSV


def test_folder_csv_au_name_forms_and_extra_columns(tmp_path: Path) -> None:
    path = write_folder_csv(
        tmp_path / "clip.csv",
        [0, 1, 2],
        {"AU1": [1, 0, -1], "confidence": [0.9, 0.8, 0.1], "au12": [0, 1, ""], "AU06": [1, 1, 0]},
        bom=True,
        crlf=True,
    )
    track = read_folder_csv(path)
    assert track.aus == [1, 12, 6]
    assert track.labels.tolist() == [[1, 0, 1], [0, 1, 1], [-1, -1, 0]]
    assert read_folder_csv(path, aus=["AU06"]).labels[:, 0].tolist() == [1, 1, 0]
    with pytest.raises(LabelFormatError, match=r"clip\.csv:1: no column for AU04"):
        read_folder_csv(path, aus=[4])


def test_folder_csv_intensities_threshold(tmp_path: Path) -> None:
    path = write_folder_csv(tmp_path / "int.csv", [5, 6, 7, 8], {"AU12": [0.0, 1.5, 3.2, -1]})
    with pytest.raises(LabelFormatError, match=r"int\.csv:3: column AU12: 1.5 is not 0, 1 or -1 .*threshold"):
        read_folder_csv(path)
    track = read_folder_csv(path, threshold=1.5)
    assert track.labels[:, 0].tolist() == [0, 1, 1, -1]
    assert track.intensities[:3, 0].tolist() == pytest.approx([0.0, 1.5, 3.2])
    assert np.isnan(track.intensities[3, 0])


def test_folder_csv_errors(tmp_path: Path) -> None:
    no_frame = tmp_path / "a.csv"
    no_frame.write_text("time,AU1\n0,1\n")
    with pytest.raises(LabelFormatError, match=r"a\.csv:1: no 'frame' column"):
        read_folder_csv(no_frame)
    no_aus = tmp_path / "b.csv"
    no_aus.write_text("frame,smile\n0,1\n")
    with pytest.raises(LabelFormatError, match=r"b\.csv:1: no AU columns"):
        read_folder_csv(no_aus)
    bad_frame = tmp_path / "c.csv"
    bad_frame.write_text("frame,AU1\n0,1\n1.5,0\n")
    with pytest.raises(LabelFormatError, match=r"c\.csv:3: frame '1.5'"):
        read_folder_csv(bad_frame)
    short = tmp_path / "d.csv"
    short.write_text("frame,AU1,AU2\n0,1\n")
    with pytest.raises(LabelFormatError, match=r"d\.csv:2: row has 2 cells"):
        read_folder_csv(short)
    assert issubclass(LabelFormatError, AUFaceError) and issubclass(LabelFormatError, ValueError)


# ----------------------------------------------------------------------------- alignment


def _track(frames: list[int]) -> LabelTrack:
    labels = np.array([[1, 0]] * len(frames), dtype=np.int8)
    return LabelTrack(np.array(frames), labels, [1, 2], labels.astype(np.float32), source="t")


def test_align_masks_missing_and_extra_frames() -> None:
    track = _track([1, 2, 4, 9])  # 1-based labels; frame 3 unlabelled; frame 9 beyond the video
    aligned = align_labels(track, num_video_frames=5, frame_offset=1)
    assert aligned.frames.tolist() == [1, 2, 3, 4, 5]
    assert aligned.labels[:, 0].tolist() == [1, 1, -1, 1, -1]
    assert np.isnan(aligned.intensities[2, 0]) and aligned.intensities[0, 0] == 1.0
    assert align_labels(track, 0).labels.shape == (0, 2)


def test_align_error_policy() -> None:
    with pytest.raises(LabelAlignmentError, match=r"1 labelled frame\(s\) are not in the video .* frame 9"):
        align_labels(_track([1, 2, 3, 9]), 3, frame_offset=1, policy="error")
    with pytest.raises(LabelAlignmentError, match=r"1 video frame\(s\) have no label, e.g. frame 2"):
        align_labels(_track([0, 1, 3]), 4, policy="error")
    exact = align_labels(_track([0, 1, 2]), 3, policy="error")
    assert (exact.labels[:, 0] == 1).all()
    with pytest.raises(LabelAlignmentError, match="policy"):
        align_labels(_track([0]), 1, policy="drop")  # type: ignore[arg-type]


def test_align_with_a_frame_stride() -> None:
    track = _track(list(range(1, 11)))
    track.labels[:, 0] = np.arange(10) % 2  # label frame f has AU1 = (f - 1) % 2
    aligned = align_labels(track, 4, frame_offset=1, stride=3, policy="error")  # video frames 1, 4, 7, 10
    assert aligned.frames.tolist() == [1, 4, 7, 10]
    assert aligned.labels[:, 0].tolist() == [0, 1, 0, 1]
    with pytest.raises(LabelAlignmentError, match="frame 13"):
        align_labels(_track([1, 4, 13]), 4, frame_offset=1, stride=3, policy="error")


def test_align_to_explicit_frame_numbers() -> None:
    track = _track([2440, 2441, 2442])
    aligned = align_to_frames(track, np.array([2440, 2442, 2443]))
    assert aligned.labels[:, 0].tolist() == [1, 1, -1]
    with pytest.raises(LabelAlignmentError, match="1 labelled frame\\(s\\) are not in the video .*frame 2441"):
        align_to_frames(track, np.array([2440, 2442]), policy="error")


def test_bp4d_empty_cell_is_an_error(tmp_path: Path) -> None:
    path = write_bp4d_csv(tmp_path / "F006_T3.csv", [1, 2], {au: [0, 1] for au in AU_SETS["bp4d"]})
    lines = path.read_text().splitlines()
    cells = lines[1].split(",")
    cells[12] = ""
    path.write_text("\n".join([lines[0], ",".join(cells), lines[2]]))
    with pytest.raises(LabelFormatError, match=r"F006_T3\.csv:2: column 12: an empty cell is not a BP4D code"):
        read_bp4d(path)


# ----------------------------------------------------------------------------- folds


@pytest.mark.parametrize(("dataset", "count"), [("bp4d", 41), ("disfa", 27)])
def test_folds_disjoint_and_cover_every_subject(dataset: str, count: int) -> None:
    protocol = load_protocol(dataset)
    assert len(protocol.subjects) == count
    tests = []
    for fold in (1, 2, 3):
        train, test = fold_split(dataset, fold)
        assert not set(train) & set(test)
        assert sorted(train + test) == protocol.subjects
        tests += test
    assert sorted(tests) == protocol.subjects  # each subject is tested exactly once


def test_fold_subject_sets() -> None:
    bp4d = load_protocol("bp4d").subjects
    assert bp4d == [f"F{i:03d}" for i in range(1, 24)] + [f"M{i:03d}" for i in range(1, 19)]
    disfa = load_protocol("disfa").subjects
    assert disfa == [f"SN{i:03d}" for i in range(1, 33) if i not in (14, 15, 19, 20, 22)]
    assert fold_split("bp4d", 1)[1][0] == "F007"  # ME-GraphAU: fold 1 tests part 3
    assert fold_split("disfa", 3)[1][0] == "SN002"  # fold 3 tests part 1
    with pytest.raises(FoldError):
        fold_split("bp4d", 4)
    with pytest.raises(FoldError):
        fold_split("affwild2", 1)
