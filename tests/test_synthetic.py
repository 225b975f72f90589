"""Synthetic 4D AU data: layout, labels, determinism, AU statistics, noise model, rendering, caching."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from au_face.aus import au_label
from au_face.coarse.base import CoarseFrames
from au_face.data.synthetic.config import INDEX_NAME, SyntheticConfig, SyntheticConfigError, config_fingerprint
from au_face.data.synthetic.generate import generate_synthetic_dataset, load_synthetic_index
from au_face.data.synthetic.motion import sample_au_activations, sample_head_pose
from au_face.data.synthetic.rasterizers import RENDERER_NAMES
from au_face.data.synthetic.shading import Lighting, MeshRenderer, gradient_background
from au_face.data.synthetic.simulate import coarse_from_clean
from au_face.errors import AUFaceError

TINY = SyntheticConfig(num_identities=(2, 2, 2), sequences_per_identity=1, frames_per_sequence=16, image_size=64)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory, ict_npz: Path):
    root = tmp_path_factory.mktemp("synthetic")
    return generate_synthetic_dataset(root, ict_npz, TINY)


def all_ids(index) -> list[str]:
    return [seq_id for split in ("train", "val", "test") for seq_id in index.splits[split]]


def read_labels(path: Path) -> tuple[list[str], np.ndarray]:
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], np.array(rows[1:], dtype=int)


def test_layout_and_coarse_record(tiny, ict_model) -> None:
    root = tiny.root
    assert json.loads((root / INDEX_NAME).read_text())["renderer"] == tiny.renderer
    assert {k: len(v) for k, v in tiny.splits.items()} == {"train": 2, "val": 2, "test": 2}
    n, size = TINY.frames_per_sequence, TINY.image_size
    for seq_id in all_ids(tiny):
        coarse = CoarseFrames.load(root / "coarse" / f"{seq_id}.npz")
        assert coarse.topology == "ict" and coarse.fps == 25.0 and len(coarse) == n
        assert coarse.vertices.shape == (n, ict_model.num_vertices, 3) and coarse.vertices.dtype == torch.float32
        assert bool(coarse.valid.all())
        assert coarse.crops.shape == (n, size, size, 3) and coarse.crops.dtype == torch.uint8
        assert coarse.expression.shape == (n, len(ict_model.expression_names))
        assert torch.allclose(coarse.timestamps, torch.arange(n, dtype=torch.float64) / 25.0)
        assert torch.allclose(torch.det(coarse.rotation), torch.ones(n), atol=1e-5)
        with np.load(root / "gt" / f"{seq_id}.npz") as gt:
            assert gt["vertices"].shape == (n, ict_model.num_vertices, 3)
            assert gt["activations"].shape == (n, len(TINY.aus))
            # landmarks are the projection of the posed clean mesh, in crop pixels
            posed = coarse.with_fields(vertices=torch.from_numpy(gt["vertices"])).posed_vertices()
        landmarks = posed[:, torch.from_numpy(ict_model.landmarks68), :2]
        assert torch.allclose(landmarks, coarse.landmarks2d, atol=1e-3)
        assert float(coarse.landmarks2d.min()) > 0 and float(coarse.landmarks2d.max()) < size


def test_labels_csv(tiny) -> None:
    for seq_id in all_ids(tiny):
        header, values = read_labels(tiny.labels_path(seq_id))
        assert header == ["frame", *(au_label(a) for a in TINY.aus)]
        assert values.shape == (TINY.frames_per_sequence, 1 + len(TINY.aus))
        assert (values[:, 0] == np.arange(TINY.frames_per_sequence)).all()
        with np.load(tiny.gt_path(seq_id)) as gt:
            assert (values[:, 1:] == (gt["activations"] >= TINY.label_threshold)).all()


def test_unknown_fraction(tmp_path: Path, ict_npz: Path) -> None:
    config = SyntheticConfig(num_identities=(1, 1, 1), sequences_per_identity=1, frames_per_sequence=40,
                             image_size=32, unknown_fraction=0.3)  # fmt: skip
    index = generate_synthetic_dataset(tmp_path, ict_npz, config)
    _, values = read_labels(index.labels_path(index.splits["train"][0]))
    assert 0.15 < (values[:, 1:] == -1).mean() < 0.45
    assert set(np.unique(values[:, 1:])) <= {-1, 0, 1}


def test_deterministic_and_identities_disjoint(tiny, tmp_path: Path, ict_npz: Path) -> None:
    # the fixture was generated in this process; two spawned workers must give the same bytes
    again = generate_synthetic_dataset(tmp_path / "again", ict_npz, TINY, workers=2)
    for seq_id in all_ids(tiny):
        a = CoarseFrames.load(tiny.coarse_path(seq_id)).to_numpy()
        b = CoarseFrames.load(again.coarse_path(seq_id)).to_numpy()
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
        assert tiny.labels_path(seq_id).read_text() == again.labels_path(seq_id).read_text()
    identities = {}
    for seq_id in all_ids(tiny):
        with np.load(tiny.gt_path(seq_id)) as gt:
            identities.setdefault(seq_id.split("_")[0], []).append(gt["identity"])
    train, val, test = (np.stack(identities[s]) for s in ("train", "val", "test"))
    for a, b in ((train, val), (train, test), (val, test)):
        assert np.abs(a[:, None] - b[None]).sum(-1).min() > 1.0
    train_ids = {tiny.identities[i] for i in tiny.splits["train"]}
    assert train_ids.isdisjoint(tiny.identities[i] for i in tiny.splits["test"])


def test_other_seed_differs(tmp_path: Path, ict_npz: Path) -> None:
    base = dict(num_identities=(1, 1, 1), sequences_per_identity=1, frames_per_sequence=8, image_size=32)
    a = sample_au_activations(TINY.aus, np.random.default_rng(0), SyntheticConfig(**base))
    b = sample_au_activations(TINY.aus, np.random.default_rng(1), SyntheticConfig(**base))
    assert not np.array_equal(a, b)


def test_activation_dynamics_and_cooccurrence() -> None:
    config = SyntheticConfig()
    tracks = np.stack([sample_au_activations(config.aus, np.random.default_rng(i), config) for i in range(300)])
    assert tracks.min() >= 0 and tracks.max() <= 1
    # smooth onsets/offsets: frame-to-frame change stays well below the peak intensity
    assert np.abs(np.diff(tracks, axis=1)).max() < 0.6
    present = tracks.reshape(-1, len(config.aus)) >= config.label_threshold
    rates = present.mean(0)
    assert (rates > 0.1).all() and (rates < 0.45).all(), rates
    col = {au: k for k, au in enumerate(config.aus)}

    def given(a: int, b: int) -> float:
        return present[present[:, col[b]], col[a]].mean()

    assert given(6, 12) > rates[col[6]] + 0.15
    assert given(2, 1) > rates[col[2]] + 0.2
    assert given(17, 15) > rates[col[17]] + 0.15
    assert given(24, 23) > rates[col[24]] + 0.15
    assert given(4, 1) < rates[col[4]] / 2
    # AU6 follows a strong AU12 far more often than a weak one
    flat = tracks.reshape(-1, len(config.aus))
    strong = flat[:, col[12]] > 0.7
    weak = (flat[:, col[12]] >= 0.25) & (flat[:, col[12]] < 0.45)
    assert present[strong, col[6]].mean() > present[weak, col[6]].mean() + 0.3


def test_independent_tracks_without_cooccurrence() -> None:
    config = SyntheticConfig(cooccurrence=False)
    tracks = np.concatenate([sample_au_activations(config.aus, np.random.default_rng(i), config) for i in range(300)])
    present = tracks >= config.label_threshold
    k6, k12 = config.aus.index(6), config.aus.index(12)
    assert abs(present[present[:, k12], k6].mean() - present[:, k6].mean()) < 0.05


def test_noise_model(ict_model) -> None:
    rng = np.random.default_rng(0)
    config = SyntheticConfig()
    activations = sample_au_activations(config.aus, rng, config)
    expression = np.clip(activations @ ict_model.au_basis(config.aus), 0, 1)
    identity = rng.normal(size=config.identity_modes)
    clean = ict_model.shape(identity, expression)

    only_vertex = SyntheticConfig(expression_noise=0, identity_noise=0, vertex_noise=0.02)
    noisy, noisy_expr = coarse_from_clean(ict_model, identity, expression, rng, only_vertex)
    assert np.std(noisy - clean) == pytest.approx(0.02, rel=0.05)
    assert np.allclose(noisy_expr, expression)

    only_expression = SyntheticConfig(expression_noise=0.08, identity_noise=0, vertex_noise=0)
    noisy, noisy_expr = coarse_from_clean(ict_model, identity, expression, rng, only_expression)
    assert np.std(noisy_expr - expression) == pytest.approx(0.08, rel=0.05)
    assert np.allclose(noisy, ict_model.shape(identity, noisy_expr), atol=1e-4)

    only_identity = SyntheticConfig(expression_noise=0, identity_noise=0.3, vertex_noise=0)
    noisy, _ = coarse_from_clean(ict_model, identity, expression, rng, only_identity)
    offset = noisy - clean
    assert np.abs(offset).mean() > 0.01
    assert np.allclose(offset, offset[:1], atol=1e-4)  # one constant error per sequence


def test_coarse_noisier_than_gt(tiny) -> None:
    def acceleration(v: np.ndarray) -> float:
        return float(np.linalg.norm(v[2:] - 2 * v[1:-1] + v[:-2], axis=-1).mean())

    for seq_id in all_ids(tiny):
        coarse = CoarseFrames.load(tiny.coarse_path(seq_id))
        with np.load(tiny.gt_path(seq_id)) as gt:
            gt_vertices, gt_expression = gt["vertices"], gt["expression"]
        error = np.linalg.norm(coarse.vertices.numpy() - gt_vertices, axis=-1).mean()
        assert 0.03 < error < 0.5  # centimetres
        assert np.std(coarse.expression.numpy() - gt_expression) == pytest.approx(TINY.expression_noise, rel=0.15)
        # ground truth moves too (AUs, speech, blinks), but the coarse jitter adds much more
        assert acceleration(gt_vertices) < 0.5 * acceleration(coarse.vertices.numpy())


def test_head_pose_is_smooth_and_centred(ict_model) -> None:
    config = SyntheticConfig(frames_per_sequence=50)
    landmarks = ict_model.neutral[ict_model.landmarks68]
    rotation, translation, scale = sample_head_pose(landmarks, np.random.default_rng(3), config)
    assert np.allclose(rotation @ rotation.transpose(0, 2, 1), np.eye(3), atol=1e-5)
    posed = scale[:, None, None] * landmarks @ rotation.transpose(0, 2, 1) + translation[:, None]
    centre = posed[..., :2].mean(1)
    assert np.abs(centre - config.image_size / 2).max() <= config.head_translation * config.image_size + 1e-3
    assert (posed[:, 8, 1] > posed[:, 27, 1]).all()  # chin below the nose bridge: image y points down
    relative = rotation[1:] @ rotation[:-1].transpose(0, 2, 1)
    angles = np.degrees(np.arccos(np.clip((np.trace(relative, axis1=1, axis2=2) - 1) / 2, -1, 1)))
    assert angles.max() < 1.5  # degrees per frame


def test_rendered_crops(tiny) -> None:
    for seq_id in all_ids(tiny):
        crops = CoarseFrames.load(tiny.coarse_path(seq_id)).crops.numpy()
        assert crops.std() > 10
        assert not np.array_equal(crops[0], crops[-1])  # head and face move


def test_renderer_coverage_and_light(ict_model) -> None:
    size = 96
    config = SyntheticConfig(image_size=size, head_rotation_deg=0, head_translation=0)
    landmarks = ict_model.neutral[ict_model.landmarks68]
    rotation, translation, scale = sample_head_pose(landmarks, np.random.default_rng(0), config)
    posed = scale[0] * ict_model.neutral @ rotation[0].T + translation[0]
    renderer = MeshRenderer(ict_model.triangles, size)
    background = gradient_background(size, (0.2, 0.3, 0.9), (0.1, 0.6, 0.2))
    albedo = np.array([0.8, 0.6, 0.5])
    front = Lighting(np.array([0.0, 0.0, -1.0]), ambient=0.3, intensity=1.0, albedo=albedo)
    grazing = Lighting(np.array([1.0, 0.0, -0.1]) / np.hypot(1.0, 0.1), ambient=0.3, intensity=1.0, albedo=albedo)
    lit, dim = renderer.render(posed, front, background), renderer.render(posed, grazing, background)
    assert np.array_equal(lit.mask, dim.mask)
    assert 0.3 < lit.mask.mean() < 0.85
    assert lit.mask[size // 2, size // 2] and not lit.mask[0, 0]
    nose = np.round(posed[ict_model.landmarks68[30], :2]).astype(int)
    assert lit.mask[nose[1], nose[0]]
    assert np.array_equal(lit.image[~lit.mask], background[~lit.mask])
    assert lit.image[lit.mask].mean() > dim.image[dim.mask].mean() + 20
    # with the light on the +x side, the right half of the face is brighter than the left
    half = np.zeros_like(dim.mask)
    half[:, size // 2 :] = True
    assert dim.image[dim.mask & half].mean() > dim.image[dim.mask & ~half].mean() + 20


def test_cache_reuse_and_resume(tmp_path: Path, ict_npz: Path) -> None:
    config = SyntheticConfig(num_identities=(2, 1, 1), sequences_per_identity=1, frames_per_sequence=8, image_size=32)
    index = generate_synthetic_dataset(tmp_path, ict_npz, config)
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    stamps = {p: p.stat().st_mtime_ns for p in files}

    again = generate_synthetic_dataset(tmp_path, ict_npz, config)
    assert again.splits == index.splits
    assert {p: p.stat().st_mtime_ns for p in files} == stamps

    assert load_synthetic_index(tmp_path) is not None
    assert load_synthetic_index(tmp_path, config) is not None
    assert load_synthetic_index(tmp_path, SyntheticConfig(seed=1)) is None

    # interrupted run: no index, one sequence lost its coarse file
    (tmp_path / INDEX_NAME).unlink()
    victim = index.splits["train"][1]
    original = index.coarse_path(victim).read_bytes()
    index.coarse_path(victim).unlink()
    assert load_synthetic_index(tmp_path, config) is None
    generate_synthetic_dataset(tmp_path, ict_npz, config)
    assert index.coarse_path(victim).read_bytes() == original
    changed = {p for p in files if p.stat().st_mtime_ns != stamps[p]}
    redone = {index.coarse_path(victim), index.labels_path(victim), index.gt_path(victim)}
    assert changed == {tmp_path / INDEX_NAME, *redone}
    assert load_synthetic_index(tmp_path, config) is not None


def test_data_made_with_the_other_ray_engine_is_served_not_made_again(tmp_path: Path, ict_npz: Path) -> None:
    """Embree and rtree give the same images up to rounding: a dataset made with either loads where
    only the other is installed (stored fingerprints are checked against the stored renderer)."""
    config = SyntheticConfig(num_identities=(1, 1, 1), sequences_per_identity=1, frames_per_sequence=8, image_size=32)
    index = generate_synthetic_dataset(tmp_path, ict_npz, config)
    here = index.renderer
    other = next(name for name in RENDERER_NAMES["embree"] if name != here)
    stamp = {"renderer": other, "fingerprint": config_fingerprint(config, other)}
    meta = json.loads((tmp_path / INDEX_NAME).read_text())
    (tmp_path / INDEX_NAME).write_text(json.dumps({**meta, "renderer": stamp["renderer"]}))
    for seq_id in all_ids(index):
        with np.load(index.gt_path(seq_id)) as gt:
            arrays = {**{k: gt[k] for k in gt.files}, "fingerprint": np.array(stamp["fingerprint"])}
        np.savez(index.gt_path(seq_id), **arrays)
    assert load_synthetic_index(tmp_path, config).renderer == other
    # a renderer of another backend, or a fingerprint that does not match the stored renderer, is not served
    (tmp_path / INDEX_NAME).write_text(json.dumps({**meta, "renderer": "pytorch3d"}))
    assert load_synthetic_index(tmp_path, config) is None
    (tmp_path / INDEX_NAME).write_text(json.dumps({**meta, "renderer": here}))
    assert load_synthetic_index(tmp_path, config) is None


def test_other_config_regenerates(tmp_path: Path, ict_npz: Path) -> None:
    config = SyntheticConfig(num_identities=(1, 1, 1), sequences_per_identity=1, frames_per_sequence=8, image_size=32)
    index = generate_synthetic_dataset(tmp_path, ict_npz, config)
    before = index.gt_path(index.splits["val"][0]).read_bytes()
    other = SyntheticConfig(**{**config.to_dict(), "expression_noise": 0.1})
    generate_synthetic_dataset(tmp_path, ict_npz, other)
    assert index.gt_path(index.splits["val"][0]).read_bytes() != before  # new fingerprint, regenerated
    assert load_synthetic_index(tmp_path, config) is None
    assert load_synthetic_index(tmp_path, other).config == other


def test_config_validation_and_roundtrip() -> None:
    config = SyntheticConfig(aus="disfa", num_identities=[3, 1, 1])
    assert config.aus == (1, 2, 4, 6, 9, 12, 25, 26) and config.num_identities == (3, 1, 1)
    assert SyntheticConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(SyntheticConfigError, match="AU43"):
        SyntheticConfig(aus=[1, 43])
    with pytest.raises(AUFaceError, match="image_size"):
        SyntheticConfig(image_size=4)
    with pytest.raises(SyntheticConfigError, match="unknown"):
        SyntheticConfig.from_dict({"seed": 1, "colour": "red"})


def test_unlabelled_speech_and_blinks_move_only_unlabelled_shapes(ict_npz) -> None:
    from au_face.data.synthetic.motion import NUISANCE_SHAPES, sample_nuisance
    from au_face.data.synthetic.simulate import SequenceSimulator
    from au_face.faces.ict import ict_blendshape_weights

    config = SyntheticConfig(image_size=16, frames_per_sequence=200, aus=(1, 12, 26))
    simulator = SequenceSimulator(ict_npz, config)
    names = simulator.model.expression_names
    weights = sample_nuisance(names, simulator.labelled_shapes, 200, config.fps, np.random.default_rng(0), 1.0)
    moving = {names[i] for i in np.flatnonzero(np.abs(weights).max(axis=0) > 0)}
    assert "jawOpen" not in moving, "jawOpen carries the labelled AU26"
    assert moving and moving <= set(NUISANCE_SHAPES["speech"]) | set(NUISANCE_SHAPES["blink"])
    assert moving.isdisjoint(name for au in config.aus for name in ict_blendshape_weights(au))
    assert {"eyeBlink_L", "eyeBlink_R"} <= moving
    silent = sample_nuisance(names, simulator.labelled_shapes, 200, config.fps, np.random.default_rng(0), 0.0)
    assert not silent.any()
