"""Trainer callbacks logging AU F1 and mesh smoothness on validation and test.

They read the dict that ``validation_step``/``test_step`` return (``probs``, ``labels``,
``valid``, ``refined``, ``coarse``, optional ``gt``), keep torchmetrics states on the
module's device (so they run on GPU unchanged) and log to every attached logger.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torchmetrics import Metric

from au_face.aus import au_label
from au_face.evaluation.baselines import one_euro_filter
from au_face.evaluation.metrics import AUF1, MeanAcceleration, VertexError, nan_mean
from au_face.nn.smoother import filter_sequences


def _module_aus(pl_module: L.LightningModule) -> Sequence[int]:
    """The AU list (``aus``) of the module under evaluation, e.g. an ``AUFaceTask``."""
    aus = getattr(pl_module, "aus", None)
    if not isinstance(aus, Sequence):
        raise TypeError(f"{type(pl_module).__name__} has no AU list (aus); the AU callbacks evaluate an AUFaceTask")
    return aus


class _EvalMetricCallback(Callback):
    """Creates its metrics once, resets them at the start of each val/test epoch, updates them per
    batch and logs them at the end."""

    metrics: dict[str, Metric] | None = None

    def make_metrics(self, pl_module: L.LightningModule) -> dict[str, Metric]:
        raise NotImplementedError

    def update(self, metrics: dict[str, Metric], outputs: dict[str, torch.Tensor]) -> None:
        raise NotImplementedError

    def results(self, metrics: dict[str, Metric], pl_module: L.LightningModule) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _start(self, pl_module: L.LightningModule) -> None:
        if self.metrics is None:
            self.metrics = self.make_metrics(pl_module)
        for name, metric in self.metrics.items():
            self.metrics[name] = metric.to(pl_module.device)
            metric.reset()

    def _started(self) -> dict[str, Metric]:
        if self.metrics is None:
            raise RuntimeError(f"{type(self).__name__}: a val/test batch ended before its epoch started")
        return self.metrics

    def _batch(self, outputs: Any) -> None:
        if isinstance(outputs, dict):
            self.update(self._started(), outputs)

    def _end(self, pl_module: L.LightningModule, prefix: str) -> None:
        values = {f"{prefix}/{k}": v for k, v in self.results(self._started(), pl_module).items() if not torch.isnan(v)}
        pl_module.log_dict(values, sync_dist=False)

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start(pl_module)

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start(pl_module)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._batch(outputs)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._batch(outputs)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._end(pl_module, "val")

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._end(pl_module, "test")


class AUF1Callback(_EvalMetricCallback):
    """Logs ``f1/AUxx`` per AU and ``f1_mean`` (threshold on probabilities)."""

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = threshold

    @staticmethod
    def key(stage: str, au: int) -> str:
        """The name under which the F1 of ``au`` is logged in ``stage`` (``val``/``test``)."""
        return f"{stage}/{AUF1Callback.name(au)}"

    @staticmethod
    def name(au: int) -> str:
        return f"f1/{au_label(au)}"

    def make_metrics(self, pl_module: L.LightningModule) -> dict[str, Metric]:
        return {"f1": AUF1(len(_module_aus(pl_module)), self.threshold)}

    def update(self, metrics: dict[str, Metric], outputs: dict[str, torch.Tensor]) -> None:
        metrics["f1"].update(outputs["probs"], outputs["labels"], outputs["valid"])

    def results(self, metrics: dict[str, Metric], pl_module: L.LightningModule) -> dict[str, torch.Tensor]:
        f1 = metrics["f1"].compute()
        out = {self.name(au): f1[k] for k, au in enumerate(_module_aus(pl_module))}
        out["f1_mean"] = nan_mean(f1)
        return out


class MeshSmoothnessCallback(_EvalMetricCallback):
    """Logs mean vertex acceleration of coarse and refined meshes and their ratio, and the
    vertex error to ground truth where the dataset has it."""

    def make_metrics(self, pl_module: L.LightningModule) -> dict[str, Metric]:
        return {
            "accel_coarse": MeanAcceleration(),
            "accel_refined": MeanAcceleration(),
            "vertex_error_coarse": VertexError(),
            "vertex_error_refined": VertexError(),
        }

    def update(self, metrics: dict[str, Metric], outputs: dict[str, torch.Tensor]) -> None:
        valid = outputs["valid"]
        metrics["accel_coarse"].update(outputs["coarse"], valid)
        metrics["accel_refined"].update(outputs["refined"], valid)
        if outputs.get("gt") is not None:
            metrics["vertex_error_coarse"].update(outputs["coarse"], outputs["gt"], valid)
            metrics["vertex_error_refined"].update(outputs["refined"], outputs["gt"], valid)

    def results(self, metrics: dict[str, Metric], pl_module: L.LightningModule) -> dict[str, torch.Tensor]:
        out = {}
        for name, metric in metrics.items():
            # a metric never updated (no ground truth) computes NaN and is not logged
            out[name] = metric.compute() if metric.update_called else torch.tensor(float("nan"))
        out["accel_ratio"] = out["accel_refined"] / out["accel_coarse"]
        return out


class FilterBaselineCallback(_EvalMetricCallback):
    """Logs what plain temporal filters of the same coarse clips give, beside the refinement:
    ``vertex_error_gaussian``/``accel_gaussian`` for a Gaussian whose σ (frames) is chosen on the
    validation split (lowest vertex error; logged as ``gaussian_sigma``), and the same for a causal
    One-Euro filter whose settings are chosen likewise. Vertex errors need ground truth."""

    def __init__(
        self,
        sigmas: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0, 3.0),
        one_euro: tuple[tuple[float, float], ...] = ((1.0, 0.5), (2.0, 2.0), (4.0, 8.0)),
        fps: float = 25.0,
    ) -> None:
        self.sigmas, self.one_euro, self.fps = tuple(sigmas), tuple(one_euro), fps
        self.sigma, self.euro = 1.0, one_euro[0]

    def make_metrics(self, pl_module: L.LightningModule) -> dict[str, Metric]:
        names = [f"gaussian_{s:g}" for s in self.sigmas] + [f"one_euro_{c:g}_{b:g}" for c, b in self.one_euro]
        return {
            f"{kind}/{name}": (VertexError() if kind == "error" else MeanAcceleration())
            for name in names
            for kind in ("error", "accel")
        }

    def update(self, metrics: dict[str, Metric], outputs: dict[str, torch.Tensor]) -> None:
        coarse, valid, gt = outputs["coarse"], outputs["valid"], outputs.get("gt")
        filtered = {
            f"gaussian_{s:g}": x for s, x in zip(self.sigmas, filter_sequences(coarse, valid, self.sigmas).unbind(2))
        }
        for c, b in self.one_euro:
            filtered[f"one_euro_{c:g}_{b:g}"] = torch.stack(
                [one_euro_filter(x, v, self.fps, c, b) for x, v in zip(coarse, valid)]
            )
        for name, x in filtered.items():
            metrics[f"accel/{name}"].update(x, valid)
            if gt is not None:
                metrics[f"error/{name}"].update(x, gt, valid)

    def results(self, metrics: dict[str, Metric], pl_module: L.LightningModule) -> dict[str, torch.Tensor]:
        nan = torch.tensor(float("nan"))
        value = {k: (m.compute() if m.update_called else nan) for k, m in metrics.items()}
        if pl_module.trainer.validating:  # choose on validation, apply on test
            errors = {s: value[f"error/gaussian_{s:g}"] for s in self.sigmas}
            if not any(torch.isnan(e) for e in errors.values()):
                self.sigma = min(errors, key=lambda s: float(errors[s]))
                self.euro = min(self.one_euro, key=lambda p: float(value[f"error/one_euro_{p[0]:g}_{p[1]:g}"]))
        gaussian, euro = f"gaussian_{self.sigma:g}", f"one_euro_{self.euro[0]:g}_{self.euro[1]:g}"
        return {
            "vertex_error_gaussian": value[f"error/{gaussian}"], "accel_gaussian": value[f"accel/{gaussian}"],
            "vertex_error_one_euro": value[f"error/{euro}"], "accel_one_euro": value[f"accel/{euro}"],
            "gaussian_sigma": torch.tensor(self.sigma),
        }  # fmt: skip
