"""Unit tests of the pure-torch model parts and the losses."""

from __future__ import annotations

import pytest
import torch

from au_face.evaluation.metrics import AUF1, MeanAcceleration
from au_face.nn.net import AUFaceNet, NetConfig
from au_face.nn.temporal import TemporalTransformer
from au_face.nn.tokenizer import AUTokenizer
from au_face.training.losses import masked_bce, smoothness_loss

K, V, E = 4, 50, 6


def make_net(modality: str = "both") -> AUFaceNet:
    torch.manual_seed(0)
    config = NetConfig(
        modality=modality,
        dim=16,
        token_hidden=32,
        spatial_layers=1,
        temporal_layers=1,
        heads=2,
        dropout=0.0,
        image_size=16,
    )
    net = AUFaceNet(K, V, E, config)
    net.set_geometry(torch.rand(K, V), torch.randn(E, V, 3))
    return net.eval()


def test_tokens_unchanged_when_a_constant_shape_is_added_to_every_frame() -> None:
    torch.manual_seed(0)
    tok = AUTokenizer(K, V, dim=8, hidden=16)
    tok.set_masks(torch.rand(K, V))
    vertices = torch.randn(2, 5, V, 3)
    valid = torch.ones(2, 5, dtype=torch.bool)
    offset = torch.randn(1, 1, V, 3) * 10
    a = tok(vertices, valid)
    b = tok(vertices + offset, valid)
    assert torch.allclose(a, b, atol=1e-4)
    # and they do change when a single frame moves
    moved = vertices.clone()
    moved[:, 2] += 1.0
    assert not torch.allclose(a, tok(moved, valid), atol=1e-3)


def test_tokenizer_equals_mlp_on_masked_displacement() -> None:
    torch.manual_seed(1)
    tok = AUTokenizer(K, V, dim=8, hidden=16)
    masks = torch.rand(K, V)
    tok.set_masks(masks)
    vertices = torch.randn(1, 3, V, 3)
    valid = torch.ones(1, 3, dtype=torch.bool)
    mean = vertices.mean(dim=1)
    disp = vertices - mean[:, None]
    masked = masks[None, None, :, :, None] * disp[:, :, None]  # [B,T,K,V,3]
    direct = tok.rest(masked.flatten(-2) @ tok.first.reshape(16, -1).t() + tok.first_bias)
    assert torch.allclose(tok(vertices, valid), direct, atol=1e-5)


def test_invalid_frames_do_not_influence_valid_outputs() -> None:
    net = make_net("mesh")
    vertices = torch.randn(1, 6, V, 3)
    valid = torch.tensor([[True, True, False, True, True, True]])
    out = net(vertices, valid)
    garbage = vertices.clone()
    garbage[:, 2] = 1e3
    out2 = net(garbage, valid)
    assert torch.allclose(out.au_logits[valid], out2.au_logits[valid], atol=1e-4)


def test_temporal_transformer_handles_sequences_without_any_valid_frame() -> None:
    tt = TemporalTransformer(8, layers=1, heads=2, dropout=0.0)
    out = tt(torch.randn(2, 4, 8), torch.tensor([[False] * 4, [True, False, True, True]]))
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("modality", ["mesh", "video", "both"])
def test_modalities_give_logits_and_refinement(modality: str) -> None:
    net = make_net(modality)
    out = net(torch.randn(2, 5, V, 3), torch.ones(2, 5, dtype=torch.bool), crops=torch.rand(2, 5, 3, 24, 24))
    assert out.au_logits.shape == (2, 5, K)
    assert out.delta_expression.shape == (2, 5, E)
    # refinement starts at zero (identity) before training
    assert torch.count_nonzero(out.delta_expression) == 0


def test_video_model_without_crops_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="crops"):
        make_net("video")(torch.randn(1, 3, V, 3), torch.ones(1, 3, dtype=torch.bool))


def test_unknown_labels_do_not_change_the_loss() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 5, K)
    labels = torch.randint(0, 2, (2, 5, K), dtype=torch.int8)
    valid = torch.ones(2, 5, dtype=torch.bool)
    unknown = labels.clone()
    unknown[0, 1, 2] = -1
    base = masked_bce(logits, unknown, valid)
    # changing the logit where the label is unknown leaves the loss as it is
    flipped = logits.clone()
    flipped[0, 1, 2] = 100.0
    assert torch.allclose(base, masked_bce(flipped, unknown, valid))
    # while changing it where the label is known does change the loss
    flipped[0, 1, 2] = logits[0, 1, 2]
    flipped[0, 1, 3] = 100.0 * (1 - 2 * labels[0, 1, 3].float())
    assert not torch.allclose(masked_bce(flipped, labels, valid), masked_bce(logits, labels, valid))


def test_smoothness_loss_is_zero_for_linear_motion_and_skips_invalid_frames() -> None:
    t = torch.arange(6, dtype=torch.float32)[None, :, None, None]
    linear = t * torch.ones(1, 6, V, 3)
    valid = torch.ones(1, 6, dtype=torch.bool)
    assert smoothness_loss(linear, valid) == 0
    jumpy = linear.clone()
    jumpy[:, 3] += 5
    assert smoothness_loss(jumpy, valid) > 0
    valid[:, 3] = False
    assert smoothness_loss(jumpy, valid) == 0


def test_f1_metric_masks_unknown_labels() -> None:
    metric = AUF1(2, threshold=0.5)
    probs = torch.tensor([[0.9, 0.1], [0.8, 0.9], [0.2, 0.7]])
    labels = torch.tensor([[1, 0], [-1, 1], [0, -1]], dtype=torch.int8)
    metric.update(probs, labels, torch.ones(3, dtype=torch.bool))
    f1 = metric.compute()
    assert f1[0] == pytest.approx(1.0)
    assert f1[1] == pytest.approx(1.0)


def test_f1_metric_skips_invalid_frames_and_gives_nan_when_undefined() -> None:
    metric = AUF1(3, threshold=0.5)
    probs = torch.tensor([[[0.9, 0.1, 0.2], [0.9, 0.9, 0.1]], [[0.1, 0.6, 0.3], [0.8, 0.2, 0.4]]])
    labels = torch.tensor([[[1, 0, 0], [0, 0, 0]], [[1, 1, 0], [1, 0, 0]]], dtype=torch.int8)
    valid = torch.tensor([[True, False], [True, True]])  # frame (0, 1) would add false positives
    metric.update(probs, labels, valid)
    f1 = metric.compute()
    assert f1[0] == pytest.approx(2 * 2 / (2 * 2 + 0 + 1))  # tp 2, fn 1
    assert f1[1] == pytest.approx(1.0)
    assert torch.isnan(f1[2])  # no positive label, no positive prediction


def test_mean_acceleration_counts_only_valid_triplets() -> None:
    metric = MeanAcceleration()
    v = torch.zeros(1, 4, 2, 3)
    v[0, 1, :, 0] = 1.0  # frame 1 jumps by 1 in x
    metric.update(v, torch.ones(1, 4, dtype=torch.bool))
    assert metric.compute() == pytest.approx((2.0 + 1.0) / 2)
