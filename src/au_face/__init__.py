"""au_face: AU-aware dynamic 3D face reconstruction from video.

``import au_face`` is light: every public name is imported on first use, so torch, Lightning and
MediaPipe load only when something needs them::

    import au_face
    result = au_face.reconstruct("clip.mp4")

The public names are the one list of imports under ``TYPE_CHECKING`` below: type checkers read them
as imports, and :func:`__getattr__` resolves them lazily from the same statements.
"""

from __future__ import annotations

import ast
import importlib
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from au_face.aus import AU_SETS, au_label, parse_au, resolve_aus
    from au_face.coarse.base import CoarseFrames, CoarseReconstructor
    from au_face.coarse.deca import DecaReconstructor
    from au_face.coarse.mediapipe import MediaPipeReconstructor
    from au_face.coarse.registry import RECONSTRUCTORS, build_reconstructor
    from au_face.errors import AUFaceError
    from au_face.evaluation.evaluator import Evaluator
    from au_face.faces.ict import ICTFaceModel
    from au_face.faces.topology import FaceTopology
    from au_face.geometry import FaceGeometry, GeometrySpec
    from au_face.geometry import build as build_geometry
    from au_face.inference.api import Reconstructor, reconstruct
    from au_face.inference.result import ReconstructionResult
    from au_face.io.checkpoints import default_checkpoint
    from au_face.model.refiner import AUFaceRefiner, load_refiner
    from au_face.model.windows import SlidingWindow
    from au_face.nn.net import NetConfig
    from au_face.training.losses import LossWeights
    from au_face.training.task import AUFaceTask


@cache
def _exports() -> dict[str, tuple[str, str]]:
    """Public name → (defining module, name there), read from the ``TYPE_CHECKING`` imports above."""
    tree = ast.parse(Path(__file__).read_text(encoding="utf-8"))
    block = next(
        node for node in tree.body if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"
    )
    return {
        alias.asname or alias.name: (str(statement.module), alias.name)
        for statement in block.body
        if isinstance(statement, ast.ImportFrom)
        for alias in statement.names
    }


def __getattr__(name: str) -> Any:
    if name not in _exports():
        raise AttributeError(f"module 'au_face' has no attribute {name!r}")
    module, attribute = _exports()[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_exports()))


__all__ = ["__version__", *sorted(_exports())]
