"""AU vertex masks: range, smoothness bound, AU geometry, determinism, cache, transfer, files, CLI."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from au_face.aus import AU_SETS, UnknownAUError
from au_face.faces.correspondence import interocular_distance, register_template
from au_face.faces.topology import FaceTopology
from au_face.geometry import masks as masks_module
from au_face.geometry.masks import (
    AU_REGIONS,
    MaskError,
    build_masks,
    load_masks,
    mask_overlap,
    masks_from_ict,
    masks_from_landmarks,
    ring_falloff,
    save_masks,
    transfer_masks,
)

BP4D = list(AU_SETS["bp4d"])
ALL_BENCHMARK_AUS = sorted({au for aus in AU_SETS.values() for au in aus})


@pytest.fixture(scope="module")
def ict_topology(ict_model) -> FaceTopology:
    return ict_model.topology()


@pytest.fixture(scope="module")
def ict_masks(ict_model) -> np.ndarray:
    return masks_from_ict(ict_model, ALL_BENCHMARK_AUS)


@pytest.fixture(scope="module")
def landmark_masks(ict_topology) -> np.ndarray:
    return masks_from_landmarks(ict_topology, ALL_BENCHMARK_AUS)


def _row(au: int) -> int:
    return ALL_BENCHMARK_AUS.index(au)


def _max_edge_jump(topology: FaceTopology, masks: np.ndarray) -> float:
    edges = topology.edges()
    return float(np.abs(masks[:, edges[:, 0]] - masks[:, edges[:, 1]]).max())


def _smaller(topology: FaceTopology) -> FaceTopology:
    """The same face with about 30% fewer vertices (landmarks kept), under the same name."""
    return topology.submesh(np.union1d(np.arange(4000), topology.landmarks68))


def _strip() -> FaceTopology:
    """A 1 x 12 strip of quads (split into triangles): vertex 2i is at x=i."""
    xs = np.arange(12, dtype=np.float32)
    template = np.concatenate([np.stack([xs, 0 * xs, 0 * xs], 1), np.stack([xs, 0 * xs + 1, 0 * xs], 1)])
    tris = [(i, i + 1, 12 + i) for i in range(11)] + [(i + 1, 13 + i, 12 + i) for i in range(11)]
    return FaceTopology("strip", template, np.array(tris), np.zeros(68, dtype=np.int64))


def test_ring_falloff_values_and_bound():
    strip = _strip()
    active = np.zeros(24, dtype=bool)
    active[0] = True
    mask = ring_falloff(active, strip, rings=3)
    # vertex 1 and 12 are 1 hop away, 2 and 13 two hops (via 1 or 12), ...
    assert mask[0] == 1.0
    assert mask[1] == pytest.approx(0.75) and mask[12] == pytest.approx(0.75)
    assert mask[2] == pytest.approx(0.5) and mask[3] == pytest.approx(0.25) and mask[4] == 0.0
    assert _max_edge_jump(strip, mask[None]) <= 0.25 + 1e-6
    assert set(np.unique(ring_falloff(active, strip, rings=0))) == {0.0, 1.0}
    with pytest.raises(MaskError, match="24 vertices"):
        ring_falloff(active[:5], strip)


@pytest.mark.parametrize("kind", ["ict_masks", "landmark_masks"])
def test_masks_in_range_and_smooth(kind, request, ict_topology):
    masks = request.getfixturevalue(kind)
    assert masks.shape == (len(ALL_BENCHMARK_AUS), 6706) and masks.dtype == np.float32
    assert masks.min() >= 0.0 and masks.max() <= 1.0
    active = (masks == 1.0).sum(1)
    assert (active > 50).all() and (active < 0.5 * 6706).all(), dict(zip(ALL_BENCHMARK_AUS, active))
    # the ring falloff's provable bound: neighbours differ by at most 1 / (rings + 1)
    assert _max_edge_jump(ict_topology, masks) <= 1 / (masks_module.DEFAULT_RINGS + 1) + 1e-6


@pytest.mark.parametrize("kind", ["ict_masks", "landmark_masks"])
def test_spatial_correlations(kind, request, ict_topology):
    masks = request.getfixturevalue(kind)
    brow_pair = mask_overlap(masks[_row(1)], masks[_row(2)])
    assert brow_pair > 0.2
    assert brow_pair > mask_overlap(masks[_row(1)], masks[_row(26)])
    assert mask_overlap(masks[_row(25)], masks[_row(26)]) > mask_overlap(masks[_row(4)], masks[_row(26)])

    # regions sit where FACS says: brows above the eyes, chin below the mouth, AU12 at the mouth corners
    y = ict_topology.template[:, 1]
    lm = ict_topology.template[ict_topology.landmarks68]
    eye_y, mouth_y = lm[36:48, 1].mean(), lm[48:68, 1].mean()

    def centre_y(au: int) -> float:
        weights = masks[_row(au)]
        return float((weights * y).sum() / weights.sum())

    for au in (1, 2, 4):
        assert centre_y(au) > eye_y
    for au in (12, 15, 17, 23, 24, 25, 26):
        assert centre_y(au) < 0.5 * (eye_y + lm[30, 1])
    assert centre_y(17) < mouth_y
    corners = np.linalg.norm(ict_topology.template[:, None] - lm[[48, 54]][None], axis=2).min(1)
    assert masks[_row(12)][corners < 0.05 * interocular_distance(ict_topology)].min() == 1.0


def test_ict_active_sets_have_no_speckles(ict_masks, ict_topology):
    from scipy.sparse.csgraph import connected_components

    adjacency = ict_topology.adjacency()
    pieces = {}
    for au in (1, 2, 17):
        ids = np.flatnonzero(ict_masks[_row(au)] == 1.0)
        pieces[au] = connected_components(adjacency[ids][:, ids], directed=False)[0]
    # AU1's shapes also nudge a few vertices at the hairline; that speckle is dropped
    assert pieces == {1: 1, 2: 2, 17: 1}


def test_landmark_table_covers_benchmarks_and_works_on_any_face(ict_topology):
    assert set(ALL_BENCHMARK_AUS) <= set(AU_REGIONS)
    # a scaled, rotated copy (other units, other orientation) gets the same masks
    angle = 0.7
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    template = 10.0 * ict_topology.template @ rotation.T + 3.0
    moved = FaceTopology("moved", template, ict_topology.triangles, ict_topology.landmarks68)
    np.testing.assert_array_equal(masks_from_landmarks(moved, BP4D), masks_from_landmarks(ict_topology, BP4D))


def test_deterministic(ict_model, ict_topology):
    np.testing.assert_array_equal(masks_from_ict(ict_model, BP4D), masks_from_ict(ict_model, BP4D))
    np.testing.assert_array_equal(masks_from_landmarks(ict_topology, BP4D), masks_from_landmarks(ict_topology, BP4D))


def test_cache_hit_is_identical_and_skips_building(ict_model, ict_topology, tmp_path, monkeypatch):
    first = build_masks(ict_topology, BP4D, "ict", ict_model=ict_model, cache_dir=tmp_path)
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1

    def fail(*args, **kwargs):
        raise AssertionError("cache miss: masks were rebuilt")

    monkeypatch.setattr(masks_module, "masks_from_ict", fail)
    second = build_masks(ict_topology, BP4D, "ict", ict_model=ict_model, cache_dir=tmp_path)
    np.testing.assert_array_equal(first, second)
    # other parameters are other cache entries
    build_masks(ict_topology, BP4D, "landmarks", cache_dir=tmp_path)
    build_masks(ict_topology, BP4D, "landmarks", cache_dir=tmp_path, rings=2)
    assert len(list(tmp_path.glob("*.npz"))) == 3
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_save_load_round_trip_and_validation(ict_topology, landmark_masks, tmp_path):
    path = tmp_path / "m.npz"
    save_masks(path, landmark_masks, ALL_BENCHMARK_AUS, "ict")
    np.testing.assert_array_equal(load_masks(path, ict_topology, ALL_BENCHMARK_AUS), landmark_masks)

    small = _smaller(ict_topology)
    with pytest.raises(MaskError, match=rf"6706 vertices .* has {small.num_vertices}"):
        load_masks(path, small, ALL_BENCHMARK_AUS)
    with pytest.raises(MaskError, match="AU01, AU02"):
        load_masks(path, ict_topology, BP4D)
    with pytest.raises(MaskError, match="topology 'ict', not 'other'"):
        other = FaceTopology("other", ict_topology.template, ict_topology.triangles, ict_topology.landmarks68)
        load_masks(path, other, ALL_BENCHMARK_AUS)
    with pytest.raises(MaskError, match="not found"):
        load_masks(tmp_path / "missing.npz", ict_topology, BP4D)

    bad = landmark_masks.copy()
    bad[0, 0] = np.nan
    save_masks(path, bad, ALL_BENCHMARK_AUS, "ict")
    with pytest.raises(MaskError, match="NaN"):
        load_masks(path, ict_topology, ALL_BENCHMARK_AUS)
    save_masks(path, landmark_masks * 2, ALL_BENCHMARK_AUS, "ict")
    with pytest.raises(MaskError, match=r"\[0, 1\]"):
        load_masks(path, ict_topology, ALL_BENCHMARK_AUS)


def test_bad_requests_give_clear_errors(ict_model, ict_topology):
    with pytest.raises(UnknownAUError, match="unknown AU"):
        masks_from_landmarks(ict_topology, [1, 99])
    with pytest.raises(UnknownAUError):
        build_masks(ict_topology, ["AU1", "AU3"], "landmarks")
    with pytest.raises(MaskError, match="AU13 has no ICT-FaceKit expression shapes"):
        masks_from_ict(ict_model, [1, 13])
    with pytest.raises(MaskError, match="needs the ICT-FaceKit model"):
        build_masks(ict_topology, BP4D, "ict")
    small = _smaller(ict_topology)
    with pytest.raises(MaskError, match=f"6706 vertices but topology 'ict' has {small.num_vertices}"):
        build_masks(small, BP4D, "ict", ict_model=ict_model)
    with pytest.raises(MaskError, match="unknown mask method"):
        build_masks(ict_topology, BP4D, "magic")  # type: ignore[arg-type]


def _perturbed_submesh(topology: FaceTopology) -> tuple[FaceTopology, np.ndarray]:
    """Half the vertices (landmarks kept), smoothly bent, then rotated, scaled and shifted."""
    rng = np.random.default_rng(0)
    half = rng.choice(topology.num_vertices, topology.num_vertices // 2, replace=False)
    keep = np.union1d(half, topology.landmarks68)
    sub = topology.submesh(keep, name="perturbed")
    v = sub.template.astype(np.float64)
    v = v + np.stack([0.8 * np.sin(v[:, 1] / 4), 0.5 * np.cos(v[:, 0] / 5), 0.4 * np.sin(v[:, 0] / 3)], axis=1)
    angle = 0.4
    rotation = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    v = 1.7 * v @ rotation.T + np.array([5.0, -3.0, 2.0])
    return FaceTopology("perturbed", v, sub.triangles, sub.landmarks68), keep


def test_transfer_recovers_known_correspondence(ict_topology, ict_masks):
    dst, truth = _perturbed_submesh(ict_topology)
    warped = register_template(ict_topology, dst)
    error = np.linalg.norm(warped[truth] - dst.template, axis=1) / interocular_distance(dst)
    assert np.median(error) < 0.01 and error.max() < 0.1

    transferred = transfer_masks(ict_topology, ict_masks, dst)
    assert transferred.shape == (len(ALL_BENCHMARK_AUS), dst.num_vertices)
    difference = np.abs(transferred - ict_masks[:, truth])
    assert difference.mean() < 0.005 and np.quantile(difference, 0.99) <= 0.25 + 1e-6

    with pytest.raises(MaskError, match="6706"):
        transfer_masks(ict_topology, ict_masks[:, :100], dst)


def test_transfer_fades_outside_the_source(ict_topology, landmark_masks):
    """Vertices far from the source surface (like FLAME's scalp beyond ICT's face) get 0."""
    template = ict_topology.template.copy()
    top = np.argsort(-template[:, 1])[:200]  # the top of the forehead (no landmark there)
    assert not np.isin(ict_topology.landmarks68, top).any()
    template[top, 1] += 10.0  # pulled 10 cm up, far off the source face
    dst = FaceTopology("pulled", template, ict_topology.triangles, ict_topology.landmarks68)
    full = np.ones((1, ict_topology.num_vertices), dtype=np.float32)
    transferred = transfer_masks(ict_topology, full, dst)
    rest = np.setdiff1d(np.arange(ict_topology.num_vertices), top)
    assert (transferred[0, top] == 0).all() and transferred[0, rest].mean() > 0.99


def test_build_transfer_method(ict_model, ict_topology):
    dst, truth = _perturbed_submesh(ict_topology)
    masks = build_masks(dst, [1, 2, 17], "transfer", ict_model=ict_model)
    reference = masks_from_ict(ict_model, [1, 2, 17])[:, truth]
    assert np.abs(masks - reference).mean() < 0.01


def test_draw_masks_writes_png(ict_topology, landmark_masks, tmp_path):
    from au_face.viz.mask_figure import draw_masks

    path = draw_masks(ict_topology, landmark_masks[:3], [1, 2, 4], tmp_path / "fig.png", title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="3 AUs"):
        draw_masks(ict_topology, landmark_masks[:2], [1, 2, 4], tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def _cli_args(**overrides) -> argparse.Namespace:
    from au_face.commands import masks as command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    argv = [item for key, value in overrides.items() for item in (f"--{key.replace('_', '-')}", str(value))]
    return parser.parse_args(argv)


def test_cli_writes_figure_and_npz(ict_npz, ict_topology, tmp_path, capsys, monkeypatch):
    from au_face.commands import masks as command

    monkeypatch.delenv("AU_FACE_ICT", raising=False)
    out, npz = tmp_path / "masks.png", tmp_path / "masks.npz"
    assert command.run(_cli_args(topology="ict", aus="bp4d", out=out, ict=ict_npz, npz=npz)) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
    saved = load_masks(npz, ict_topology, BP4D)
    assert saved.shape == (12, 6706)
    printed = capsys.readouterr().out
    assert "AU12 Lip Corner Puller" in printed and "wrote" in printed


def test_cli_errors(ict_npz, tmp_path, monkeypatch, capsys):
    from au_face.commands import masks as command
    from au_face.utils.assets import MissingAssetError

    monkeypatch.delenv("AU_FACE_ICT", raising=False)
    with pytest.raises(MissingAssetError, match="AU_FACE_ICT"):
        command.run(_cli_args(topology="ict", out=tmp_path / "a.png"))
    with pytest.raises(MaskError, match="AU13"):
        command.run(_cli_args(topology="ict", aus="AU13", method="ict", ict=ict_npz, out=tmp_path / "b.png"))
    with pytest.raises(UnknownAUError):
        command.run(_cli_args(topology="ict", aus="AU3", ict=ict_npz, out=tmp_path / "c.png"))
    # auto falls back to landmark regions when an AU has no ICT shapes
    monkeypatch.setenv("AU_FACE_ICT", str(ict_npz))
    assert command.run(_cli_args(topology="ict", aus="13,43", out=tmp_path / "d.png")) == 0
    assert "landmarks masks" in capsys.readouterr().out
