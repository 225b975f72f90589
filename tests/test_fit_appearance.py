"""``benchmarks/fit_appearance.py``: a fresh head, and ``--add``, which fits more AUs into a fitted head."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import fit_appearance as fit
from au_face.data.datamodules.photos import Photo
from au_face.faces.appearance import BROW, DESCRIPTOR_SIZE, MOUTH, REGIONS, au_columns, region_part
from au_face.io.checkpoints import export_checkpoint, load_checkpoint
from au_face.model.refiner import AUFaceRefiner, load_refiner
from au_face.nn.net import NetConfig
from checkpoint_fixtures import save_refiner
from dataset_fixtures import face_geometry

AUS = [1, 2, 4, 6, 12]
EXPRESSIONS = ("neutral", "happiness", "surprise", "anger", "sadness")
HEAD = "model.appearance."


def _model() -> AUFaceRefiner:
    torch.manual_seed(0)
    config = NetConfig(modality="mesh", dim=16, token_hidden=16, heads=2, spatial_layers=1, temporal_layers=1)
    return AUFaceRefiner(face_geometry(AUS, expression_dim=6), config, clip_length=8).eval()


def _checkpoint(tmp_path: Path, head: bool) -> Path:
    model = _model()
    if head:  # a fitted head: its own standardisation and limits, AU4 on the brows, AU12 on the mouth
        rng = np.random.default_rng(1)
        appearance = model.add_appearance_head(DESCRIPTOR_SIZE, parts=len(REGIONS))
        with torch.no_grad():
            appearance.mean.copy_(torch.from_numpy(rng.normal(0.1, 0.01, DESCRIPTOR_SIZE)))
            appearance.scale.copy_(torch.from_numpy(rng.uniform(0.5, 1.5, DESCRIPTOR_SIZE)))
            appearance.weight[AUS.index(4), region_part(BROW)] = torch.from_numpy(rng.normal(size=BROW.descriptor_size))
            appearance.weight[AUS.index(12), region_part(MOUTH)] = 0.5
            appearance.part_bounds.copy_(torch.tensor([[p.start, p.stop] for p in map(region_part, REGIONS)]))
            appearance.part_limits.copy_(torch.tensor([40.0, 50.0]))
    return export_checkpoint(save_refiner(model, tmp_path / "training.ckpt"), tmp_path / "model.ckpt")


@pytest.fixture
def photos_with_brow_signal(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A collection whose photos' descriptors (served in place of the cache's) raise the brow part's first
    entries with the expressions that raise the brows (surprise: AU1 and AU2; sadness: AU1); the
    network's logits are noise."""
    rng = np.random.default_rng(2)
    photos = [Photo(f"P{i % 40}_{i:04d}.jpg", EXPRESSIONS[i % len(EXPRESSIONS)], f"P{i % 40}") for i in range(200)]
    descriptors = rng.normal(0.1, 1.0, (len(photos), DESCRIPTOR_SIZE))
    descriptors[[p.expression in ("surprise", "sadness") for p in photos], :50] += 2.0
    logits = rng.normal(size=(len(photos), len(AUS)))
    monkeypatch.setattr(fit, "photo_inputs", lambda refiner, root, cache, wanted: (descriptors, logits, photos))
    monkeypatch.setattr(fit, "cap_per_expression", lambda listed, limit: listed)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "legend.csv").write_text(
        "user.id,image,emotion\n" + "".join(f"1,{p.image},{p.expression}\n" for p in photos)
    )
    return tmp_path


def _run(ckpt: Path, out: Path, root: Path, *extra: str) -> int:
    common = ["--photos-root", str(root), "--photos-cache", str(root / "cache")]
    return fit.main(["--ckpt", str(ckpt), "--out", str(out), *common, *extra])


def test_add_fits_only_the_named_aus_into_the_head_it_was_given(photos_with_brow_signal: Path, tmp_path: Path) -> None:
    given = _checkpoint(tmp_path, head=True)
    out = tmp_path / "added.ckpt"
    assert _run(given, out, photos_with_brow_signal, "--add", "--aus", "1", "2") == 0
    before, after = load_checkpoint(given)["state_dict"], load_checkpoint(out)["state_dict"]
    for name in ("mean", "scale", "part_bounds", "part_limits"):
        assert torch.equal(after[HEAD + name], before[HEAD + name]), name
    weight, old = after[HEAD + "weight"], before[HEAD + "weight"]
    kept = [AUS.index(au) for au in (4, 6, 12)]
    assert torch.equal(weight[kept], old[kept]), "the AUs not named keep their weights"
    for au in (1, 2):
        row = weight[AUS.index(au)]
        assert row[region_part(MOUTH)].abs().max() == 0, "AU1/AU2 read the brow part only"
        # the raised entries carry the label: they weigh more than the rest of the part
        assert row[:50].mean() > 3 * row[50 : BROW.descriptor_size].abs().mean()
    assert load_refiner(out).appearance.covered.tolist() == [True, True, True, False, True]


def test_a_fresh_head_fits_the_named_aus_alone_on_its_own_standardisation(
    photos_with_brow_signal: Path, tmp_path: Path
) -> None:
    out = tmp_path / "fresh.ckpt"
    assert _run(_checkpoint(tmp_path, head=True), out, photos_with_brow_signal, "--aus", "1") == 0
    state = load_checkpoint(out)["state_dict"]
    assert load_refiner(out).appearance.covered.tolist() == [True, False, False, False, False]
    assert abs(float(state[HEAD + "mean"][0]) - 0.1) > 0.05, "the standardisation is the photos', not the old head's"


def test_the_eyelid_aus_are_fitted_on_the_eye_rows_of_the_brow_part(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Surprised photos raise entries on the brows and on the eyes alike; AU5's row may weigh only the eyes'."""
    torch.manual_seed(0)
    config = NetConfig(modality="mesh", dim=16, token_hidden=16, heads=2, spatial_layers=1, temporal_layers=1)
    model = AUFaceRefiner(face_geometry([5, 12], expression_dim=6), config, clip_length=8).eval()
    ckpt = export_checkpoint(save_refiner(model, tmp_path / "training.ckpt"), tmp_path / "model.ckpt")
    rng = np.random.default_rng(3)
    photos = [Photo(f"P{i % 40}_{i:04d}.jpg", ("neutral", "surprise")[i % 2], f"P{i % 40}") for i in range(200)]
    descriptors = rng.normal(0.1, 1.0, (len(photos), DESCRIPTOR_SIZE))
    lids = au_columns(5)
    surprised = np.array([p.expression == "surprise" for p in photos])
    descriptors[surprised, :50] += 2.0  # the brows' top rows
    descriptors[np.ix_(surprised, lids[:50])] += 2.0
    logits = rng.normal(size=(len(photos), 2))
    monkeypatch.setattr(fit, "photo_inputs", lambda refiner, root, cache, wanted: (descriptors, logits, photos))
    monkeypatch.setattr(fit, "cap_per_expression", lambda listed, limit: listed)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "legend.csv").write_text(
        "user.id,image,emotion\n" + "".join(f"1,{p.image},{p.expression}\n" for p in photos)
    )
    out = tmp_path / "lids.ckpt"
    assert _run(ckpt, out, tmp_path, "--aus", "5") == 0
    row = load_checkpoint(out)["state_dict"][HEAD + "weight"][0].numpy()
    outside = np.ones(DESCRIPTOR_SIZE, dtype=bool)
    outside[lids] = False
    assert np.abs(row[outside]).max() == 0, "nothing off the eye rows, not even the brows' raised entries"
    assert row[lids[:50]].mean() > 3 * np.abs(row[lids[50:]]).mean()


def test_add_needs_a_head_with_part_limits(photos_with_brow_signal: Path, tmp_path: Path, capsys) -> None:
    given = _checkpoint(tmp_path, head=False)
    assert _run(given, tmp_path / "out.ckpt", photos_with_brow_signal, "--add", "--aus", "1") == 2
    assert "has none" in capsys.readouterr().err and not (tmp_path / "out.ckpt").exists()


def test_part_limits_are_the_stored_ones_when_given() -> None:
    rng = np.random.default_rng(3)
    standard = rng.normal(size=(300, DESCRIPTOR_SIZE))
    standard[:2, region_part(BROW)] *= 3.0  # unusual brow parts, under 1 % of the photos
    standard[0, region_part(MOUTH)] = np.nan  # an absent mouth part
    quantile, usual = fit.part_limits(standard)
    assert 1.0 < quantile[BROW] < 3.0 and usual[BROW].sum() == pytest.approx(297, abs=1)
    stored, within = fit.part_limits(standard, [2.0, 0.5])
    assert stored == {BROW: 2.0, MOUTH: 0.5}
    assert within[BROW].sum() == 298 and not within[MOUTH].any()
    assert not usual[MOUTH][0]
