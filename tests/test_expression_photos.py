"""Expression-labelled photos: the CSV and its quirks, the reserved quarter, the person split, weak AU
labels (unknowns masked from the loss), the DataModule over a coarse cache, and the mixed loader."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from au_face.aus import AU_SETS, EXPRESSIONS, parse_expression, weak_au_labels
from au_face.coarse.base import CoarseFrames
from au_face.data.cache import CoarseCache
from au_face.data.datamodules.cached import DatasetLayoutError
from au_face.data.datamodules.mixed import MixedBatchSampler
from au_face.data.datamodules.photos import (
    ExpressionPhotoDataModule,
    is_reserved,
    person_of,
    read_expression_csv,
    split_photos,
)
from au_face.training.losses import masked_bce
from dataset_fixtures import open_mouth

AUS = list(AU_SETS["default"])

#: legend.csv as muxspace/facial_expressions writes it, with its quirks: expressions in upper case,
#: a row repeated verbatim, and one image with two different expressions.
LEGEND = """user.id,image,emotion
628,facial-expressions_2868588k.jpg,anger
302,Aaron_Eckhart_0001.jpg,neutral
302,Aaron_Eckhart_0002.jpg,HAPPINESS
302,Aaron_Eckhart_0002.jpg,HAPPINESS
302,Abba_Eban_0001.jpg,happiness
302,Abba_Eban_0002.jpg,SURPRISE
jhamski,Avinash_30.jpg,surprise
jhamski,Avinash_30.jpg,sadness
jhamski,Avinash_31.jpg,SADNESS
dwdii,Dwarakish_12.jpg,DISGUST
dwdii,Dwarakish_13.jpg,disgust
302,Colin_Powell_0001.jpg,neutral
302,Colin_Powell_0002.jpg,anger
302,Zoe_Ball_0001.jpg,fear
302,Zoe_Ball_0002.jpg,neutral
302,Bill_Gates_0001.jpg,neutral
302,Bill_Gates_0002.jpg,happiness
302,Cate_Blanchett_0001.jpg,neutral
302,Dan_Rather_0001.jpg,happiness
302,Eva_Mendes_0001.jpg,neutral
302,Eva_Mendes_0002.jpg,neutral
302,Fidel_Castro_0001.jpg,happiness
302,Gary_Locke_0001.jpg,neutral
"""


def reserved_by_hand(name: str) -> bool:
    return int(hashlib.sha1(name.encode("utf-8")).hexdigest(), 16) % 16 >= 12


def test_the_reserved_quarter_is_sha1_of_the_name_ending_in_c_to_f() -> None:
    names = [f"Person_{i}_{j:04d}.jpg" for i in range(50) for j in range(8)] + ["Émilie_Dequenne_0001.jpg"]
    assert [is_reserved(n) for n in names] == [reserved_by_hand(n) for n in names]
    assert 0.18 < np.mean([is_reserved(n) for n in names]) < 0.32
    assert is_reserved("Aaron_Eckhart_0001.jpg") == (hashlib.sha1(b"Aaron_Eckhart_0001.jpg").hexdigest()[-1] in "cdef")


def test_legend_quirks_case_repeats_and_conflicting_labels(tmp_path: Path) -> None:
    (tmp_path / "legend.csv").write_text(LEGEND)
    table = read_expression_csv(tmp_path / "legend.csv")
    by_image = {p.image: p for p in table.photos}
    assert table.conflicts == {"Avinash_30.jpg": ["surprise", "sadness"]} and "Avinash_30.jpg" not in by_image
    assert table.repeated == 1 and len(table.photos) == 20
    assert by_image["Aaron_Eckhart_0002.jpg"].expression == "happiness"
    assert by_image["Dwarakish_12.jpg"].expression == "disgust" and by_image["Dwarakish_12.jpg"].person == "Dwarakish"
    assert (
        person_of("Colin_Powell_0002.jpg") == "Colin_Powell"
        and person_of("facial-expressions_2868588k.jpg") == "facial-expressions_2868588k"
    )


def test_a_generic_image_emotion_csv_and_bad_rows(tmp_path: Path) -> None:
    (tmp_path / "faces.csv").write_text("image,emotion\nsub/a_1.png,Happy\nsub/b_1.png,angry\n")
    table = read_expression_csv(tmp_path / "faces.csv")
    assert [(p.image, p.expression, p.person) for p in table.photos] == [
        ("sub/a_1.png", "happiness", "a"),
        ("sub/b_1.png", "anger", "b"),
    ]
    (tmp_path / "bad.csv").write_text("image,emotion\na.png,happy\nb.png,bored\n")
    with pytest.raises(DatasetLayoutError, match=r"bad.csv:3: unknown expression 'bored'"):
        read_expression_csv(tmp_path / "bad.csv")
    (tmp_path / "cols.csv").write_text("file,label\na.png,happy\n")
    with pytest.raises(DatasetLayoutError, match="no column 'image', 'emotion'"):
        read_expression_csv(tmp_path / "cols.csv")


def test_split_excludes_the_reserved_quarter_and_keeps_persons_apart() -> None:
    from au_face.data.datamodules.photos import Photo

    rng = np.random.default_rng(0)
    photos = [
        Photo(f"P{p}_{k:04d}.jpg", str(rng.choice(["neutral", "happiness", "anger", "disgust"], p=[0.5, 0.4, 0.05, 0.05])), f"P{p}")
        for p in range(120) for k in range(1, 1 + int(rng.integers(1, 6)))
    ]  # fmt: skip
    splits = split_photos(photos, 0.25)
    assert all(not is_reserved(p.image) for s in ("train", "val") for p in splits[s])
    assert {p.image for p in splits["reserved"]} == {p.image for p in photos if is_reserved(p.image)}
    assert len(splits["train"]) + len(splits["val"]) + len(splits["reserved"]) == len(photos)
    assert not {p.person for p in splits["train"]} & {p.person for p in splits["val"]}
    for expression in ("anger", "disgust", "happiness"):
        assert any(p.expression == expression for p in splits["val"]) and any(
            p.expression == expression for p in splits["train"]
        )
    assert split_photos(photos, 0.25) == splits, "the split is deterministic"


def test_weak_labels_follow_the_table_and_unknowns_are_masked_from_the_loss() -> None:
    assert set(EXPRESSIONS) == {
        parse_expression(e)
        for e in ("NEUTRAL", "happy", "Sad", "surprised", "fearful", "angry", "disgusted", "contempt")
    }
    happy = dict(zip(AUS, weak_au_labels("happiness", AUS)))
    assert happy[12] == happy[6] == 1 and happy[4] == happy[15] == happy[24] == 0 and happy[25] == -1
    neutral = dict(zip(AUS, weak_au_labels("neutral", AUS)))
    assert neutral[25] == neutral[26] == neutral[45] == 0 and set(neutral.values()) == {0}
    surprise = dict(zip(AUS, weak_au_labels("surprise", AUS)))
    assert surprise[1] == surprise[2] == surprise[26] == 1 and surprise[4] == 0
    labels = torch.tensor([[weak_au_labels("happiness", AUS)]], dtype=torch.int8)  # [1,1,K]
    valid = torch.ones(1, 1, dtype=torch.bool)
    logits = torch.zeros(1, 1, len(AUS))
    changed = logits.clone()
    unknown = (labels[0, 0] < 0).nonzero().flatten()
    changed[0, 0, unknown] = torch.randn(len(unknown)) * 10
    assert torch.allclose(masked_bce(logits, labels, valid), masked_bce(changed, labels, valid)), (
        "unknown (-1) AUs do not enter the loss"
    )
    known = (labels[0, 0] >= 0).nonzero().flatten()
    changed[0, 0, known[0]] = 5.0
    assert not torch.allclose(masked_bce(logits, labels, valid), masked_bce(changed, labels, valid))


def make_collection(root: Path, reconstructed: bool = True, **kwargs) -> ExpressionPhotoDataModule:
    """The legend fixture with one-byte images and (optionally) cached one-frame meshes, the last photo without a face."""
    (root / "data").mkdir(parents=True)
    (root / "data" / "legend.csv").write_text(LEGEND)
    table = read_expression_csv(root / "data" / "legend.csv")
    (root / "images").mkdir()
    for photo in table.photos:
        (root / "images" / photo.image).write_bytes(b"\xff")
    dm = ExpressionPhotoDataModule(
        str(root), str(root / "cache"), val_fraction=0.34, geometry=photo_geometry(), batch_size=2, clip_length=4,
        **kwargs,
    )  # fmt: skip
    if reconstructed:
        results = []
        for i, photo in enumerate(table.photos):
            path = root / "images" / photo.image
            face = photo.image != "Zoe_Ball_0002.jpg"
            vertices = torch.randn(1, 468, 3, generator=torch.Generator().manual_seed(i)) * face
            CoarseFrames.from_canonical(vertices, torch.tensor([face]), 30.0, "mediapipe").save(dm.cache.prepare(path))
            results.append((path, "done" if face else "no_face", 1, int(face), "", None))
        dm.cache.record_many(results)
    return dm


def photo_geometry():
    """A MediaPipe geometry with landmark masks, a random basis and a small neutral estimator (no ICT model)."""
    import dataclasses

    from au_face.geometry.neutral import NeutralEstimator
    from dataset_fixtures import face_geometry

    g = torch.Generator().manual_seed(1)
    neutral = NeutralEstimator(
        torch.zeros(468, 3), torch.randn(2, 468, 3, generator=g), torch.randn(3, 468, 3, generator=g)
    )
    return dataclasses.replace(face_geometry(AUS), neutral=neutral)


def test_datamodule_serves_one_frame_items_with_weak_labels_and_never_the_reserved(tmp_path: Path) -> None:
    dm = make_collection(tmp_path / "fe")
    dm.setup("fit")
    served = {r.name for split in ("train", "val") for r in dm.records(split)}
    assert served and not any(is_reserved(name) for name in served)
    usable = {p.image for p in dm.table.photos if not is_reserved(p.image) and p.image != "Zoe_Ball_0002.jpg"}
    assert served == usable, "every unreserved photo with a face, and nothing else"
    assert {r.name for r in dm.records("test")} == {r.name for r in dm.records("val")}
    item = dm.datasets["train"][0]
    record = dm.records("train")[0]
    assert item["vertices"].shape == (4, 468, 3) and item["valid"].tolist() == [True, False, False, False]
    expression = dm.expressions("train")[0]
    assert item["labels"][0].tolist() == weak_au_labels(expression, AUS) and (item["labels"][1:] == -1).all()
    coarse = CoarseFrames.load(record.coarse_path)
    assert torch.allclose(item["reference"], dm.geometry.neutral(coarse.vertices.float(), coarse.valid), atol=1e-5), (
        "S̄ fitted to the photo"
    )
    with pytest.raises(DatasetLayoutError, match="reserved quarter is never served"):
        dm.list_sequences("reserved")


def test_person_reference_fits_s_bar_over_each_persons_photos_as_over_a_videos_frames(tmp_path: Path) -> None:
    dm = make_collection(tmp_path / "fe", person_reference=1.0)
    dm.setup("fit")
    records = dm.records("train")
    by_person: dict[str, list[int]] = {}
    for i, record in enumerate(records):
        by_person.setdefault(record.subject, []).append(i)
    shared = [members for members in by_person.values() if len(members) >= 2]
    alone = [members[0] for members in by_person.values() if len(members) == 1]
    assert shared and alone, "the fixture's training split has persons with one photo and with several"
    dataset = dm.datasets["train"]
    for members in shared:
        frames = [CoarseFrames.load(records[i].coarse_path) for i in members]
        expected = dm.geometry.neutral(
            torch.cat([f.vertices for f in frames]).float(), torch.cat([f.valid for f in frames])
        )
        own = dm.geometry.neutral(frames[0].vertices.float(), frames[0].valid)
        assert not torch.allclose(expected, own, atol=1e-3), "the person's S̄ differs from the photo's own"
        for i in members:
            assert torch.allclose(dataset[i]["reference"], expected, atol=1e-5)
    for i in alone:
        coarse = CoarseFrames.load(records[i].coarse_path)
        assert torch.allclose(
            dataset[i]["reference"], dm.geometry.neutral(coarse.vertices.float(), coarse.valid), atol=1e-5
        )
    validation = dm.datasets["val"]
    assert not validation.shared_references, "only training items take a person's S̄"
    with pytest.raises(ValueError, match="person_reference"):
        make_collection(tmp_path / "bad", person_reference=1.5)


def test_a_share_of_items_takes_the_shared_reference_drawn_per_item(tmp_path: Path) -> None:
    dm = make_collection(tmp_path / "fe")
    dm.setup("fit")
    dataset = dm.datasets["train"]
    own = dataset[0]["reference"]
    marker = torch.full_like(own, 7.0)
    dataset.share_references({0: marker}, 0.5)
    torch.manual_seed(0)
    references = [dataset[0]["reference"] for _ in range(200)]
    took = [bool(torch.equal(reference, marker)) for reference in references]
    assert 0.35 < np.mean(took) < 0.65
    assert all(t or torch.allclose(reference, own) for t, reference in zip(took, references)), "else its own S̄"
    with pytest.raises(ValueError, match="no sequences"):
        dataset.share_references({len(dataset.records): marker}, 0.5)


def test_missing_reconstructions_name_the_command(tmp_path: Path) -> None:
    from au_face.data.cache import CacheMissError

    dm = make_collection(tmp_path / "fe", reconstructed=False)
    with pytest.raises(CacheMissError, match="au-face preprocess"):
        dm.setup("fit")


def test_record_many_writes_each_entry_like_record(tmp_path: Path) -> None:
    cache = CoarseCache(tmp_path / "cache", "mediapipe", "2", tmp_path)
    photos = []
    for i in range(3):
        (tmp_path / f"p{i}.jpg").write_bytes(bytes([i]))
        CoarseFrames.from_canonical(torch.zeros(1, 468, 3), torch.ones(1, dtype=torch.bool), 30.0, "mediapipe").save(
            cache.prepare(tmp_path / f"p{i}.jpg")
        )
        photos.append((tmp_path / f"p{i}.jpg", "done", 1, 1, "", None))
    cache.record_many(photos)
    assert cache.missing([p for p, *_ in photos]) == []
    assert set(cache.manifest()) == {cache.key(p) for p, *_ in photos}


def test_mixed_batches_come_from_one_source_in_the_ratio() -> None:
    weights = np.array([1.0] * 40 + [10.0] * 10)  # 50 photos, the last 10 drawn more often
    sampler = MixedBatchSampler(first=30, weights=weights, batch_size=4, ratio=1.5, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 7 + 10
    first = [b for b in batches if max(b) < 30]
    second = [b for b in batches if min(b) >= 30]
    assert len(first) == 7 and len(second) == 10 and len(first) + len(second) == len(batches)
    drawn = np.concatenate(second) - 30
    assert len(set(drawn.tolist())) == len(drawn), "no photo twice in an epoch"
    assert (drawn >= 40).mean() > 10 / 50, "weights favour the heavier photos"
    assert list(sampler) != batches, "a new draw every epoch"


def test_drawing_every_photo_ignores_the_weights_unless_with_replacement() -> None:
    """An epoch that draws as many photos as there are takes each once, whatever the weights;
    with replacement the heavier photos keep their share."""
    weights = np.array([1.0] * 40 + [9.0] * 8)  # 48 photos: the last 8 hold 2/3 of the weight
    shares = {}
    for replace in (False, True):
        sampler = MixedBatchSampler(first=8, weights=weights, batch_size=4, ratio=100, seed=0, replace=replace)
        drawn = np.concatenate([b for b in sampler if min(b) >= 8]) - 8
        assert len(drawn) == 48, "capped at the batches the photos fill"
        shares[replace] = (drawn >= 40).mean()
    assert shares[False] == pytest.approx(8 / 48)
    assert 0.5 < shares[True] < 0.85


def test_photos_are_mirrored_like_the_synthetic_clips_unless_given_their_own_share(tmp_path: Path) -> None:
    from au_face.data.datamodules.mixed import SyntheticPhotoDataModule

    photos = {"root": str(tmp_path / "fe"), "cache_dir": str(tmp_path / "cache")}
    common = dict(root=str(tmp_path / "synthetic"), geometry=photo_geometry(), mirror=0.25)
    assert SyntheticPhotoDataModule(photos=photos, **common).photos.mirror == 0.25
    own = SyntheticPhotoDataModule(photos={**photos, "mirror": 0.5}, **common)
    assert (own.mirror, own.photos.mirror) == (0.25, 0.5)


def test_lip_parting_measures_the_inner_lip_gap_over_the_mouth_width() -> None:
    from au_face.data.lips import LIPS_AT_REST, LIPS_PARTED, lip_parting, lips_part_labels
    from au_face.faces.mediapipe import mediapipe_topology

    topology = mediapipe_topology()
    faces = np.stack([open_mouth(topology.template, topology.landmarks68, p) for p in (0.02, 0.15, 0.4)])
    parting = lip_parting(faces, topology.landmarks68)
    np.testing.assert_allclose(parting, [0.02, 0.15, 0.4], atol=1e-6)
    np.testing.assert_allclose(lip_parting(faces * 3.0 + 1.0, topology.landmarks68), parting, atol=1e-6)  # scale-free
    assert LIPS_AT_REST < 0.15 < LIPS_PARTED
    assert lips_part_labels(np.array([0.02, 0.15, 0.4, np.nan])).tolist() == [0, -1, 1, -1]
    no_lips = topology.landmarks68.copy()
    no_lips[62] = -1
    with pytest.raises(ValueError, match="inner-lip landmark"):
        lip_parting(faces, no_lips)


def test_lips_parted_reads_numpy_arrays_and_torch_tensors_alike() -> None:
    from au_face.data.lips import LIPS_PARTED, inner_lip_points, lips_parted
    from au_face.faces.mediapipe import mediapipe_topology

    topology = mediapipe_topology()
    parting = [0.02, LIPS_PARTED * 0.95, LIPS_PARTED * 1.05, 0.4]
    faces = np.stack([open_mouth(topology.template, topology.landmarks68, p) for p in parting])
    faces = np.concatenate([faces, np.zeros_like(faces[:1])])  # a frame without a face: no mouth, not parted
    points = inner_lip_points(topology.landmarks68)
    want = [False, False, True, True, False]
    assert lips_parted(faces, points).tolist() == want
    assert lips_parted(torch.from_numpy(faces).float()[None], points)[0].tolist() == want  # batched [B,T,V,3]
    no_lips = topology.landmarks68.copy()
    no_lips[66] = -1
    assert inner_lip_points(no_lips) is None


def test_lips_part_fills_only_the_unknown_au25_labels() -> None:
    from au_face.data.lips import fill_lips_part
    from au_face.faces.mediapipe import mediapipe_topology

    topology = mediapipe_topology()
    parted = open_mouth(topology.template, topology.landmarks68, 0.4)[None]
    closed = open_mouth(topology.template, topology.landmarks68, 0.0)[None]
    au25 = AUS.index(25)
    for expression, face, wanted in [
        ("happiness", parted, 1),  # unknown in a smile: from the mesh
        ("happiness", closed, 0),
        ("neutral", parted, 0),  # the expression's 0 stays (lips apart at rest are that person's baseline)
        ("surprise", closed, 1),  # the expression's 1 stays
    ]:
        labels = np.array([weak_au_labels(expression, AUS)], dtype=np.int8)
        filled = fill_lips_part(labels, AUS, face, topology.landmarks68)
        assert filled[0, au25] == wanted, expression
        others = np.arange(len(AUS)) != au25
        assert (filled[0, others] == labels[0, others]).all()
    without = [au for au in AUS if au != 25]
    labels = np.array([weak_au_labels("happiness", without)], dtype=np.int8)
    assert (fill_lips_part(labels, without, parted, topology.landmarks68) == labels).all()


def test_parted_lips_rule_out_the_lip_pressor_whatever_the_expression_says() -> None:
    from au_face.data.lips import clear_lip_press
    from au_face.faces.mediapipe import mediapipe_topology

    topology = mediapipe_topology()
    au24 = AUS.index(24)
    for expression, parting, wanted in [
        ("anger", 0.4, 0),  # an angry face shouting: its listed AU24 is ruled out
        ("anger", 0.0, 1),  # lips together: the expression's 1 stays
        ("anger", 0.15, 1),  # between the bounds: stays
        ("sadness", 0.4, 0),  # unknown, ruled out
        ("sadness", 0.0, -1),  # unknown stays unknown
        ("neutral", 0.0, 0),
    ]:
        face = open_mouth(topology.template, topology.landmarks68, parting)[None]
        labels = np.array([weak_au_labels(expression, AUS)], dtype=np.int8)
        cleared = clear_lip_press(labels, AUS, face, topology.landmarks68)
        assert cleared[0, au24] == wanted, (expression, parting)
        others = np.arange(len(AUS)) != au24
        assert (cleared[0, others] == labels[0, others]).all()
        assert labels[0, au24] == weak_au_labels(expression, [24])[0]  # a copy: the input is untouched
    without = [au for au in AUS if au != 24]
    parted = open_mouth(topology.template, topology.landmarks68, 0.4)[None]
    labels = np.array([weak_au_labels("anger", without)], dtype=np.int8)
    assert (clear_lip_press(labels, without, parted, topology.landmarks68) == labels).all()


def test_datamodule_reads_au25_and_au24_from_the_photo_mesh_when_asked(tmp_path: Path) -> None:
    from au_face.faces.mediapipe import mediapipe_topology

    topology = mediapipe_topology()
    root = tmp_path / "fe"
    (root / "data").mkdir(parents=True)
    (root / "images").mkdir()
    rows = ["user.id,image,emotion"]
    parting = {
        "Smile_Open_0001.jpg": 0.4,
        "Smile_Shut_0001.jpg": 0.0,
        "Calm_Open_0001.jpg": 0.4,
        "Angry_Open_0001.jpg": 0.4,
    }
    expression = {
        "Smile_Open_0001.jpg": "happiness",
        "Smile_Shut_0001.jpg": "happiness",
        "Calm_Open_0001.jpg": "neutral",
        "Angry_Open_0001.jpg": "anger",
    }
    stems = ("Smile_Open", "Smile_Shut", "Calm_Open", "Angry_Open")
    names = [f"{stem}_{i:04d}.jpg" for stem in stems for i in range(1, 40)]
    names = [n for n in names if not is_reserved(n)]
    for name in names:
        rows.append(f"1,{name},{expression[name[:-8] + '0001.jpg']}")
        (root / "images" / name).write_bytes(name.encode())
    (root / "data" / "legend.csv").write_text("\n".join(rows) + "\n")
    kwargs = dict(val_fraction=0.34, geometry=photo_geometry(), batch_size=2, clip_length=1)
    dm = ExpressionPhotoDataModule(
        str(root), str(root / "cache"), lips_part_from_mesh=True, lip_press_from_mesh=True, **kwargs
    )
    results = []
    for name in names:
        face = open_mouth(topology.template, topology.landmarks68, parting[name[:-8] + "0001.jpg"])
        vertices = torch.from_numpy(face[None].astype(np.float32))
        CoarseFrames.from_canonical(vertices, torch.tensor([True]), 30.0, "mediapipe").save(
            dm.cache.prepare(root / "images" / name)
        )
        results.append((root / "images" / name, "done", 1, 1, "", None))
    dm.cache.record_many(results)
    plain = ExpressionPhotoDataModule(str(root), str(root / "cache"), **kwargs)
    au25, au24 = AUS.index(25), AUS.index(24)
    wanted = {"Smile_Open": 1, "Smile_Shut": 0, "Calm_Open": 0, "Angry_Open": 1}
    records = [r for split in ("train", "val") for r in dm.records(split)]
    unfilled_records = [r for split in ("train", "val") for r in plain.records(split)]
    assert len(records) == len(names)
    for record, unfilled in zip(records, unfilled_records, strict=True):
        assert record.labels[0, au25] == wanted[record.name[:-9]], record.name
        assert unfilled.labels[0, au25] == (0 if record.name.startswith("Calm") else -1)
        if record.name.startswith("Angry"):  # anger lists AU24; the open mouth rules it out
            assert (record.labels[0, au24], unfilled.labels[0, au24]) == (0, 1)


def test_the_documented_weak_label_table_is_the_one_in_code() -> None:
    from au_face.aus import EXPRESSION_AUS

    doc = (Path(__file__).resolve().parents[1] / "docs" / "aus.md").read_text()
    rows = {}
    for line in doc.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] in EXPRESSION_AUS:
            rows[cells[0]] = tuple(
                frozenset(int(a) for a in c.split(",")) if c[0].isdigit() else None for c in cells[1:3]
            )
    assert set(rows) == set(EXPRESSION_AUS)
    for expression, (ones, zeros) in EXPRESSION_AUS.items():
        doc_ones, doc_zeros = rows[expression]
        assert (doc_ones or frozenset()) == ones, expression
        assert doc_zeros is None or doc_zeros == zeros, expression  # "every AU" for neutral
