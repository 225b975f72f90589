"""The neutral-shape estimator, the analytic readout, the temporal filters and the refinement metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from au_face.evaluation.baselines import au_pattern, gaussian_filter, one_euro_filter, readout_probabilities
from au_face.evaluation.sequences import (
    aligned_error,
    expression_error,
    fastest_frames,
    mean_acceleration,
    peak_amplitudes,
)
from au_face.geometry.neutral import NeutralEstimator, fit_shape_indices
from au_face.nn.smoother import AdaptiveSmoother, filter_sequences
from dataset_fixtures import face_geometry

V = 60


def _model(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    template = torch.randn(V, 3, generator=g)
    identity = 0.05 * torch.randn(4, V, 3, generator=g)
    expression = torch.zeros(6, V, 3)
    for e in range(6):  # local shapes, like blendshapes: each moves its own vertices
        expression[e, e * 10 : e * 10 + 10] = torch.randn(10, 3, generator=g)
    return template, identity, expression


def _frames(weights: torch.Tensor, alpha: torch.Tensor, noise: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    template, identity, expression = _model()
    neutral = template + torch.einsum("i,ivc->vc", alpha, identity)
    frames = neutral + torch.einsum("te,evc->tvc", weights, expression)
    return frames + noise * torch.randn(frames.shape, generator=torch.Generator().manual_seed(1)), neutral


def test_a_held_expression_is_not_taken_for_the_identity() -> None:
    estimator = NeutralEstimator(*_model(), sparsity=0.0)
    held = torch.zeros(20, 6)
    held[:, 2] = 0.8  # one expression held for the whole clip
    frames, neutral = _frames(held, torch.tensor([1.0, -0.5, 0.3, 0.0]))
    valid = torch.ones(20, dtype=torch.bool)
    fit = estimator.fit(frames, valid)
    assert (fit.reference - neutral).norm(dim=-1).mean() < 0.02
    assert (frames.mean(0) - neutral).norm(dim=-1).mean() > 0.1, "the clip mean keeps the held expression"
    assert estimator.expression_weights(frames, valid, fit.identity)[:, 2].mean() == pytest.approx(0.8, abs=0.02)


def test_a_videos_median_reference_does_not_depend_on_how_long_a_face_is_held_still() -> None:
    """The joint fit's prior counts once, so copies of one frame change its S̄; each frame's own fit does not."""
    estimator = NeutralEstimator(*_model())
    weights = torch.zeros(1, 6)
    weights[0, 3] = 0.5
    frame, _ = _frames(weights, torch.tensor([1.0, -0.5, 0.3, 0.0]))
    frame = frame + 0.05 * torch.randn(
        frame.shape, generator=torch.Generator().manual_seed(3)
    )  # a real face: off the modes
    alone = estimator.fit_each(frame)[0]
    for copies in (1, 20, 300):
        still = frame.expand(copies, -1, -1)
        torch.testing.assert_close(estimator.median_reference(still), alone, atol=1e-5, rtol=0)
    joint = [estimator.fit(frame.expand(copies, -1, -1)).reference for copies in (1, 300)]
    assert (joint[0] - joint[1]).norm(dim=-1).max() > 1e-3, "the joint fit moves with the number of copies"
    held = torch.zeros(20, 6)
    held[:, 2] = 0.8
    frames, neutral = _frames(held, torch.tensor([1.0, -0.5, 0.3, 0.0]))
    assert (estimator.median_reference(frames) - neutral).norm(dim=-1).mean() < 0.05, "a held expression stays out"
    torch.testing.assert_close(
        estimator.median_reference(frames, torch.zeros(20, dtype=torch.bool)), estimator.template
    )


def test_a_single_frame_keeps_exactly_its_fitted_expression() -> None:
    estimator = NeutralEstimator(*_model())
    weights = torch.zeros(1, 6)
    weights[0, [1, 4]] = torch.tensor([0.6, 0.9])
    frames, _ = _frames(weights, torch.zeros(4), noise=0.01)
    fit = estimator.fit(frames)
    weights = estimator.expression_weights(frames, None, fit.identity)
    moved = frames[0] - fit.reference
    _, _, expression = _model()
    assert torch.allclose(moved, torch.einsum("e,evc->vc", weights[0], expression), atol=1e-4)
    assert weights[0, 1] > 0.4 and weights[0, 4] > 0.7 and weights[0, [0, 2, 3, 5]].max() < 0.1


def test_fit_each_gives_every_frame_the_fit_it_has_alone() -> None:
    estimator = NeutralEstimator(*_model())
    weights = torch.rand(5, 6, generator=torch.Generator().manual_seed(2))
    frames = torch.stack([_frames(weights[i : i + 1], torch.randn(4) * (i + 1), noise=0.01)[0][0] for i in range(5)])
    together = estimator.fit_each(frames)
    assert together.shape == frames.shape
    for i in range(5):
        torch.testing.assert_close(together[i], estimator.fit(frames[i : i + 1]).reference, atol=1e-5, rtol=0)
    assert (together[0] - together[4]).norm(dim=-1).mean() > 0.01, "different people keep different S̄"


def test_invalid_frames_are_ignored_and_weights_are_zero_there() -> None:
    weights = torch.zeros(10, 6)
    weights[:, 0] = 0.5
    frames, neutral = _frames(weights, torch.zeros(4))
    frames[3] = 100.0  # garbage where no face was found
    valid = torch.ones(10, dtype=torch.bool)
    valid[3] = False
    estimator = NeutralEstimator(*_model(), sparsity=0.0)
    fit = estimator.fit(frames, valid)
    assert (fit.reference - neutral).norm(dim=-1).mean() < 0.02
    assert estimator.expression_weights(frames, valid, fit.identity)[3].abs().sum() == 0


def test_an_empty_estimator_takes_its_shapes_from_a_state_dict() -> None:
    source = NeutralEstimator(*_model())
    target = NeutralEstimator.empty(V)
    assert target.is_empty
    target.load_state_dict(source.state_dict())
    frames, _ = _frames(torch.rand(5, 6), torch.zeros(4))
    assert torch.allclose(target(frames), source(frames))


def test_gaze_shapes_are_left_out_of_the_fit() -> None:
    assert list(fit_shape_indices(["browDown_L", "eyeLookIn_L", "eyeBlink_R", "eyeLookUp_R"])) == [0, 2]


def test_readout_maps_weights_to_aus_through_the_facs_table() -> None:
    names = ["mouthSmile_L", "mouthSmile_R", "browDown_L", "browDown_R", "jawOpen"]
    pattern = au_pattern([12, 4, 26], names)
    weights = torch.tensor([[1.0, 1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.1, 0.1, 0.0], [0.0, 0.0, 0.0, 0.0, 0.5]])
    probs = readout_probabilities(weights, pattern)
    assert probs[0].tolist() == pytest.approx([1.0, 0.0, 0.0])
    assert probs[1, 1] == pytest.approx(0.2)  # activation 0.1, below the 0.25 occurrence threshold
    assert probs[2, 2] == pytest.approx(1.0)  # AU26 = 0.5 jawOpen at full activation


def _noisy_track(t: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    base = torch.linspace(0, 1, t)[:, None, None] * torch.ones(t, 4, 3)
    return base, base + 0.05 * torch.randn(t, 4, 3, generator=g)


def test_filters_keep_constants_ignore_invalid_frames_and_reduce_noise() -> None:
    constant = torch.ones(12, 4, 3)
    valid = torch.ones(12, dtype=torch.bool)
    assert torch.allclose(gaussian_filter(constant, valid, 2.0), constant)
    assert torch.allclose(one_euro_filter(constant, valid, 25.0), constant)
    broken = constant.clone()
    broken[5] = 0.0
    valid[5] = False
    smoothed = gaussian_filter(broken, valid, 2.0)
    assert torch.allclose(smoothed[valid], constant[valid]) and torch.equal(smoothed[5], broken[5])
    clean, noisy = _noisy_track()
    full = torch.ones(len(clean), dtype=torch.bool)
    for filtered in (gaussian_filter(noisy, full, 1.5), one_euro_filter(noisy, full, 25.0, min_cutoff=1.0, beta=0.0)):
        assert mean_acceleration(filtered, full) < 0.5 * mean_acceleration(noisy, full)
    assert torch.equal(filter_sequences(noisy[None], full[None], (0.0,))[0, :, 0], noisy)


def test_adaptive_smoother_mixes_to_one_and_keeps_a_held_shape() -> None:
    smoother = AdaptiveSmoother(num_aus=2, num_vertices=4, dim=8)
    masks = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.5, 1.0, 0.0]])
    smoother.set_masks(masks)
    assert torch.allclose(smoother.regions.sum(0), torch.ones(4))
    held = torch.randn(1, 1, 4, 3).expand(2, 10, 4, 3)
    valid = torch.ones(2, 10, dtype=torch.bool)
    out = smoother(held, valid, torch.randn(2, 10, 2, 8), torch.randn(2, 10, 8))
    assert torch.allclose(out, held, atol=1e-5), "whatever the mix, a shape held still is kept at full amplitude"


def test_a_limited_region_never_mixes_the_wide_copies() -> None:
    """``limit`` keeps the copies above ``max_sigma`` out of that region's mix however strongly the heads
    pick them; the other regions still get them."""
    smoother = AdaptiveSmoother(num_aus=2, num_vertices=4, dim=8, sigmas=(0.0, 1.0, 4.0))
    smoother.set_masks(torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]))
    with torch.no_grad():
        for head in (smoother.au_mix, smoother.rest_mix):  # every region all but certain of σ = 4, then σ = 1
            head.weight.zero_()
            head.bias.copy_(torch.tensor([0.0, 20.0, 40.0]))
    smoother.limit([0], max_sigma=2.0)
    track = torch.randn(1, 24, 4, 3)
    valid = torch.ones(1, 24, dtype=torch.bool)
    out = smoother(track, valid, torch.randn(1, 24, 2, 8), torch.randn(1, 24, 8))
    copies = filter_sequences(track, valid, smoother.sigmas)  # [1,T,S,V,3]
    share = smoother.regions  # [R,V]: each vertex's shares of the AU regions and of the rest of the face
    # region 0 takes σ = 1, the widest it may use; region 1 and the rest of the face still take σ = 4
    expected = share[0, :, None] * copies[:, :, 1] + share[1:, :, None].sum(0) * copies[:, :, 2]
    assert torch.allclose(out, expected, atol=1e-5)
    assert share[0, 0] > 0.9 and not torch.allclose(copies[:, :, 1, 0], copies[:, :, 2, 0], atol=1e-2)
    with pytest.raises(ValueError, match="below every"):
        smoother.limit([1], max_sigma=-1.0)


def test_fast_max_sigma_limits_the_fast_aus_regions_only() -> None:
    from au_face.aus import FAST_AUS
    from au_face.nn.net import AUFaceNet, NetConfig

    geometry = face_geometry([1, 12, 25, 26, 45])
    config = NetConfig(modality="mesh", dim=8, token_hidden=8, heads=2, fast_max_sigma=2.0)
    allowed = AUFaceNet.from_geometry(geometry, config).smoother.allowed
    for k, au in enumerate(geometry.aus):
        assert allowed[k].tolist() == ([True, True, True, False] if au in FAST_AUS else [True] * 4), au
    assert allowed[-1].all(), "the rest of the face keeps every copy"
    unlimited = AUFaceNet.from_geometry(geometry, NetConfig(modality="mesh", dim=8, token_hidden=8, heads=2))
    assert unlimited.smoother.allowed.all()


def test_metrics_separate_pose_static_offsets_and_fast_frames() -> None:
    _, _, expression = _model()
    gt = torch.einsum("t,vc->tvc", torch.linspace(0, 1, 8), expression[0]) + _model()[0]
    valid = torch.ones(8, dtype=torch.bool)
    angle = 0.3
    rotation = torch.tensor(
        [[math.cos(angle), -math.sin(angle), 0.0], [math.sin(angle), math.cos(angle), 0.0], [0.0, 0.0, 1.0]]
    )
    posed = 1.3 * gt @ rotation.T + 2.0
    assert aligned_error(posed, gt, valid) < 1e-6
    shifted = gt + 0.5  # a static offset, with S̄ carrying the same offset
    assert expression_error(shifted, gt[0] + 0.5, gt, gt[0], valid) < 1e-6
    jump = gt.clone()
    jump[5:] += 1.0
    assert fastest_frames(jump, valid, share=0.125).nonzero().flatten().tolist() == [5]
    peak = peak_amplitudes(gt, gt[0], torch.tensor([[1.0] * 10 + [0.0] * (V - 10)]), valid)
    assert peak[0] == pytest.approx(float(expression[0, :10].norm(dim=-1).mean()), rel=1e-4)
    assert np.isnan(mean_acceleration(gt[:2], valid[:2]))
