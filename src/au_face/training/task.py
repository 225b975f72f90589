"""AUFaceTask: the paper's model as a LightningModule, assembled from its parts.

The task receives a geometry (:mod:`au_face.geometry`), the network's architecture
(:class:`~au_face.nn.net.NetConfig`), the loss weights (:class:`~au_face.training.losses.LossWeights`), an
:class:`~au_face.evaluation.evaluator.Evaluator` and an :class:`~au_face.training.optim.OptimizerConfig`; it is
complete at ``__init__`` and its checkpoints carry the geometry, so a checkpoint alone refines videos.
"""

from __future__ import annotations

import pickle
from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.types import OptimizerLRSchedulerConfig

from au_face.coarse.base import CoarseFrames
from au_face.errors import AUFaceError
from au_face.evaluation.evaluator import Evaluator
from au_face.geometry import FaceGeometry, GeometrySpec, resolve_geometry
from au_face.io.checkpoints import (
    MODEL_PREFIX,
    CheckpointError,
    describe_load_error,
    load_checkpoint,
    read_checkpoint,
    unreadable,
)
from au_face.model.refiner import AUFaceRefiner, Reference, Refinement
from au_face.nn.net import AUFaceNet, NetConfig
from au_face.training.losses import AUFaceLoss, LossWeights
from au_face.training.optim import OptimizerConfig

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

FREEZABLE = {
    "tokenizer": ("model.net.tokenizer.",),
    "spatial": ("model.net.spatial.",),
    "temporal": ("model.net.temporal.", "model.net.fuse."),
    "video": ("model.net.video_frame.",),
    "mesh": ("model.net.mesh_frame.",),
}
_Part = TypeVar("_Part", bound="DataclassInstance")


class AUFaceTask(L.LightningModule):
    """AU-aware dynamic refinement: AU occurrence + temporally smooth expression refinement.

    Args:
        geometry: topology, AU list, masks, expression basis and neutral estimator: a
            :class:`~au_face.geometry.GeometrySpec` (built once and cached), a geometry ``.npz`` or
            checkpoint path, or a :class:`~au_face.geometry.FaceGeometry`.
        net: architecture. loss: loss weights (:class:`~au_face.training.losses.AUFaceLoss` lists the terms).
        evaluator: metrics logged on validation and test. optimizer: AdamW settings.
        clip_length: frames per clip (windows of this length at inference).
        reference: S̄ is the person's estimated ``neutral`` shape (needs a geometry with a neutral
            estimator) or the clip ``mean``.
        calibrated: take the ``log w`` shift of the positive BCE weights off the probabilities.
        mesh_exclusions: probabilities of AUs the coarse mesh rules out are 0 (AU24 on parted lips).
        init_checkpoint: fine-tuning: a trained model loaded at the start of ``fit``; weights that
            depend on the AU list are re-initialised when it differs; a checkpoint of another
            architecture is refused.
        freeze: parts kept fixed while fine-tuning (tokenizer, spatial, temporal, video, mesh);
            AU-specific weights always train.
    """

    def __init__(
        self,
        geometry: GeometrySpec | str | FaceGeometry,
        net: NetConfig | None = None,
        loss: LossWeights | None = None,
        evaluator: Evaluator | None = None,
        optimizer: OptimizerConfig | None = None,
        clip_length: int = 16,
        reference: Reference = "mean",
        calibrated: bool = False,
        mesh_exclusions: bool = True,
        init_checkpoint: str | None = None,
        freeze: list[str] | None = None,
    ) -> None:
        super().__init__()
        net, loss = _part(NetConfig, net), _part(LossWeights, loss)
        evaluator, optimizer = _part(Evaluator, evaluator), _part(OptimizerConfig, optimizer)
        unknown = set(freeze or []) - set(FREEZABLE)
        if unknown:
            raise ValueError(f"cannot freeze {sorted(unknown)}; choose from {sorted(FREEZABLE)}")
        source, geometry = _source(geometry), resolve_geometry(geometry)
        self.save_hyperparameters(
            {
                "geometry": source,
                "net": asdict(net),
                "loss": asdict(loss),
                "evaluator": asdict(evaluator),
                "optimizer": asdict(optimizer),
                "clip_length": clip_length,
                "reference": reference,
                "calibrated": calibrated,
                "mesh_exclusions": mesh_exclusions,
                "init_checkpoint": init_checkpoint,
                "freeze": freeze,
            }  # fmt: skip
        )
        self.model = AUFaceRefiner(geometry, net, clip_length, reference, calibrated, mesh_exclusions)
        self.evaluator, self.optimizer_config = evaluator, optimizer
        self.loss = AUFaceLoss(loss, geometry.vertex_scale)

    # -- what inference code reads (the refiner's) -------------------------------------------
    @property
    def geometry(self) -> FaceGeometry:
        return self.model.geometry

    @property
    def aus(self) -> list[int]:
        return self.model.aus

    @property
    def topology_name(self) -> str:
        return self.model.topology_name

    @property
    def clip_length(self) -> int:
        return self.model.clip_length

    @property
    def frame_inputs(self) -> tuple[str, ...]:
        return self.model.frame_inputs

    def reference(self, coarse: CoarseFrames) -> torch.Tensor:
        """S̄ ``[V,3]`` of a whole video (:meth:`AUFaceRefiner.reference`)."""
        return self.model.reference(coarse)

    def refine(self, coarse: CoarseFrames, reference: torch.Tensor | None = None, batch_size: int = 16) -> Refinement:
        """Refine a whole video (:meth:`AUFaceRefiner.refine`)."""
        return self.model.refine(coarse, reference, batch_size)

    def refine_photos(self, photos: CoarseFrames) -> tuple[torch.Tensor, Refinement]:
        """Each frame on its own, as unrelated photos (:meth:`AUFaceRefiner.refine_photos`)."""
        return self.model.refine_photos(photos)

    def configure_callbacks(self) -> list[Callback]:
        """The evaluator's metric callbacks, unless the Trainer already has one of the same type."""
        # Trainer.callbacks is set at run time by Lightning's callback connector, absent from its class
        present = {type(c) for c in (self.trainer.callbacks if self._trainer else [])}  # type: ignore[attr-defined]
        return [c for c in self.evaluator.callbacks() if type(c) not in present]

    # -- data statistics, fine-tuning, checkpoints -------------------------------------------
    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        net = self.model.net
        needs_crops = net.uses_video and not net.video_from_features
        if needs_crops and datamodule is not None and getattr(datamodule, "use_crops", True) is False:
            raise AUFaceError(
                f"modality={net.modality!r} needs face crops, but the data serves none: set "
                "--data.init_args.use_crops=true (or use modality=mesh)"
            )
        if stage == "fit":
            if datamodule is not None and hasattr(datamodule, "label_frequencies"):
                freq = torch.as_tensor(datamodule.label_frequencies(), dtype=torch.float32)
                cap = self.loss.weights.max_pos_weight
                self.model.pos_weight.copy_(((1 - freq) / freq.clamp_min(1e-6)).nan_to_num(1.0).clamp(1.0, cap))
            if self.hparams["init_checkpoint"] and self.trainer.ckpt_path is None:
                self.load_trunk(self.hparams["init_checkpoint"])
            self._apply_freeze()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["geometry"] = self.geometry.to_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse a checkpoint trained with another geometry (a rebuild of the same one, on any
        machine, is accepted: see :meth:`FaceGeometry.differences`); add the optional heads it holds."""
        if "geometry" not in checkpoint:
            raise CheckpointError(f"the checkpoint holds no geometry; this model has {self.geometry.describe()}")
        self.model.add_heads_of(checkpoint.get("state_dict", {}), MODEL_PREFIX)
        stored = FaceGeometry.from_state(checkpoint["geometry"])  # checks the stored hash
        if stored != self.geometry:
            raise CheckpointError(
                f"the checkpoint was trained with geometry {stored.describe()}, this model has "
                f"{self.geometry.describe()}, different in {', '.join(self.geometry.differences(stored))}; "
                "use the geometry it was trained with"
            )

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
        cls,
        checkpoint_path: str | Path,
        map_location: Any = None,
        hparams_file: str | Path | None = None,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> AUFaceTask:
        """Lightning's loader with ``weights_only=True`` always (tensors and plain values, never code)
        and the geometry the checkpoint carries. An unusable file is a :class:`CheckpointError`."""
        kwargs.setdefault("geometry", FaceGeometry.from_state(load_checkpoint(checkpoint_path)["geometry"]))
        kwargs["weights_only"] = True
        try:
            return super().load_from_checkpoint(checkpoint_path, map_location, hparams_file, strict, **kwargs)
        except (pickle.UnpicklingError, EOFError) as err:
            raise unreadable(checkpoint_path, err) from err
        except (KeyError, TypeError, RuntimeError) as err:  # not an AUFaceTask checkpoint, or a damaged one
            raise CheckpointError(
                f"{checkpoint_path} is not an au_face AUFaceTask checkpoint: {describe_load_error(err)}"
            ) from err

    def _apply_freeze(self) -> None:
        prefixes = tuple(p for name in self.hparams["freeze"] or [] for p in FREEZABLE[name])
        for name, param in self.named_parameters():
            if name.startswith(prefixes) and not _au_specific(name):
                param.requires_grad_(False)

    # -- forward and steps ------------------------------------------------------------------
    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The refiner on a batch: logits, probabilities, Δψ and refined vertices ``[B,T,V,3]``."""
        return self.model(batch)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        losses = self.loss(self(batch), batch, self.model.pos_weight)
        if not torch.isfinite(losses["total"]):
            raise AUFaceError(
                f"training loss is not finite at step {self.global_step}: { ({k: float(v) for k, v in losses.items()}) }"
            )
        self.log_dict({f"train/loss_{k}": v for k, v in losses.items()}, prog_bar=False, batch_size=len(batch["valid"]))
        return losses["total"]

    def _eval_step(self, batch: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
        out = self(batch)
        self.log(
            f"{prefix}/loss", self.loss(out, batch, self.model.pos_weight)["total"], batch_size=len(batch["valid"])
        )
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
        return {
            "probs": out["probs"],
            "refined": out["refined"],
            "valid": batch["valid"],
            "sequence": batch["sequence"],
            "start": batch["start"],
        }

    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        params = [p for p in self.parameters() if p.requires_grad]
        return self.optimizer_config.build(params, int(self.trainer.estimated_stepping_batches))


def _part(kind: type[_Part], value: _Part | dict | None) -> _Part:
    """A part given as itself, as the dict a checkpoint stores, or None (its defaults)."""
    if value is None:
        return kind()
    if isinstance(value, dict):
        names = {f.name for f in fields(kind)}
        return kind(**{k: v for k, v in value.items() if k in names})
    return value


def _source(geometry: GeometrySpec | str | FaceGeometry) -> dict | str | None:
    """How the geometry was given, for the hyper-parameters (the arrays go in the checkpoint)."""
    if isinstance(geometry, GeometrySpec):
        return asdict(geometry)
    return None if isinstance(geometry, FaceGeometry) else str(geometry)


def _au_specific(key: str) -> bool:
    """Weights that depend on the AU list (never frozen; re-initialised for a new AU list)."""
    return (
        key.removeprefix(f"{MODEL_PREFIX}net.").startswith(AUFaceNet.AU_SPECIFIC) or key == f"{MODEL_PREFIX}pos_weight"
    )


def _check_trunk(path: str | Path, own: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> None:
    """Refuse a checkpoint that lacks trunk weights or has them in other shapes."""
    trunk = [k for k in own if not _au_specific(k)]
    geometry = (f"{MODEL_PREFIX}neutral.",)  # the neutral estimator's shapes come with the checkpoint
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


__all__ = ["AUFaceTask", "CheckpointError", "Refinement"]
