"""Coarse reconstructors by name: the one list ``reconstruct``, ``preprocess`` and the DataModules use.

Each entry names its class as ``module:Class``; the module (MediaPipe, DECA and their
dependencies) is imported only when that reconstructor is asked for.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING

from au_face.errors import AUFaceError

if TYPE_CHECKING:
    from au_face.coarse.base import CoarseReconstructor

_CLASSES = {
    "mediapipe": "au_face.coarse.mediapipe:MediaPipeReconstructor",
    "deca": "au_face.coarse.deca:DecaReconstructor",
}
#: Names accepted by ``--reconstructor``.
RECONSTRUCTORS = tuple(_CLASSES)


class UnknownReconstructorError(AUFaceError, ValueError):
    """A reconstructor name that is not in :data:`RECONSTRUCTORS`."""


def reconstructor_class(name: str) -> type[CoarseReconstructor]:
    """The class registered as ``name`` (imports its module)."""
    if name not in _CLASSES:
        raise UnknownReconstructorError(f"unknown reconstructor {name!r}; choose from {', '.join(RECONSTRUCTORS)}")
    module, cls = _CLASSES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def reconstructor_version(name: str) -> str:
    """Version string of a registered reconstructor (cache entries carry it); builds nothing."""
    return str(reconstructor_class(name).version)


def build_reconstructor(name: str, accelerator: str = "cpu") -> CoarseReconstructor:
    """A ready reconstructor by name. With a GPU ``accelerator`` it runs on this process's GPU
    (Lightning's multi-GPU launcher sets ``LOCAL_RANK``; the first process has none: 0)."""
    device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if accelerator in ("gpu", "cuda") else "cpu"
    return reconstructor_class(name).create(device)


__all__ = ["RECONSTRUCTORS", "UnknownReconstructorError", "build_reconstructor", "reconstructor_class", "reconstructor_version"]
