"""Trained models: the packaged default checkpoint and loading a checkpoint for inference."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from au_face.refiner import AUFaceRefiner

#: Where the default model is packaged, inside ``au_face``.
DEFAULT_CHECKPOINT = ("resources", "models", "default.ckpt")


def default_checkpoint() -> Path | None:
    """The packaged default model (``au_face/resources/models/default.ckpt``), or None when this
    installation has none."""
    resource = files("au_face").joinpath(*DEFAULT_CHECKPOINT)
    return Path(str(resource)) if resource.is_file() else None


def load_refiner(checkpoint: str | Path) -> AUFaceRefiner:
    """The inference model of a trained ``AUFaceTask`` checkpoint (CPU, eval mode), without Lightning.

    Raises ``au_face.checkpoints.CheckpointError`` for a missing file or one that is not such a checkpoint.
    """
    from au_face.refiner import AUFaceRefiner

    return AUFaceRefiner.load(checkpoint)


def export_checkpoint(source: str | Path, target: str | Path, **hparams: object) -> Path:
    """Write the inference part of a training checkpoint (weights, buffers, geometry, hyper-parameters; no
    optimiser or callback state) to ``target``, atomically; ``hparams`` override hyper-parameters
    that only change inference (e.g. ``calibrated``). This is how the packaged model is made."""
    import torch

    from au_face.fileutil import atomic_path
    from au_face.checkpoints import load_checkpoint

    ckpt = load_checkpoint(source)
    keys = ("state_dict", "hyper_parameters", "geometry", "pytorch-lightning_version", "epoch", "global_step")
    kept = {key: ckpt[key] for key in keys if key in ckpt}
    kept["hyper_parameters"] = {**kept["hyper_parameters"], **hparams, "init_checkpoint": None}
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        torch.save(kept, tmp)
    return target


__all__ = ["DEFAULT_CHECKPOINT", "default_checkpoint", "export_checkpoint", "load_refiner"]
