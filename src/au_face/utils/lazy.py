"""A module imported on first use: ``au-face reconstruct`` tracks faces before torch is loaded.

Importing torch costs about 1.5 s of CPU here, as much as tracking a few hundred frames. The
coarse pass needs only numpy, OpenCV and MediaPipe, and the model loads in another process
(:mod:`au_face.inference.process`), so modules on that path name torch through
:func:`lazy_module` and import it only when a function really uses it.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class _LazyModule(ModuleType):
    """Stands for a module and imports it on the first attribute access."""

    def __getattr__(self, name: str) -> Any:
        return getattr(importlib.import_module(self.__name__), name)


def lazy_module(name: str) -> ModuleType:
    """``name`` (e.g. ``"torch"``), imported when one of its attributes is first used."""
    return _LazyModule(name)


__all__ = ["lazy_module"]
