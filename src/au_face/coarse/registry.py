"""Coarse reconstructors by name: the one list ``reconstruct``, ``preprocess`` and the DataModules use.

Each entry names its class as ``module:Class``; the module (MediaPipe, DECA and their
dependencies) is imported only when that reconstructor is asked for. ``landmarker`` needs a
user-supplied model file (``model_path``, ``--landmarker-model`` or ``$AU_FACE_LANDMARKER``).
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Protocol, cast

from au_face.errors import AUFaceError

if TYPE_CHECKING:
    from au_face.coarse.base import CoarseReconstructor

_CLASSES = {
    "mediapipe": "au_face.coarse.mediapipe:MediaPipeReconstructor",
    "deca": "au_face.coarse.deca:DecaReconstructor",
    "landmarker": "au_face.coarse.landmarker:FaceLandmarkerReconstructor",
}
#: Reconstructors whose ``create`` takes a ``model_path`` (the user-supplied model file).
TAKES_MODEL_PATH = ("landmarker",)
#: Names accepted by ``--reconstructor``.
RECONSTRUCTORS = tuple(_CLASSES)


class _TakesModelPath(Protocol):
    """The ``create`` of the classes in :data:`TAKES_MODEL_PATH`."""

    def create(self, device: str = "cpu", model_path: str | os.PathLike | None = None) -> CoarseReconstructor: ...


class UnknownReconstructorError(AUFaceError, ValueError):
    """A reconstructor name that is not in :data:`RECONSTRUCTORS`."""


class ReconstructorOptionError(AUFaceError, ValueError):
    """An option that the chosen reconstructor does not take."""


def reconstructor_class(name: str) -> type[CoarseReconstructor]:
    """The class registered as ``name`` (imports its module)."""
    if name not in _CLASSES:
        raise UnknownReconstructorError(f"unknown reconstructor {name!r}; choose from {', '.join(RECONSTRUCTORS)}")
    module, cls = _CLASSES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def reconstructor_version(name: str) -> str:
    """Version string of a registered reconstructor (cache entries carry it); builds nothing."""
    return str(reconstructor_class(name).version)


def build_reconstructor(
    name: str, accelerator: str = "cpu", model_path: str | os.PathLike | None = None, appearance: bool = False
) -> CoarseReconstructor:
    """A ready reconstructor by name. With a GPU ``accelerator`` it runs on this process's GPU
    (Lightning's multi-GPU launcher sets ``LOCAL_RANK``; the first process has none: 0).
    ``model_path`` is the model file of a reconstructor in :data:`TAKES_MODEL_PATH` (``landmarker``:
    its ``.task`` file; without it, the reconstructor's environment variable). ``appearance``: it also
    gives appearance descriptors (reconstructors on MediaPipe's points only)."""
    device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if accelerator in ("gpu", "cuda") else "cpu"
    cls = reconstructor_class(name)
    if name in TAKES_MODEL_PATH:
        reconstructor = cast(_TakesModelPath, cls).create(device, model_path=model_path)
    elif model_path is not None:
        raise ReconstructorOptionError(
            f"a model file applies to the {', '.join(TAKES_MODEL_PATH)} reconstructor, not {name}"
        )
    else:
        reconstructor = cls.create(device)
    if appearance:
        if not hasattr(reconstructor, "appearance"):
            raise ReconstructorOptionError(
                f"--appearance needs a reconstructor on MediaPipe's points (mediapipe, landmarker), not {name}"
            )
        reconstructor.appearance = True
    return reconstructor


__all__ = [
    "RECONSTRUCTORS",
    "TAKES_MODEL_PATH",
    "ReconstructorOptionError",
    "UnknownReconstructorError",
    "build_reconstructor",
    "reconstructor_class",
    "reconstructor_version",
]
