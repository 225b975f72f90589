"""Dataset DataModules on tiny fixtures in the real layouts, through the ``au-face`` CLI."""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from au_face.aus import AU_SETS
from au_face.cli import main
from au_face.data.cache import CacheMissError
from au_face.data.datamodules.affwild2 import AffWild2DataModule
from au_face.data.datamodules.bp4d import BP4DDataModule
from au_face.data.datamodules.cached import DatasetLayoutError, encode_image_folders, image_frame_numbers
from au_face.data.datamodules.disfa import DISFADataModule
from au_face.data.datamodules.folder import FolderAUDataModule
from au_face.data.datamodules.multiface import MultifaceDataModule, register_similarity
from au_face.data.folds import load_protocol
from au_face.data.labels import LabelFormatError
from au_face.faces.mediapipe import mediapipe_topology
from dataset_fixtures import (
    make_affwild2,
    make_bp4d,
    make_disfa,
    make_folder_labels,
    make_multiface,
    tiny_geometry,
    write_bp4d_csv,
    write_coarse_cache,
)

REPO = Path(__file__).resolve().parents[1]
FRAMES = 10
TINY_NET = {"dim": 16, "token_hidden": 16, "heads": 2, "spatial_layers": 1, "temporal_layers": 1, "image_size": 16}
TINY_DATA = {"batch_size": 2, "num_workers": 0, "clip_length": 8, "train_stride": 8}


def shipped_config(name: str) -> dict:
    """``configs/<name>.yaml`` with its trainer/model/data parts read in."""
    config = yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text())
    for key in ("trainer", "model", "data"):
        if isinstance(config.get(key), str):
            config[key] = yaml.safe_load((REPO / "configs" / config[key]).read_text())
    return config


def fixture_config(name: str, tmp: Path, data: dict, net: dict | None = None) -> Path:
    """``configs/<name>.yaml`` pointed at a fixture (``data``, with its ``geometry``), with a tiny
    network, running under ``tmp/run``."""
    config = shipped_config(name)
    config["run_dir"] = str(tmp / "run")
    config["trainer"].update(accelerator="cpu", enable_progress_bar=False, enable_model_summary=False)
    config["model"]["init_args"]["net"].update(TINY_NET, **(net or {}))
    data = dict(data)
    config["geometry"] = asdict(data.pop("geometry"))
    config["data"]["init_args"].update(TINY_DATA, **data)
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def fit_and_test(config: Path) -> None:
    assert main(["fit", "--config", str(config), "--trainer.fast_dev_run=true"]) == 0
    assert main(["test", "--config", str(config)]) == 0


# ----------------------------------------------------------------------------- BP4D


@pytest.fixture(scope="module")
def bp4d(tmp_path_factory) -> Path:
    """Every BP4D subject with one task (T1), 10 frames numbered from 1, cached coarse frames."""
    root = tmp_path_factory.mktemp("bp4d")
    subjects = load_protocol("bp4d").subjects
    make_bp4d(root, subjects=subjects, tasks=("T1",), num_frames=FRAMES, first_frame=1)
    videos = [root / "videos" / s / "T1.avi" for s in subjects]
    write_coarse_cache(root / "cache", root, videos, FRAMES)
    return root


def bp4d_data(root: Path, **extra) -> dict:
    return {
        "root": str(root), "cache_dir": str(root / "cache"), "video_dir": str(root / "videos"), "tasks": ["T1"],
        "images_dir": None, "frame_offset": 1, "geometry": tiny_geometry(root / "cache", "bp4d"), **extra,
    }  # fmt: skip


def test_bp4d_splits_follow_the_fold_and_labels_align(bp4d: Path) -> None:
    dm = BP4DDataModule(**bp4d_data(bp4d), fold=2, **TINY_DATA)
    train = {s.subject for s in dm.sequences("train")}
    test = {s.subject for s in dm.sequences("test")}
    assert len(train) == 27 and len(test) == 14 and not train & test
    assert {s.subject for s in dm.sequences("val")} == test
    record = dm.records("test")[0]
    assert record.labels.shape == (FRAMES, 12)
    assert record.labels[0, AU_SETS["bp4d"].index(23)] == -1  # BP4D code 9 in the fixture
    held_out = BP4DDataModule(**bp4d_data(bp4d), fold=2, val_subjects=["F001"], **TINY_DATA)
    assert [s.subject for s in held_out.sequences("val")] == ["F001"]
    assert "F001" not in {s.subject for s in held_out.sequences("train")}


def test_bp4d_frame_numbers_from_the_image_folder(tmp_path: Path) -> None:
    root = tmp_path / "bp4d"
    labels = {au: [1, 0, 1, 0] for au in AU_SETS["bp4d"]}
    for subject in load_protocol("bp4d").subjects:
        write_bp4d_csv(root / "AUCoding" / "AU_OCC" / f"{subject}_T1.csv", [2440, 2441, 2442, 2444], labels)
        folder = root / "images" / subject / "T1"
        folder.mkdir(parents=True)
        for frame in (2440, 2441, 2443, 2444):  # frame 2442 was not released, 2443 is unlabelled
            (folder / f"{frame:04d}.jpg").write_bytes(b"")
    videos = [root / "videos" / s / "T1.avi" for s in load_protocol("bp4d").subjects]
    write_coarse_cache(root / "cache", root, videos, 4)
    dm = BP4DDataModule(
        str(root),
        str(root / "cache"),
        tasks=["T1"],
        images_dir=str(root / "images"),
        geometry=tiny_geometry(root / "cache"),
        **TINY_DATA,
    )
    assert dm.records("train")[0].labels[:, 0].tolist() == [1, 0, -1, 0]
    assert image_frame_numbers(root / "images" / "F001" / "T1").tolist() == [2440, 2441, 2443, 2444]


def test_bp4d_needs_frame_numbers_and_labels(bp4d: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError, match="images_dir .* or frame_offset"):
        BP4DDataModule(str(bp4d), str(bp4d / "cache"), geometry=tiny_geometry(bp4d / "cache"))
    dm = BP4DDataModule(**{**bp4d_data(bp4d), "tasks": ["T2"]})
    with pytest.raises(FileNotFoundError, match="F007_T2.csv"):
        dm.sequences("test")


def test_bp4d_missing_cache_names_the_preprocess_command(bp4d: Path, tmp_path: Path) -> None:
    dm = BP4DDataModule(**{**bp4d_data(bp4d), "cache_dir": str(tmp_path / "empty")})
    with pytest.raises(CacheMissError) as err:
        dm.setup("fit")
    message = str(err.value)
    assert "41 of 41 videos have no coarse reconstruction" in message
    assert f"au-face preprocess {bp4d / 'videos' / 'F001' / 'T1.avi'}" in message
    assert f"--out {tmp_path / 'empty'} --base {bp4d} --reconstructor mediapipe" in message


def test_bp4d_fit_and_test_through_the_cli(bp4d: Path, tmp_path: Path) -> None:
    fit_and_test(fixture_config("bp4d", tmp_path, bp4d_data(bp4d), {"modality": "mesh"}))


def test_bp4d_missing_cache_is_a_clear_cli_error(bp4d: Path, tmp_path: Path, capsys) -> None:
    config = fixture_config("bp4d", tmp_path, {**bp4d_data(bp4d), "fold": 3, "cache_dir": str(tmp_path / "none")})
    assert main(["fit", "--config", str(config), "--trainer.fast_dev_run=true"]) == 2
    assert "run:\n  au-face preprocess" in capsys.readouterr().err


def test_evaluate_runs_checkpoints_on_fold_configs(bp4d: Path, tmp_path: Path, capsys) -> None:
    config = fixture_config("bp4d", tmp_path, bp4d_data(bp4d), {"modality": "mesh"})
    limits = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=2"]
    assert main(["fit", "--config", str(config), *limits]) == 0
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    out = tmp_path / "eval"
    capsys.readouterr()
    code = main(
        ["evaluate", "--config", str(config), "--ckpt", str(ckpt), "--accelerator", "cpu", "--out-dir", str(out)]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "| Fold | AU1 | AU2 | AU4 | AU6 | AU7 | AU10 | AU12 | AU14 | AU15 | AU17 | AU23 | AU24 | Avg. |" in printed
    assert "| fold1 |" in printed
    fold_csv = (out / "fold1_metrics.csv").read_text().splitlines()
    assert fold_csv[0].startswith("AU01,AU02,AU04") and len(fold_csv[1].split(",")) == 13
    assert (out / "table.md").read_text().splitlines()[2].startswith("| fold1 |")
    shutil.copy(ckpt, ckpt.with_name("best.ckpt"))  # the default: each run's best.ckpt
    assert main(["evaluate", "--config", str(config), "--folds", "1", "--accelerator", "cpu"]) == 0
    assert capsys.readouterr().out.splitlines()[2] == printed.splitlines()[2], "the same fold, read by metric name"
    code = main(["evaluate", "--config", str(config), "--folds", "1", "3", "--accelerator", "cpu"])
    assert code == 2 and "give --ckpt, one per fold" in capsys.readouterr().err, "one run folder cannot serve two folds"


# ----------------------------------------------------------------------------- DISFA


@pytest.fixture(scope="module")
def disfa(tmp_path_factory) -> Path:
    """Every DISFA subject, 10 labelled frames; the cached videos have one frame more (masked)."""
    root = tmp_path_factory.mktemp("disfa")
    subjects = load_protocol("disfa").subjects
    make_disfa(root, subjects=subjects, num_frames=FRAMES)
    videos = [root / "Videos_LeftCamera" / f"LeftVideo{s}_comp.avi" for s in subjects]
    write_coarse_cache(root / "cache", root, videos, FRAMES + 1)
    return root


def test_disfa_labels_are_shifted_by_one_and_extra_frames_masked(disfa: Path) -> None:
    dm = DISFADataModule(
        str(disfa), str(disfa / "cache"), fold=1, geometry=tiny_geometry(disfa / "cache", "disfa"), **TINY_DATA
    )
    seq = dm.sequences("test")[0]
    assert seq.name == "SN003" and seq.video.name == "LeftVideoSN003_comp.avi"
    labels = dm.records("test")[0].labels
    assert labels.shape == (FRAMES + 1, 8)
    assert np.array_equal(labels[:FRAMES], seq.track.labels)  # label frame f is video frame f - 1
    assert (labels[FRAMES] == -1).all()
    strict = DISFADataModule(
        str(disfa),
        str(disfa / "cache"),
        alignment="error",
        geometry=tiny_geometry(disfa / "cache", "disfa"),
        **TINY_DATA,
    )
    with pytest.raises(ValueError, match="1 video frame\\(s\\) have no label"):
        strict.records("test")


def test_disfa_fit_and_test_through_the_cli(disfa: Path, tmp_path: Path) -> None:
    data = {
        "root": str(disfa),
        "cache_dir": str(disfa / "cache"),
        "fold": 2,
        "geometry": tiny_geometry(disfa / "cache", "disfa"),
    }
    fit_and_test(fixture_config("disfa", tmp_path, data))


# ----------------------------------------------------------------------------- Aff-Wild2


@pytest.fixture(scope="module")
def affwild2(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("affwild2")
    make_affwild2(
        root / "annotations", train=("v1", "v3", "v4", "12-24_left", "12-24_right"), val=("v2", "v5"), num_frames=FRAMES
    )
    videos = [root / "videos" / "batch1" / f"{n}.mp4" for n in ("v1", "v3", "v4", "12-24")]
    videos += [root / "videos" / "batch2" / f"{n}.avi" for n in ("v2", "v5")]
    write_coarse_cache(root / "cache", root, videos, FRAMES)
    return root


def test_affwild2_official_split_and_two_person_videos(affwild2: Path) -> None:
    dm = AffWild2DataModule(
        str(affwild2), str(affwild2 / "cache"), geometry=tiny_geometry(affwild2 / "cache", "affwild2"), **TINY_DATA
    )
    assert [s.name for s in dm.sequences("train")] == ["v1", "v3", "v4"]
    assert [s.name for s in dm.sequences("val")] == [s.name for s in dm.sequences("test")] == ["v2", "v5"]
    labels = dm.records("val")[0].labels
    assert (labels[:2] == -1).all() and labels.shape == (FRAMES, 12)  # ABAW -1 rows (no face)
    both = AffWild2DataModule(
        str(affwild2),
        str(affwild2 / "cache"),
        geometry=tiny_geometry(affwild2 / "cache", "affwild2"),
        two_person_videos=True,
    )
    pair = [s for s in both.sequences("train") if s.name.startswith("12-24")]
    assert [s.name for s in pair] == ["12-24_left", "12-24_right"] and pair[0].video == pair[1].video
    part = AffWild2DataModule(
        str(affwild2),
        str(affwild2 / "cache"),
        geometry=tiny_geometry(affwild2 / "cache", "affwild2"),
        train_fraction=0.6,
    )
    assert len(part.sequences("train")) == 2


def test_affwild2_missing_video_is_named(affwild2: Path, tmp_path: Path) -> None:
    dm = AffWild2DataModule(
        str(affwild2),
        str(affwild2 / "cache"),
        geometry=tiny_geometry(affwild2 / "cache", "affwild2"),
        video_dir=str(tmp_path),
    )
    with pytest.raises(DatasetLayoutError, match="3 Aff-Wild2 videos of the train split .*v1, v3, v4"):
        dm.sequences("train")


def test_affwild2_fit_and_test_through_the_cli(affwild2: Path, tmp_path: Path) -> None:
    data = {
        "root": str(affwild2),
        "cache_dir": str(affwild2 / "cache"),
        "train_fraction": 1.0,
        "geometry": tiny_geometry(affwild2 / "cache", "affwild2"),
    }
    fit_and_test(fixture_config("affwild2", tmp_path, data))


# ----------------------------------------------------------------------------- generic folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("folder")
    names = ["train/anna_1", "train/anna_2", "train/bob_1", "val/carl_1", "test/dora_1"]
    for name in names:
        make_folder_labels(
            root / Path(name).parent, videos=(Path(name).name,), aus=("AU01", "AU06", "AU12", "AU25"), num_frames=FRAMES
        )
    write_coarse_cache(root / "cache", root, [root / f"{n}.mp4" for n in names], FRAMES)
    (root / "unlabelled.mp4").write_bytes(b"no csv")
    return root


def test_folder_splits(folder: Path, tmp_path: Path) -> None:
    dm = FolderAUDataModule(
        str(folder), str(folder / "cache"), geometry=tiny_geometry(folder / "cache", ["AU12", "AU01"]), **TINY_DATA
    )
    assert [s.name for s in dm.sequences("train")] == ["train/anna_1", "train/anna_2", "train/bob_1"]
    assert [s.subject for s in dm.sequences("train")] == ["anna", "anna", "bob"]
    assert dm.records("test")[0].labels.shape == (FRAMES, 2)
    split = tmp_path / "split.json"
    split.write_text(
        json.dumps({"train": ["train/anna_1", "val/carl_1"], "val": ["test/dora_1"], "test": ["train/bob_1"]})
    )
    custom = FolderAUDataModule(
        str(folder), str(folder / "cache"), split_file=str(split), geometry=tiny_geometry(folder / "cache", ["AU25"])
    )
    assert [s.name for s in custom.sequences("test")] == ["train/bob_1"]
    split.write_text(json.dumps({"train": ["unlabelled"]}))
    with pytest.raises(DatasetLayoutError, match="without a video\\+CSV pair"):
        FolderAUDataModule(
            str(folder),
            str(folder / "cache"),
            split_file=str(split),
            geometry=tiny_geometry(folder / "cache", ["AU25"]),
        ).sequences("train")
    with pytest.raises(LabelFormatError, match="anna_1.csv:1: no column for AU02"):
        FolderAUDataModule(
            str(folder), str(folder / "cache"), geometry=tiny_geometry(folder / "cache", "bp4d")
        ).sequences("train")


def test_folder_fit_and_test_through_the_cli(folder: Path, tmp_path: Path) -> None:
    data = {
        "video_dir": str(folder),
        "cache_dir": str(folder / "cache"),
        "geometry": tiny_geometry(folder / "cache", ["AU01", "AU06", "AU12"]),
    }
    fit_and_test(fixture_config("folder", tmp_path, data))


# ----------------------------------------------------------------------------- Multiface


def test_similarity_registration_recovers_a_half_turn() -> None:
    source = mediapipe_topology().template.astype(np.float64)
    rotation = np.array([[-1.0, 0, 0], [0, 1, 0], [0, 0, -1]])  # half-turn about y
    target = 10.0 * source @ rotation.T + np.array([5.0, -20.0, 900.0])
    scale, found, shift, residual = register_similarity(source, target[::-1])
    assert scale == pytest.approx(10.0, rel=1e-3) and np.allclose(found, rotation, atol=1e-3)
    assert residual < 1e-2


@pytest.fixture(scope="module")
def multiface(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A capture whose tracked meshes are the coarse meshes moved by a similarity (mm, half-turn)."""
    root = tmp_path_factory.mktemp("multiface")
    rng = np.random.default_rng(1)
    template = mediapipe_topology().template
    frames = [102, 105, 108, 111, 114, 117, 120, 123, 126, 129]
    coarse, meshes = [], {}
    for segment in ("E001_Neutral_Eyes_Open", "E057_Cheeks_Puffed", "EXP_ROM07_Facial_Expressions"):
        motion = np.cumsum(rng.normal(scale=0.05, size=(len(frames), *template.shape)), axis=0)
        coarse.append((template + motion).astype(np.float32))
        rotation = np.array([[-1.0, 0, 0], [0, 1, 0], [0, 0, -1]])
        meshes[segment] = 10.0 * coarse[-1] @ rotation.T + np.array([0.0, 30.0, 0.0])
    capture = make_multiface(root, meshes, frames)
    videos = encode_image_folders(capture / "images", capture / "videos", fps=30)
    write_coarse_cache(root / "cache", capture, videos, len(frames), vertices=coarse)
    return capture, np.stack(coarse)


def test_multiface_ground_truth_in_the_coarse_topology(multiface) -> None:
    capture, coarse = multiface
    dm = MultifaceDataModule(
        str(capture), str(capture.parent / "cache"), geometry=tiny_geometry(capture.parent / "cache"), **TINY_DATA
    )
    assert [s.name for s in dm.sequences("train")] == ["E001_Neutral_Eyes_Open/400002", "E057_Cheeks_Puffed/400002"]
    assert [s.name for s in dm.sequences("test")] == ["EXP_ROM07_Facial_Expressions/400002"]
    assert dm.sequences("test")[0].subject == "6795937"
    record = dm.records("test")[0]
    assert (record.labels == -1).all()
    with np.load(record.gt_path) as z:
        gt = z["vertices"]
        assert z["frames"].tolist()[:2] == [102, 105]
    assert gt.shape == coarse[2].shape
    # the tracked meshes map back onto the coarse vertices (S̄ uses valid frames only, so not exactly)
    motion = np.abs(coarse[2] - coarse[2][:1]).max()
    assert np.abs(gt - coarse[2]).max() < 0.01 < motion


def test_multiface_fit_and_test_through_the_cli(multiface, tmp_path: Path) -> None:
    capture, _ = multiface
    data = {
        "video_dir": "unused",
        "cache_dir": str(capture.parent / "cache"),
        "geometry": tiny_geometry(capture.parent / "cache"),
    }
    config = fixture_config("folder", tmp_path, data, {"modality": "mesh"})
    raw = yaml.safe_load(config.read_text())
    raw["data"] = {
        "class_path": "au_face.data.datamodules.multiface.MultifaceDataModule",
        "init_args": {"capture_dir": str(capture), "cache_dir": str(capture.parent / "cache"), **TINY_DATA},
    }
    raw["trainer"]["callbacks"][0]["init_args"]["monitor"] = "val/loss"
    raw["trainer"]["callbacks"][0]["init_args"]["mode"] = "min"
    config.write_text(yaml.safe_dump(raw))
    fit_and_test(config)
    with next((tmp_path / "run").rglob("metrics.csv")).open() as fh:
        logged = {k: float(v) for row in csv.DictReader(fh) for k, v in row.items() if v}
    assert logged["test/vertex_error_coarse"] < 0.01  # coarse meshes are the ground truth in this fixture
    assert "test/vertex_error_refined" in logged


@pytest.mark.parametrize("name", ["bp4d_deca", "disfa_deca"])
def test_deca_configs_select_the_deca_reconstructor_and_flame_basis(name: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(REPO / "configs" / f"{name}.yaml"), "--print_config"])
    assert exit_info.value.code == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["data"]["init_args"]["reconstructor"] == "deca"
    assert config["geometry"]["topology"] == "flame" and config["geometry"]["basis"] == "flame"
    assert config["model"]["init_args"]["net"]["feature_dim"] == 2048


def test_au_face_frames_encodes_frame_folders_and_resumes(tmp_path: Path, capsys) -> None:
    import cv2

    for subject, count in (("F001/T1", 3), ("M002/T1", 2)):
        folder = tmp_path / "images" / subject
        folder.mkdir(parents=True)
        for number in range(1, count + 1):
            cv2.imwrite(str(folder / f"{number:04d}.jpg"), np.full((32, 48, 3), 40 * number, dtype=np.uint8))
    args = ["frames", str(tmp_path / "images"), str(tmp_path / "videos"), "--fps", "25"]
    assert main(args) == 0
    assert "2 videos under" in capsys.readouterr().out
    video = tmp_path / "videos" / "F001" / "T1.avi"
    capture = cv2.VideoCapture(str(video))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 3 and capture.get(cv2.CAP_PROP_FPS) == pytest.approx(25)
    capture.release()
    stamp = video.stat().st_mtime_ns
    assert main(args) == 0 and video.stat().st_mtime_ns == stamp, "a rerun keeps the videos it made"
    assert main(["frames", str(tmp_path / "nothing"), str(tmp_path / "videos"), "--fps", "25"]) == 2


def test_mirror_flips_a_symmetric_shape_onto_itself_and_pairs_left_with_right() -> None:
    from au_face.data.clips import Mirror

    # a symmetric shape about x = 3 with two left/right pairs and two points on the plane
    template = np.array([[2.0, 0, 0], [4.0, 0, 0], [3.0, 1, 0], [1.0, 1, 1], [5.0, 1, 1], [3.0, -2, 0.5]])
    mirror = Mirror.of(template, share=1.0)
    assert mirror.centre == pytest.approx(3.0)
    assert mirror.pairs.tolist() == [1, 0, 2, 4, 3, 5]
    shape = torch.from_numpy(template).float()
    torch.testing.assert_close(mirror.vertices(shape), shape)
    moved = shape.clone()
    moved[0, 0] -= 0.5  # the left point moves outwards: after the flip the right one has
    flipped = mirror.vertices(moved)
    assert flipped[1, 0] == pytest.approx(4.5) and flipped[0, 0] == pytest.approx(2.0)
    torch.testing.assert_close(mirror.vertices(flipped), moved)
    item = {
        "vertices": moved[None],
        "reference": shape,
        "labels": torch.ones(1, 2),
        "crops": torch.arange(6.0).reshape(1, 1, 1, 6),
    }
    out = mirror(item)
    torch.testing.assert_close(out["vertices"][0], flipped)
    assert out["labels"] is item["labels"] and out["crops"][0, 0, 0].tolist() == [5.0, 4.0, 3.0, 2.0, 1.0, 0.0]


def test_mirror_share_flips_training_items_only(folder: Path) -> None:
    from au_face.data.clips import Mirror

    def module(share: float) -> FolderAUDataModule:
        dm = FolderAUDataModule(
            str(folder),
            str(folder / "cache"),
            geometry=tiny_geometry(folder / "cache", ["AU12"]),
            mirror=share,
            **TINY_DATA,
        )
        dm.setup("fit")
        return dm

    plain, flipped = module(0.0), module(1.0)
    assert plain.datasets["train"].mirror is None and flipped.datasets["val"].mirror is None
    mirror = flipped.datasets["train"].mirror
    assert isinstance(mirror, Mirror) and mirror.share == 1.0
    a, b = plain.datasets["train"][0], flipped.datasets["train"][0]
    torch.testing.assert_close(b["vertices"], mirror.vertices(a["vertices"]))
    torch.testing.assert_close(b["reference"], mirror.vertices(a["reference"]))
    assert torch.equal(a["labels"], b["labels"])
    assert (b["vertices"] - a["vertices"]).abs().max() > 1e-3  # a real face is not exactly symmetric
    with pytest.raises(ValueError, match="mirror is a share"):
        module(1.5)


def test_a_cache_with_appearance_descriptors_serves_them_and_a_plain_one_is_not_taken_for_it(tmp_path: Path) -> None:
    from au_face.faces.appearance import DESCRIPTOR_SIZE

    names = ["train/anna_1", "train/bob_1", "val/carl_1", "test/dora_1"]
    for name in names:
        make_folder_labels(tmp_path / Path(name).parent, videos=(Path(name).name,), aus=("AU04",), num_frames=FRAMES)
    videos = [tmp_path / f"{n}.mp4" for n in names]
    write_coarse_cache(tmp_path / "plain", tmp_path, videos, FRAMES)
    write_coarse_cache(tmp_path / "brows", tmp_path, videos, FRAMES, appearance=True)

    def module(cache: str, appearance: bool, mirror: float = 0.0) -> FolderAUDataModule:
        dm = FolderAUDataModule(
            str(tmp_path),
            str(tmp_path / cache),
            geometry=tiny_geometry(tmp_path / "plain", ["AU04"]),
            appearance=appearance,
            mirror=mirror,
            **TINY_DATA,
        )
        dm.setup("fit")
        return dm

    item = module("brows", True).datasets["train"][0]
    assert item["appearance"].shape == (item["vertices"].shape[0], DESCRIPTOR_SIZE)
    assert torch.isfinite(item["appearance"]).all() and item["appearance"][item["valid"]].abs().sum() > 0
    assert "appearance" not in module("plain", False).datasets["train"][0]
    flipped = module("brows", True, mirror=1.0).datasets["train"][0]
    assert torch.isnan(flipped["appearance"]).all(), "a flipped item's descriptor is unknown"
    with pytest.raises(CacheMissError, match="--appearance"):
        module("plain", True)  # records without descriptors are not taken for ones with them
