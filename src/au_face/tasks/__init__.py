"""Deprecated alias of :mod:`au_face.training`, kept for one release so that run folders saved with
``class_path: au_face.tasks.AUFaceTask`` still load. Import from ``au_face`` or ``au_face.training``."""

from __future__ import annotations

import warnings

_MOVED = {
    "AUFaceTask": "au_face.training.task",
    "CheckpointError": "au_face.io.checkpoints",
    "Refinement": "au_face.model.refiner",
}


def __getattr__(name: str) -> object:
    if name not in _MOVED:
        raise AttributeError(f"module 'au_face.tasks' has no attribute {name!r}")
    from importlib import import_module

    warnings.warn(
        f"au_face.tasks.{name} moved to {_MOVED[name]}.{name}; au_face.tasks goes in the next release",
        FutureWarning,
        stacklevel=2,
    )
    return getattr(import_module(_MOVED[name]), name)


__all__ = list(_MOVED)
