"""AUFaceTask: the paper's model as a LightningModule (losses, optimiser, fine-tuning, inference)."""

from __future__ import annotations

import math
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info

from au_face.aus import resolve_aus
from au_face.callbacks import AUF1Callback, FilterBaselineCallback, MeshSmoothnessCallback
from au_face.coarse.base import CoarseFrames
from au_face.errors import AUFaceError
from au_face.geometry import FaceGeometry
from au_face.losses import acceleration_mse, masked_bce, masked_mean_square, smoothness_loss, vertex_mse
from au_face.neutral import NeutralEstimator
from au_face.nn.net import AUFaceNet, Modality
from au_face.windows import SlidingWindow

FREEZABLE = {
    "tokenizer": ("net.tokenizer.",),
    "spatial": ("net.spatial.",),
    "temporal": ("net.temporal.", "net.fuse."),
    "video": ("net.video_frame.",),
    "mesh": ("net.mesh_frame.",),
}


class CheckpointError(AUFaceError, ValueError):
    """A checkpoint that is missing, not an au_face checkpoint, or incompatible."""


@dataclass
class Refinement:
    """Output of :meth:`AUFaceTask.refine`: refined canonical vertices ``[T,V,3]`` and AU probabilities ``[T,K]``."""

    vertices: torch.Tensor
    au_probs: torch.Tensor
    aus: list[int]


class AUFaceTask(L.LightningModule):
    """AU-aware dynamic refinement: AU occurrence + temporally smooth expression refinement.

    The AU list, topology and sizes are linked from the datamodule by the CLI. Fixed geometry
    (masks, expression basis) comes from the datamodule in :meth:`setup` and is stored in the
    checkpoint, so a checkpoint alone can refine new videos.

    Loss = ``au_weight``·BCE (per-AU positive weights, unknown labels masked)
    + ``smooth_weight``·second differences of refined vertices
    + ``data_weight``·‖refined − coarse‖² + ``delta_weight``·‖Δψ‖²
    and, where the batch has ground truth, ``gt_weight``·‖refined − ground truth‖²
    + ``expression_weight``·‖(refined − S̄) − (ground truth − its neutral)‖² (the expression
    trajectory, free of the static shape offset between reconstructor and ground truth)
    + ``accel_weight``·‖acceleration(refined) − acceleration(ground truth)‖².
    Vertex terms are in units of ``vertex_scale``.

    ``reference`` (linked from the datamodule): S̄ is the person's estimated ``neutral`` shape
    (:class:`~au_face.neutral.NeutralEstimator`, stored in the checkpoint) or the clip ``mean``.

    Fine-tuning: ``init_checkpoint`` loads a trained model at the start of ``fit``; weights whose
    names or shapes depend on the AU list are re-initialised when the AU list differs;
    ``freeze`` names parts to keep fixed (tokenizer, spatial, temporal, video, mesh); AU-specific
    weights always train, and a checkpoint of another architecture is refused.
    """

    def __init__(
        self,
        aus: list[int | str],
        topology: str,
        num_vertices: int,
        expression_dim: int,
        vertex_scale: float = 1.0,
        clip_length: int = 16,
        reference: str = "mean",
        modality: Modality = "both",
        dim: int = 64,
        token_hidden: int = 128,
        spatial_layers: int = 2,
        temporal_layers: int = 2,
        heads: int = 4,
        dropout: float = 0.1,
        image_encoder: str = "small_cnn",
        image_size: int = 64,
        feature_dim: int | None = None,
        smoothing_sigmas: list[float] = (0.0, 1.0, 2.0, 4.0),
        expression_correction: bool = True,
        au_masks: bool = True,
        calibrated: bool = False,
        au_weight: float = 1.0,
        smooth_weight: float = 1.0,
        data_weight: float = 0.1,
        delta_weight: float = 1e-3,
        gt_weight: float = 1.0,
        expression_weight: float = 0.0,
        accel_weight: float = 0.0,
        max_pos_weight: float = 10.0,
        threshold: float = 0.5,
        lr: float = 2e-3,
        weight_decay: float = 0.01,
        warmup_fraction: float = 0.05,
        init_checkpoint: str | None = None,
        freeze: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.aus = resolve_aus(aus)
        unknown = set(freeze or []) - set(FREEZABLE)
        if unknown:
            raise ValueError(f"cannot freeze {sorted(unknown)}; choose from {sorted(FREEZABLE)}")
        self.net = AUFaceNet(
            len(self.aus), num_vertices, expression_dim, modality, dim, token_hidden, spatial_layers,
            temporal_layers, heads, dropout, image_encoder, image_size, feature_dim, vertex_scale, tuple(smoothing_sigmas),
            expression_correction, au_masks,
        )
        self.neutral = NeutralEstimator.empty(num_vertices)
        self.register_buffer("pos_weight", torch.ones(len(self.aus)))

    # -- properties used by inference code --------------------------------------------
    @property
    def topology_name(self) -> str:
        return self.hparams.topology

    @property
    def clip_length(self) -> int:
        return self.hparams.clip_length

    def configure_callbacks(self) -> list[Callback]:
        """AU F1, mesh smoothness and the filter baselines are always logged on validation and test."""
        present = {type(c) for c in (self.trainer.callbacks if self._trainer else [])}
        defaults = [AUF1Callback(self.hparams.threshold), MeshSmoothnessCallback(), FilterBaselineCallback()]
        return [c for c in defaults if type(c) not in present]

    # -- geometry, positive weights, fine-tuning ----------------------------------------
    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        geometry = getattr(datamodule, "geometry", None)
        if geometry is not None:
            self.set_geometry(geometry)
        needs_crops = self.net.uses_video and not self.net.video_from_features
        if needs_crops and datamodule is not None and getattr(datamodule, "use_crops", True) is False:
            raise AUFaceError(
                f"modality={self.net.modality!r} needs face crops, but the data serves none: set "
                "--data.init_args.use_crops=true (or use modality=mesh)"
            )
        if stage == "fit":
            if datamodule is not None and hasattr(datamodule, "label_frequencies"):
                freq = torch.as_tensor(datamodule.label_frequencies(), dtype=torch.float32)
                weight = ((1 - freq) / freq.clamp_min(1e-6)).nan_to_num(1.0).clamp(1.0, self.hparams.max_pos_weight)
                self.pos_weight.copy_(weight)
            if self.hparams.init_checkpoint and self.trainer.ckpt_path is None:
                self.load_trunk(self.hparams.init_checkpoint)
            self._apply_freeze()

    def set_geometry(self, geometry: FaceGeometry) -> None:
        """Install masks and basis; they must match this model's topology, AUs and sizes."""
        hp = self.hparams
        if geometry.topology.name != hp.topology or geometry.topology.num_vertices != hp.num_vertices:
            raise CheckpointError(
                f"model is for topology {hp.topology!r} ({hp.num_vertices} vertices), data gives "
                f"{geometry.topology.name!r} ({geometry.topology.num_vertices} vertices)"
            )
        if list(geometry.aus) != self.aus or geometry.expression_dim != hp.expression_dim:
            raise CheckpointError(f"model AUs/expression size {self.aus}/{hp.expression_dim} differ from the data's {list(geometry.aus)}/{geometry.expression_dim}")
        self.net.set_geometry(torch.as_tensor(geometry.masks, dtype=torch.float32), torch.as_tensor(geometry.basis, dtype=torch.float32))
        if geometry.neutral is not None:
            self.neutral.install(geometry.neutral)
        elif self.hparams.reference == "neutral":
            raise CheckpointError("reference='neutral' needs a geometry with a neutral estimator")

    def reference(self, coarse: CoarseFrames) -> torch.Tensor:
        """S̄ ``[V,3]`` of a whole video, as this model was trained to use it."""
        if self.hparams.reference == "neutral":
            if self.neutral.is_empty:
                raise CheckpointError("this model uses the neutral reference but carries no neutral estimator")
            return self.neutral(coarse.vertices, coarse.valid).cpu()
        return coarse.mean_shape()

    def load_trunk(self, path: str | Path) -> tuple[list[str], list[str]]:
        """Load a checkpoint's weights except AU-specific ones when the AU list differs.

        Every trunk (not AU-specific) weight must be in the checkpoint with the same shape, else
        :class:`CheckpointError`. Logs and returns (loaded keys, re-initialised keys).
        """
        state, source_aus = read_checkpoint(path)
        own = self.state_dict()
        _check_trunk(path, own, state)
        skip_au = source_aus != self.aus
        loaded = [k for k in own if k in state and not (skip_au and _au_specific(k))]
        own.update({k: state[k] for k in loaded})
        self.load_state_dict(own)
        kept = set(loaded)
        skipped = [k for k in own if k not in kept]
        reason = " (the AU-specific ones: the AU list differs)" if skip_au else ""
        rank_zero_info(f"{path}: loaded {len(loaded)} weights, re-initialised {len(skipped)}{reason}")
        return loaded, skipped

    @classmethod
    def load_from_checkpoint(  # type: ignore[override]
        cls, checkpoint_path: str | Path, map_location: Any = None, hparams_file: str | Path | None = None,
        strict: bool | None = None, **kwargs: Any,
    ) -> AUFaceTask:
        """Lightning's loader with ``weights_only=True`` always: a checkpoint can hold tensors and
        plain values only, never code. An unreadable file is a :class:`CheckpointError`."""
        kwargs["weights_only"] = True
        try:
            return super().load_from_checkpoint(checkpoint_path, map_location, hparams_file, strict, **kwargs)
        except (pickle.UnpicklingError, EOFError) as err:
            raise _unreadable(checkpoint_path, err) from err
        except (KeyError, TypeError, RuntimeError) as err:  # not an AUFaceTask checkpoint, or a damaged one
            raise CheckpointError(f"{checkpoint_path} is not an au_face AUFaceTask checkpoint: {_describe(err)}") from err

    def _apply_freeze(self) -> None:
        prefixes = tuple(p for name in self.hparams.freeze or [] for p in FREEZABLE[name])
        for name, param in self.named_parameters():
            if name.startswith(prefixes) and not _au_specific(name):
                param.requires_grad_(False)

    # -- forward and steps ------------------------------------------------------------------
    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Run the network on a batch; returns logits, Δψ and refined vertices ``[B,T,V,3]``."""
        valid = batch["valid"].bool()
        out = self.net(batch["vertices"], valid, batch.get("reference"), batch.get("crops"), batch.get("features"))
        refined = out.smoothed + self.net.expression.apply(out.delta_expression)
        refined = torch.where(valid[..., None, None], refined, batch["vertices"])
        return {"logits": out.au_logits, "probs": self.probabilities(out.au_logits), "delta": out.delta_expression, "refined": refined}

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """AU probabilities. Positive weights ``w`` in the BCE move the optimal logit up by ``log w``;
        with ``calibrated`` that shift is taken off, so probabilities follow the training label
        frequencies instead of over-calling rare AUs."""
        if self.hparams.calibrated:
            logits = logits - self.pos_weight.log()
        return logits.sigmoid()

    def _losses(self, batch: dict[str, torch.Tensor], out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        hp = self.hparams
        valid = batch["valid"].bool()
        scale = hp.vertex_scale
        refined, coarse = out["refined"] / scale, batch["vertices"] / scale
        losses = {
            "au": masked_bce(out["logits"], batch["labels"], valid, self.pos_weight),
            "smooth": smoothness_loss(refined, valid),
            "data": vertex_mse(refined, coarse, valid),
            "delta": masked_mean_square(out["delta"], valid),
        }
        if "gt_vertices" in batch:
            gt = batch["gt_vertices"] / scale
            losses["gt"] = vertex_mse(refined, gt, valid)
            losses["accel"] = acceleration_mse(refined, gt, valid)
            if "gt_reference" in batch and "reference" in batch:
                moved = refined - batch["reference"][:, None] / scale
                losses["expression"] = vertex_mse(moved, gt - batch["gt_reference"][:, None] / scale, valid)
        weights = {
            "au": hp.au_weight, "smooth": hp.smooth_weight, "data": hp.data_weight, "delta": hp.delta_weight,
            "gt": hp.gt_weight, "expression": hp.expression_weight, "accel": hp.accel_weight,
        }  # fmt: skip
        losses["total"] = sum(weights[k] * v for k, v in losses.items())
        return losses

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        losses = self._losses(batch, self(batch))
        if not torch.isfinite(losses["total"]):
            raise AUFaceError(f"training loss is not finite at step {self.global_step}: {({k: float(v) for k, v in losses.items()})}")
        self.log_dict({f"train/loss_{k}": v for k, v in losses.items()}, prog_bar=False, batch_size=len(batch["valid"]))
        return losses["total"]

    def _eval_step(self, batch: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
        out = self(batch)
        losses = self._losses(batch, out)
        self.log(f"{prefix}/loss", losses["total"], batch_size=len(batch["valid"]))
        return {
            "probs": out["probs"],
            "labels": batch["labels"],
            "valid": batch["valid"].bool(),
            "refined": out["refined"],
            "coarse": batch["vertices"],
            "gt": batch.get("gt_vertices"),
        }

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        return self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        return self._eval_step(batch, "test")

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        out = self(batch)
        return {"probs": out["probs"], "refined": out["refined"], "valid": batch["valid"], "sequence": batch["sequence"], "start": batch["start"]}

    def configure_optimizers(self):
        hp = self.hparams
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = max(1, int(hp.warmup_fraction * total))

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return 0.5 * (1 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # -- inference on whole videos ----------------------------------------------------------
    @torch.no_grad()
    def refine(self, coarse: CoarseFrames, reference: torch.Tensor | None = None, batch_size: int = 16) -> Refinement:
        """Refine a whole video: the windows of :class:`~au_face.windows.SlidingWindow` (``clip_length``
        frames, half-window stride), run in batches and blended with its tent weights.

        ``reference`` is S̄ (defaults to the mean over the record's valid frames). Frames without
        a face keep their coarse mesh.
        """
        if coarse.topology != self.topology_name:
            raise CheckpointError(f"checkpoint was trained on topology {self.topology_name!r}, the frames are {coarse.topology!r}")
        self.eval()
        reference = self.reference(coarse) if reference is None else reference
        window = SlidingWindow(self.clip_length)
        windows, blend = window.plan(len(coarse)), window.blend()
        parts: list[list[np.ndarray]] = []
        for first in range(0, len(windows), batch_size):
            group = windows[first : first + batch_size]
            out = self(self._window_batch(coarse, [start for start, _ in group], reference))
            probs = out["probs"]
            for i, (start, stop) in enumerate(group):
                n = stop - start
                parts.append(blend.add(start, out["refined"][i, :n].cpu().numpy(), probs[i, :n].cpu().numpy()))
        parts.append(blend.finish())
        vertices, au_probs = (torch.from_numpy(np.concatenate(arrays)) for arrays in zip(*(p for p in parts if p)))
        vertices[~coarse.valid] = coarse.vertices[~coarse.valid].float()
        return Refinement(vertices, au_probs, list(self.aus))

    def _window_batch(self, coarse: CoarseFrames, starts: list[int], reference: torch.Tensor) -> dict[str, torch.Tensor]:
        """Windows of ``clip_length`` frames (the last padded with invalid frames) as a batch."""
        length = self.clip_length

        def window(x: torch.Tensor, start: int) -> torch.Tensor:
            part = x[start : start + length]
            pad = length - len(part)
            return torch.cat([part, part.new_zeros(pad, *part.shape[1:])]) if pad else part

        def stack(x: torch.Tensor) -> torch.Tensor:
            return torch.stack([window(x, s) for s in starts]).to(self.device)

        batch = {
            "vertices": stack(coarse.vertices.float()),
            "valid": stack(coarse.valid.bool()),
            "reference": reference.float().to(self.device).expand(len(starts), -1, -1),
        }
        if self.net.uses_video and coarse.crops is not None:
            batch["crops"] = stack(coarse.crops).permute(0, 1, 4, 2, 3).float() / 255.0
        if self.net.uses_video and coarse.features is not None:
            batch["features"] = stack(coarse.features.float())
        return batch


def _au_specific(key: str) -> bool:
    """Weights that depend on the AU list (never frozen; re-initialised for a new AU list)."""
    return key.removeprefix("net.").startswith(AUFaceNet.AU_SPECIFIC) or key == "pos_weight"


def _unreadable(path: str | Path, err: BaseException) -> CheckpointError:
    """One line for a file ``torch.load(weights_only=True)`` refused: code in it, or not a checkpoint."""
    refused = re.search(r"(?:unsupported|Unsupported global:) GLOBAL ([\w.]+)", str(err))
    if refused:
        return CheckpointError(
            f"{path} refers to Python code ({refused.group(1)}), not just tensors and plain values; "
            "refused, because loading it could run that code"
        )
    return CheckpointError(f"{path} is not a readable PyTorch checkpoint file ({type(err).__name__})")


def _describe(err: BaseException) -> str:
    """A loading error as one whole line (a state-dict mismatch summarised by its count of weights)."""
    text = str(err)
    if "Error(s) in loading state_dict" not in text:
        return f"{type(err).__name__}: {' '.join(text.split())}"
    keys = [a or b for a, b in re.findall(r'"([\w.]+)"|size mismatch for ([\w.]+)', text)]
    example = f", e.g. {keys[0]}" if keys else ""
    return (
        f"its weights do not fit the model its hyper-parameters describe "
        f"({len(keys)} missing, unexpected or reshaped{example})"
    )


def _check_trunk(path: str | Path, own: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> None:
    """Refuse a checkpoint that lacks trunk weights or has them in other shapes."""
    trunk = [k for k in own if not _au_specific(k)]
    geometry = ("neutral.",)  # the neutral estimator's shapes come with the checkpoint
    mismatched = [k for k in trunk if k in state and state[k].shape != own[k].shape and not k.startswith(geometry)]
    if mismatched:
        raise CheckpointError(
            f"{path} has a different architecture: {len(mismatched)} weights differ in shape, e.g. "
            f"{mismatched[0]} {list(state[mismatched[0]].shape)} vs {list(own[mismatched[0]].shape)}; "
            "use the checkpoint's model settings (dim, layers, topology)"
        )
    missing = [k for k in trunk if k not in state]
    if missing:
        raise CheckpointError(
            f"{path} matches only {len(trunk) - len(missing)} of the model's {len(trunk)} trunk weights "
            f"(missing e.g. {missing[0]}); it is not a checkpoint of this model"
        )


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], list[int]]:
    """State dict and AU list of an au_face checkpoint, read with ``weights_only=True`` (no code runs);
    :class:`CheckpointError` for a missing, foreign, unreadable or code-carrying file."""
    ckpt = load_checkpoint(path)
    return ckpt["state_dict"], resolve_aus(ckpt["hyper_parameters"]["aus"])


def load_checkpoint(path: str | Path) -> dict:
    """The whole checkpoint dict (state dict, hyper-parameters), checked like :func:`read_checkpoint`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a file that is not a checkpoint
        raise _unreadable(path, err) from err
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "aus" not in ckpt.get("hyper_parameters", {}):
        raise CheckpointError(f"{path} is not an au_face AUFaceTask checkpoint (no state_dict/hyper_parameters.aus)")
    return ckpt


__all__ = ["AUFaceTask", "CheckpointError", "Refinement"]
