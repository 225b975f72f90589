"""au_face checkpoints: read safely (``weights_only=True`` always, one clear error otherwise), the
packaged default model, and exporting the inference part of a training checkpoint."""

from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

from au_face.aus import resolve_aus
from au_face.errors import AUFaceError
from au_face.utils.files import atomic_path
from au_face.utils.lazy import lazy_module

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_module("torch")  # finding the packaged model needs no torch


class CheckpointError(AUFaceError, ValueError):
    """A checkpoint that is missing, not an au_face checkpoint, or incompatible."""


def load_checkpoint(path: str | Path) -> dict:
    """The whole checkpoint dict (state dict, hyper-parameters, geometry), read with
    ``weights_only=True`` (tensors and plain values, never code); :class:`CheckpointError` for a
    missing, foreign, unreadable, code-carrying or pre-0.3 file."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(
            f"checkpoint {path} is a folder, not a checkpoint file (e.g. {path / 'checkpoints' / 'best.ckpt'})"
        )
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a file that is not a checkpoint
        raise unreadable(path, err) from err
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise CheckpointError(f"{path} is not an au_face AUFaceTask checkpoint (no state_dict/hyper_parameters)")
    if "geometry" not in ckpt:
        raise CheckpointError(
            f"{path} carries no face geometry: it was written by au_face 0.1.0 (before checkpoints carried "
            "their geometry), or is not an "
            "AUFaceTask checkpoint; train it again with this version"
        )
    return ckpt


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], list[int]]:
    """State dict and AU list of an au_face checkpoint, checked like :func:`load_checkpoint`."""
    ckpt = load_checkpoint(path)
    return ckpt["state_dict"], resolve_aus(ckpt["geometry"]["aus"].tolist())


def check_finite(path: str | Path, state: dict[str, torch.Tensor]) -> None:
    """:class:`CheckpointError` if a floating-point weight of ``state`` is NaN or infinite."""
    bad = [
        k
        for k, v in state.items()
        if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())
    ]
    if bad:
        raise CheckpointError(
            f"{path} holds NaN or infinite weights ({len(bad)} tensors, e.g. {bad[0]}): a training run that "
            "diverged; use an earlier checkpoint"
        )


#: Where an ``AUFaceTask`` keeps its :class:`~au_face.model.refiner.AUFaceRefiner` (state-dict key prefix).
MODEL_PREFIX = "model."


def unreadable(path: str | Path, err: BaseException) -> CheckpointError:
    """One line for a file ``torch.load(weights_only=True)`` refused: code in it, or not a checkpoint."""
    refused = re.search(r"(?:unsupported|Unsupported global:) GLOBAL ([\w.]+)", str(err))
    if refused:
        return CheckpointError(
            f"{path} refers to Python code ({refused.group(1)}), not just tensors and plain values; "
            "refused, because loading it could run that code"
        )
    return CheckpointError(f"{path} is not a readable PyTorch checkpoint file ({type(err).__name__})")


def describe_load_error(err: BaseException) -> str:
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


#: Where the default model is packaged, inside ``au_face``.
DEFAULT_CHECKPOINT = ("resources", "models", "default.ckpt")


def default_checkpoint() -> Path | None:
    """The packaged default model (``au_face/resources/models/default.ckpt``), or None when this
    installation has none."""
    resource = files("au_face").joinpath(*DEFAULT_CHECKPOINT)
    return Path(str(resource)) if resource.is_file() else None


def export_checkpoint(source: str | Path, target: str | Path, **hparams: object) -> Path:
    """Write the inference part of a training checkpoint (weights, buffers, geometry, hyper-parameters; no
    optimiser or callback state) to ``target``, atomically; ``hparams`` override hyper-parameters
    that only change inference (e.g. ``calibrated``). This is how the packaged model is made."""
    return write_checkpoint(load_checkpoint(source), target, **hparams)


def write_checkpoint(ckpt: dict, target: str | Path, **hparams: object) -> Path:
    """:func:`export_checkpoint` of a checkpoint already read (and perhaps changed, e.g. by
    ``benchmarks/calibrate.py``)."""
    keys = ("state_dict", "hyper_parameters", "geometry", "pytorch-lightning_version", "epoch", "global_step")
    kept = {key: ckpt[key] for key in keys if key in ckpt}
    kept["hyper_parameters"] = {**kept["hyper_parameters"], **hparams, "init_checkpoint": None}
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        torch.save(kept, tmp)
    return target


__all__ = [
    "DEFAULT_CHECKPOINT",
    "MODEL_PREFIX",
    "CheckpointError",
    "check_finite",
    "default_checkpoint",
    "describe_load_error",
    "export_checkpoint",
    "load_checkpoint",
    "read_checkpoint",
    "unreadable",
    "write_checkpoint",
]
