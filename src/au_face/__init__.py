"""au_face: AU-aware dynamic 3D face reconstruction from video.

``import au_face`` is light: every name below is imported on first use, so torch, Lightning and
MediaPipe load only when something needs them::

    import au_face
    result = au_face.reconstruct("clip.mp4")
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name → module that defines it
_EXPORTS = {
    "AU_SETS": "au_face.aus",
    "au_label": "au_face.aus",
    "parse_au": "au_face.aus",
    "resolve_aus": "au_face.aus",
    "AUFaceError": "au_face.errors",
    "CoarseFrames": "au_face.coarse.base",
    "CoarseReconstructor": "au_face.coarse.base",
    "MediaPipeReconstructor": "au_face.coarse.mediapipe",
    "DecaReconstructor": "au_face.coarse.deca",
    "RECONSTRUCTORS": "au_face.coarse.registry",
    "build_reconstructor": "au_face.coarse.registry",
    "FaceTopology": "au_face.faces.topology",
    "ICTFaceModel": "au_face.faces.ict",
    "FaceGeometry": "au_face.geometry",
    "GeometrySpec": "au_face.geometry",
    "build_geometry": "au_face.geometry",
    "NetConfig": "au_face.nn.net",
    "LossWeights": "au_face.losses",
    "Evaluator": "au_face.evaluator",
    "AUFaceTask": "au_face.tasks.au_face",
    "AUFaceRefiner": "au_face.refiner",
    "load_refiner": "au_face.models",
    "default_checkpoint": "au_face.models",
    "reconstruct": "au_face.api",
    "ReconstructionResult": "au_face.result",
    "SlidingWindow": "au_face.windows",
}

__all__ = ["__version__", *sorted(_EXPORTS)]

if TYPE_CHECKING:
    from au_face.api import reconstruct
    from au_face.aus import AU_SETS, au_label, parse_au, resolve_aus
    from au_face.coarse.base import CoarseFrames, CoarseReconstructor
    from au_face.coarse.deca import DecaReconstructor
    from au_face.coarse.mediapipe import MediaPipeReconstructor
    from au_face.coarse.registry import RECONSTRUCTORS, build_reconstructor
    from au_face.errors import AUFaceError
    from au_face.faces.ict import ICTFaceModel
    from au_face.evaluator import Evaluator
    from au_face.faces.topology import FaceTopology
    from au_face.geometry import FaceGeometry, GeometrySpec
    from au_face.geometry import build as build_geometry
    from au_face.losses import LossWeights
    from au_face.models import default_checkpoint, load_refiner
    from au_face.nn.net import NetConfig
    from au_face.refiner import AUFaceRefiner
    from au_face.result import ReconstructionResult
    from au_face.tasks.au_face import AUFaceTask
    from au_face.windows import SlidingWindow


#: exported under another name than the defining module's
_RENAMED = {"build_geometry": "build"}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'au_face' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), _RENAMED.get(name, name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
