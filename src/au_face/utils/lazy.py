"""A module imported on first use: ``au-face reconstruct`` tracks faces before torch is loaded.

Importing torch costs about 1.5 s of CPU here, as much as tracking a few hundred frames. The
coarse pass needs only numpy, OpenCV and MediaPipe, and the model loads in another process
(:mod:`au_face.inference.process`), so modules on that path name torch through
:func:`lazy_module` and import it only when a function really uses it. :func:`defer_import` does
the same for a module that a dependency imports (MediaPipe imports matplotlib's pyplot).
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any


class _LazyModule(ModuleType):
    """Stands for a module and imports it on the first attribute access."""

    def __getattr__(self, name: str) -> Any:
        if sys.modules.get(self.__name__) is self:  # standing in for the module (defer_import): make way
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), name)


def lazy_module(name: str) -> ModuleType:
    """``name`` (e.g. ``"torch"``), imported when one of its attributes is first used."""
    return _LazyModule(name)


def defer_import(name: str) -> None:
    """Until its first use, let ``import name`` (in any module) give a :func:`lazy_module` stand-in,
    unless ``name`` is imported already."""
    sys.modules.setdefault(name, lazy_module(name))


__all__ = ["defer_import", "lazy_module"]
