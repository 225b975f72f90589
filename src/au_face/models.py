"""Trained models: the packaged default checkpoint and loading a checkpoint for inference."""

from __future__ import annotations

import pickle
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from au_face.tasks import AUFaceTask

#: Where the default model is packaged, inside ``au_face``.
DEFAULT_CHECKPOINT = ("resources", "models", "default.ckpt")


def default_checkpoint() -> Path | None:
    """The packaged default model (``au_face/resources/models/default.ckpt``), or None when this
    installation has none."""
    resource = files("au_face").joinpath(*DEFAULT_CHECKPOINT)
    return Path(str(resource)) if resource.is_file() else None


def load_refiner(checkpoint: str | Path) -> AUFaceTask:
    """Load a trained ``AUFaceTask`` checkpoint for inference (CPU, eval mode).

    Raises ``au_face.tasks.CheckpointError`` for a missing file or one that is not such a checkpoint.
    """
    from au_face.tasks import AUFaceTask, CheckpointError

    path = Path(checkpoint)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        task = AUFaceTask.load_from_checkpoint(path, map_location="cpu")
    except CheckpointError:
        raise
    except Exception as err:  # torch/pickle/Lightning raise many types for a foreign or broken file
        if isinstance(err, (pickle.UnpicklingError, EOFError)):
            reason = "not a readable PyTorch checkpoint file"
        else:
            reason = f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0]}"
        raise CheckpointError(f"{path} is not an au_face AUFaceTask checkpoint ({reason})") from err
    return task.eval()


__all__ = ["DEFAULT_CHECKPOINT", "default_checkpoint", "load_refiner"]
