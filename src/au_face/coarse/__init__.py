"""Coarse per-frame reconstructors (see :mod:`au_face.coarse.registry` for them by name).

Names are imported on first use, so ``au_face.coarse.registry`` loads without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["CoarseFrames", "CoarseFramesError", "CoarseReconstructor"]

if TYPE_CHECKING:
    from au_face.coarse.base import CoarseFrames, CoarseFramesError, CoarseReconstructor


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'au_face.coarse' has no attribute {name!r}")
    return getattr(importlib.import_module("au_face.coarse.base"), name)
