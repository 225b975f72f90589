"""Atomic file writes: write to a temporary file beside the target, then rename."""

from __future__ import annotations

import abc
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Self

import numpy as np


def temporary_sibling(path: str | Path) -> Path:
    """A new empty temporary file beside ``path`` (same folder, so renaming it onto ``path`` is atomic).

    It keeps ``path``'s suffix (some writers, such as OpenCV's, choose the format by it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    return Path(tmp)


def publish(tmp: Path, path: str | Path) -> None:
    """Rename a finished temporary file onto ``path``, with the usual permissions (not mkstemp's 0600)."""
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``path`` on success.

    An interrupted write leaves the target untouched (old content or absent).
    """
    tmp_path = temporary_sibling(path)
    try:
        yield tmp_path
        publish(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


class AtomicStreamWriter(abc.ABC):
    """A writer that streams into a temporary file: :meth:`close` publishes it, :meth:`abort`
    (or an exception inside ``with``) discards it."""

    @abc.abstractmethod
    def close(self) -> None:
        """Finish and rename onto the final path."""

    @abc.abstractmethod
    def abort(self) -> None:
        """Discard everything written so far."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_save_npz(path: str | Path, compressed: bool = False, **arrays: np.ndarray) -> None:
    """Save arrays to ``path`` (an ``.npz``) atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            (np.savez_compressed if compressed else np.savez)(fh, **arrays)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write text to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def user_cache_dir() -> Path:
    """``$AU_FACE_CACHE`` or the platform's user cache folder (``~/.cache/au_face`` on Linux, via
    platformdirs): derived, re-creatable files (masks, templates, demo clip)."""
    import platformdirs

    root = os.environ.get("AU_FACE_CACHE")
    path = Path(root).expanduser() if root else Path(platformdirs.user_cache_dir("au_face", appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path
