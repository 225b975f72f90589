"""The metric callbacks inside a real Trainer: the values they log, on CPU and (where present) CUDA."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch

from au_face.evaluation.evaluator import Evaluator

AUS = [1, 2, 4]
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"))]


def _clips(seed: int = 0, count: int = 6, frames: int = 12, vertices: int = 5) -> list[dict[str, torch.Tensor]]:
    """Validation outputs: random probabilities and labels (some unknown), a jittery coarse track, its
    ground truth and a smoother 'refined' one; a few invalid frames."""
    g = torch.Generator().manual_seed(seed)
    clips = []
    for _ in range(count):
        gt = torch.cumsum(0.01 * torch.randn(1, frames, vertices, 3, generator=g), dim=1)
        coarse = gt + 0.02 * torch.randn(gt.shape, generator=g)
        valid = torch.ones(1, frames, dtype=torch.bool)
        valid[0, torch.randint(frames, (2,), generator=g)] = False
        labels = torch.randint(-1, 2, (1, frames, len(AUS)), generator=g).float()
        clips.append(
            {"probs": torch.rand(1, frames, len(AUS), generator=g), "labels": labels, "valid": valid,
             "coarse": coarse, "refined": 0.5 * (coarse + gt), "gt": gt}
        )  # fmt: skip
    return clips


class _Outputs(L.LightningModule):
    """Returns the given clips as its validation outputs (on its own device)."""

    aus = AUS

    def __init__(self, clips: list[dict[str, torch.Tensor]]) -> None:
        super().__init__()
        self.clips = clips
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device) for k, v in self.clips[int(batch)].items()}


def _validate(device: str, clips: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    trainer = L.Trainer(
        accelerator=device, devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=Evaluator().callbacks(),
    )  # fmt: skip
    loader = torch.utils.data.DataLoader(torch.arange(len(clips)), batch_size=None)
    (results,) = trainer.validate(_Outputs(clips), loader, verbose=False)
    return {k: float(v) for k, v in results.items()}


def _f1(clips: list[dict[str, torch.Tensor]], k: int) -> float:
    """F1 of AU ``k`` over known labels of valid frames, counted directly."""
    pred = np.concatenate([(c["probs"][c["valid"]][:, k] >= 0.5).numpy() for c in clips])
    label = np.concatenate([c["labels"][c["valid"]][:, k].numpy() for c in clips])
    pred, label = pred[label >= 0], label[label >= 0] == 1
    tp = np.sum(pred & label)
    return 2 * tp / (2 * tp + np.sum(pred & ~label) + np.sum(~pred & label))


def _acceleration(x: torch.Tensor, valid: torch.Tensor) -> tuple[float, int]:
    accel = (x[:, 2:] - 2 * x[:, 1:-1] + x[:, :-2]).norm(dim=-1).mean(-1)
    keep = valid[:, 2:] & valid[:, 1:-1] & valid[:, :-2]
    return float(accel[keep].sum()), int(keep.sum())


@pytest.mark.parametrize("device", DEVICES)
def test_callbacks_log_f1_smoothness_and_baselines_on_the_module_device(device: str) -> None:
    clips = _clips()
    results = _validate(device, clips)
    for k, au in enumerate(AUS):
        assert results[f"val/f1/AU{au:02d}"] == pytest.approx(_f1(clips, k), abs=1e-6)
    assert results["val/f1_mean"] == pytest.approx(np.mean([_f1(clips, k) for k in range(len(AUS))]), abs=1e-6)
    for name in ("coarse", "refined"):
        parts = [_acceleration(c[name], c["valid"]) for c in clips]
        assert results[f"val/accel_{name}"] == pytest.approx(
            sum(p[0] for p in parts) / sum(p[1] for p in parts), rel=1e-4
        )
    # the refined track is halfway to the ground truth, so smoother and closer than the coarse one
    assert results["val/accel_ratio"] < 0.75
    assert results["val/vertex_error_refined"] < results["val/vertex_error_coarse"]
    # the Gaussian baseline's σ is one of its candidates, chosen by the lowest vertex error
    assert results["val/gaussian_sigma"] in (0.5, 1.0, 1.5, 2.0, 3.0)
    assert results["val/vertex_error_gaussian"] < results["val/vertex_error_coarse"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_callbacks_give_the_same_values_on_cuda_as_on_cpu() -> None:
    clips = _clips(seed=1)
    on_cpu, on_cuda = _validate("cpu", clips), _validate("cuda", clips)
    assert on_cpu.keys() == on_cuda.keys()
    for key, value in on_cpu.items():
        assert on_cuda[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
