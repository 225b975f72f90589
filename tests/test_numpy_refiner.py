"""The NumPy refiner (what ``au-face reconstruct`` runs, without torch) against the torch model it is exported from."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from au_face.coarse.base import CoarseFrames
from au_face.coarse.stream import FrameStore
from au_face.inference.passes import WindowStream
from au_face.io.checkpoints import default_checkpoint
from au_face.model.numpy_refiner import NumpyRefiner, export_path, load_array_refiner
from au_face.model.refiner import AUFaceRefiner, load_refiner
from au_face.nn.net import NetConfig
from checkpoint_fixtures import noisy_meshes, save_refiner
from dataset_fixtures import face_geometry, open_mouth

SMALL = dict(modality="mesh", dim=16, token_hidden=16, heads=2)
#: The packaged model's AU probabilities agree to float32 rounding through two transformers (up to
#: 1.3e-5 seen with its sharper logits); the small test models' to 1e-5.
PACKAGED_PROB_ATOL = 3e-5
#: Small models that switch each part of the network on or off.
CONFIGS = {
    "everything": NetConfig(
        **SMALL, spatial_layers=1, temporal_layers=2, expression_correction=True, fast_max_sigma=2.0
    ),
    "no transformers, smoother or masks": NetConfig(
        **SMALL, spatial_layers=0, temporal_layers=0, smoothing_sigmas=(), expression_correction=False, au_masks=False
    ),
}


def _small_model(config: NetConfig, calibrated: bool) -> AUFaceRefiner:
    torch.manual_seed(0)
    geometry = face_geometry([1, 4, 6, 12, 25], expression_dim=6)  # AU25: a region fast_max_sigma limits
    model = AUFaceRefiner(geometry, config, clip_length=8, calibrated=calibrated)
    with torch.no_grad():
        for parameter in model.parameters():  # trained-looking weights: the zero-initialised heads too
            parameter.add_(0.3 * torch.randn_like(parameter))
        model.pos_weight.copy_(torch.linspace(1.0, 8.0, len(model.pos_weight)))
    return model.eval()


def _frames(model: AUFaceRefiner, clips: int, length: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Meshes near the model's template (``[B,T,V,3]``) with some frames, and one whole clip, without a face."""
    vertices, valid = noisy_meshes(model, clips, length, np.random.default_rng(seed))
    valid[-1] = False
    vertices[~valid] = 0.0
    return vertices, valid


def _descriptors(model: AUFaceRefiner, shape: tuple[int, ...], seed: int) -> np.ndarray | None:
    """Brow descriptors ``[*shape, D]`` around the head's own mean (None for a model without a head)."""
    if model.appearance is None:
        return None
    head = model.appearance
    noise = np.random.default_rng(seed).normal(size=(*shape, head.dim)).astype(np.float32)
    return (head.mean.numpy() + noise * head.scale.numpy()).astype(np.float32)


def _coarse(vertices: np.ndarray, valid: np.ndarray, appearance: np.ndarray | None) -> CoarseFrames:
    frames = CoarseFrames.from_canonical(torch.from_numpy(vertices), torch.from_numpy(valid), 30.0, "mediapipe")
    return frames if appearance is None else replace(frames, appearance=torch.from_numpy(appearance))


def _torch_windows(
    model: AUFaceRefiner, vertices: np.ndarray, valid: np.ndarray, reference: np.ndarray, appearance=None
):
    clips = [
        _coarse(v, m, None if appearance is None else appearance[i]) for i, (v, m) in enumerate(zip(vertices, valid))
    ]
    outs = model.refine_clips(clips, torch.from_numpy(reference))
    return np.stack([o.vertices.numpy() for o in outs]), np.stack([o.au_probs.numpy() for o in outs])


def _assert_twins(model: AUFaceRefiner, length: int, prob_atol: float = 1e-5) -> None:
    twin = NumpyRefiner.from_refiner(model)
    assert (twin.aus, twin.topology_name, twin.clip_length) == (model.aus, model.topology_name, model.clip_length)
    vertices, valid = _frames(model, 6, length, seed=1)
    coarse = CoarseFrames.from_canonical(torch.from_numpy(vertices[0]), torch.from_numpy(valid[0]), 30.0, "mediapipe")
    reference = model.reference(coarse).numpy()
    np.testing.assert_allclose(twin.fit_reference(vertices[0], valid[0]), reference, atol=1e-5)

    appearance = _descriptors(model, valid.shape, seed=2)
    frames = {"vertices": vertices, "valid": valid}
    if appearance is not None:
        frames["appearance"] = appearance
    refined, probs = twin.refine_windows(frames, reference)
    want_refined, want_probs = _torch_windows(model, vertices, valid, reference, appearance)
    np.testing.assert_allclose(refined, want_refined, atol=1e-4)
    np.testing.assert_allclose(probs, want_probs, atol=prob_atol)
    assert probs.std() > 0.01, "the inputs must move the outputs, or the comparison says little"
    np.testing.assert_array_equal(refined[~valid], vertices[~valid])

    photos, photo_valid = vertices[:3].reshape(-1, *vertices.shape[2:]), valid[:3].reshape(-1)
    photo_frames = {"vertices": photos, "valid": photo_valid}
    photo_appearance = None if appearance is None else appearance[:3].reshape(len(photos), -1)
    if photo_appearance is not None:
        photo_frames["appearance"] = photo_appearance
    references, photo_refined, photo_probs = twin.refine_each(photo_frames)
    want_references, want = model.refine_photos(_coarse(photos, photo_valid, photo_appearance))
    np.testing.assert_allclose(references, want_references.numpy(), atol=1e-5)
    np.testing.assert_allclose(photo_refined, want.vertices.numpy(), atol=1e-4)
    np.testing.assert_allclose(photo_probs, want.au_probs.numpy(), atol=prob_atol)


@pytest.mark.parametrize("calibrated", [False, True])
@pytest.mark.parametrize("name", CONFIGS)
def test_a_small_model_gives_the_torch_numbers(name: str, calibrated: bool) -> None:
    _assert_twins(_small_model(CONFIGS[name], calibrated), length=8)


def test_the_packaged_model_gives_the_torch_numbers() -> None:
    """Neutral-shape S̄ (the iterative fit), calibration, smoother: the default's own settings."""
    path = default_checkpoint()
    if path is None:
        pytest.skip("no packaged model in this installation")
    model = load_refiner(path)
    assert model.reference_mode == "neutral"
    _assert_twins(model, length=model.clip_length, prob_atol=PACKAGED_PROB_ATOL)


def test_lip_press_is_ruled_out_on_parted_lips_by_both_refiners(tmp_path: Path) -> None:
    """AU24 reads 0 on the frames whose mesh shows the lips parted, in torch and NumPy alike; AU24 on
    closed lips and every other AU keep the network's probability, and so does a model without the rule."""
    from au_face.data.lips import LIPS_PARTED

    torch.manual_seed(0)
    geometry = face_geometry([12, 24, 25], expression_dim=6)
    ruled = AUFaceRefiner(geometry, CONFIGS["everything"], clip_length=8, calibrated=True)
    with torch.no_grad():
        for parameter in ruled.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    plain = AUFaceRefiner(geometry, CONFIGS["everything"], clip_length=8, calibrated=True, mesh_exclusions=False)
    plain.load_state_dict(ruled.state_dict())
    ruled, plain = ruled.eval(), plain.eval()
    topology = geometry.topology
    parting = np.array([0.02, 0.1, 0.9 * LIPS_PARTED, 1.1 * LIPS_PARTED, 0.4, 0.6, 0.05, 0.3])
    frames = np.stack([open_mouth(topology.template, topology.landmarks68, p) for p in parting])[None]
    frames, valid = frames.astype(np.float32), np.ones((1, len(parting)), dtype=bool)
    reference = topology.template.astype(np.float32)
    parted, au24 = parting >= LIPS_PARTED, geometry.aus.index(24)

    on, off = (_torch_windows(model, frames, valid, reference)[1][0] for model in (ruled, plain))
    assert (off[parted, au24] > 1e-3).all(), "the network alone gives AU24 some probability there"
    np.testing.assert_array_equal(on[parted, au24], 0.0)
    np.testing.assert_allclose(on[~parted, au24], off[~parted, au24], atol=1e-6)
    np.testing.assert_allclose(np.delete(on, au24, -1), np.delete(off, au24, -1), atol=1e-6)
    for model, want in ((ruled, on), (plain, off)):
        _, probs = NumpyRefiner.from_refiner(model).refine_windows({"vertices": frames, "valid": valid}, reference)
        np.testing.assert_allclose(probs[0], want, atol=1e-5)
    assert load_refiner(save_refiner(plain, tmp_path / "plain.ckpt")).mesh_exclusions is False
    assert plain.lip_press_exclusion is None and ruled.lip_press_exclusion is not None
    assert AUFaceRefiner(face_geometry([12, 25]), CONFIGS["everything"]).lip_press_exclusion is None  # no AU24


def test_streamed_windows_match_the_in_memory_torch_refinement(tmp_path: Path) -> None:
    model = _small_model(CONFIGS["everything"], calibrated=True)
    vertices, valid = _frames(model, 1, 300, seed=3)
    vertices, valid = vertices[0], valid[0]
    valid[:] = True
    valid[40:45] = False
    vertices[150:] += 0.3  # S̄ changes after the first fit
    vertices[~valid] = 0.0
    store = FrameStore(tmp_path)
    store.append("vertices", vertices)
    store.append("valid", valid)
    stream = WindowStream(NumpyRefiner.from_refiner(model), store)
    for rows in range(64, 300, 64):
        stream.advance(rows)
    stream.advance(300, final=True)
    want = model.refine(
        CoarseFrames.from_canonical(torch.from_numpy(vertices), torch.from_numpy(valid), 30.0, "mediapipe")
    )
    np.testing.assert_allclose(store.read("au_probs", 0, 300)[valid], want.au_probs.numpy()[valid], atol=1e-5)
    np.testing.assert_allclose(store.read("refined", 0, 300), want.vertices.numpy(), atol=1e-4)


def test_a_checkpoint_is_exported_once_then_read_without_torch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import au_face.model.refiner

    monkeypatch.setenv("AU_FACE_CACHE", str(tmp_path / "cache"))
    model = _small_model(CONFIGS["everything"], calibrated=True)
    ckpt = save_refiner(model, tmp_path / "model.ckpt")
    first = load_array_refiner(ckpt)
    assert isinstance(first, NumpyRefiner) and export_path(ckpt).is_file()

    def no_torch_load(path):
        raise AssertionError("the checkpoint was loaded with torch again")

    monkeypatch.setattr(au_face.model.refiner, "load_refiner", no_torch_load)
    again = load_array_refiner(ckpt)
    vertices, valid = _frames(model, 2, 8, seed=4)
    reference = vertices[0, 0]
    for got, want in zip(
        again.refine_windows({"vertices": vertices, "valid": valid}, reference),
        first.refine_windows({"vertices": vertices, "valid": valid}, reference),
    ):
        np.testing.assert_array_equal(got, want)

    export_path(ckpt).write_bytes(b"not an npz")  # a damaged cache file is made again
    monkeypatch.undo()
    monkeypatch.setenv("AU_FACE_CACHE", str(tmp_path / "cache"))
    assert isinstance(load_array_refiner(ckpt), NumpyRefiner)
    with np.load(export_path(ckpt)) as exported:
        assert "settings" in exported.files


def test_a_changed_checkpoint_gets_its_own_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AU_FACE_CACHE", str(tmp_path / "cache"))
    one = save_refiner(_small_model(CONFIGS["everything"], calibrated=False), tmp_path / "one.ckpt")
    two = save_refiner(_small_model(CONFIGS["everything"], calibrated=True), tmp_path / "two.ckpt")
    assert export_path(one) != export_path(two)
    a, b = load_array_refiner(one), load_array_refiner(two)
    vertices, valid = _frames(_small_model(CONFIGS["everything"], False), 2, 8, seed=5)
    probs_a = a.refine_windows({"vertices": vertices, "valid": valid}, vertices[0, 0])[1]
    probs_b = b.refine_windows({"vertices": vertices, "valid": valid}, vertices[0, 0])[1]
    assert np.abs(probs_a - probs_b)[valid].max() > 1e-3, "calibration must change the probabilities"


def test_a_model_with_a_video_branch_stays_in_torch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AU_FACE_CACHE", str(tmp_path / "cache"))
    config = NetConfig(modality="both", dim=16, token_hidden=16, heads=2, spatial_layers=1, temporal_layers=1)
    model = AUFaceRefiner(face_geometry([6, 12]), config, clip_length=8).eval()
    loaded = load_array_refiner(save_refiner(model, tmp_path / "video.ckpt"))
    assert isinstance(loaded, AUFaceRefiner) and not list((tmp_path / "cache").rglob("refiners/*"))


def test_photos_are_refined_without_importing_torch(video_dir: Path, tmp_path: Path) -> None:
    """In a fresh process with the packaged model exported, the whole inference path never imports torch."""
    if default_checkpoint() is None:
        pytest.skip("no packaged model in this installation")
    env = {**os.environ, "AU_FACE_CACHE": str(tmp_path / "cache"), "PYTHONPATH": os.pathsep.join(sys.path)}
    script = (
        "import sys, au_face\n"
        "result = au_face.reconstruct(sys.argv[1])\n"
        "print(result.refined, 'torch' in sys.modules)\n"
    )
    photo = str(video_dir / "single_face.jpg")
    runs = [subprocess.run([sys.executable, "-c", script, photo], env=env, capture_output=True, text=True, timeout=300)]
    runs.append(
        subprocess.run([sys.executable, "-c", script, photo], env=env, capture_output=True, text=True, timeout=300)
    )
    assert [r.returncode for r in runs] == [0, 0], runs[-1].stderr
    assert runs[0].stdout.split()[-2:] == ["True", "True"], "the first run exports the model with torch"
    assert runs[1].stdout.split()[-2:] == ["True", "False"], "the second run must not import torch"
