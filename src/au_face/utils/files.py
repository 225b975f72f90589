"""Atomic file writes (a temporary file beside the target, then rename), output folders and their debris.

Temporary files and work folders carry the writing process's id (``.<name>.<pid>-<random>...``),
so a later run can tell the debris of a killed process from the live files of a running one.
"""

from __future__ import annotations

import abc
import glob
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Self

import numpy as np

from au_face.errors import AUFaceError

#: ``.<prefix>.<pid>-<random>``: the process id in the name of a temporary file or work folder.
_OWNER = re.compile(r"\.(\d+)-[^./]+(?:\.tmp|$)")


class OutputFolderError(AUFaceError, OSError):
    """An output folder that is a file, or in which nothing can be written."""


def temporary_sibling(path: str | Path) -> Path:
    """A new empty temporary file beside ``path`` (same folder, so renaming it onto ``path`` is atomic).

    It keeps ``path``'s suffix (some writers, such as OpenCV's, choose the format by it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp" + path.suffix, dir=path.parent)
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

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
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
    what = f"AU_FACE_CACHE={root}" if root else f"the user cache folder {path}"
    if path.exists() and not path.is_dir():
        raise OutputFolderError(f"{what} is a file, not a folder; point AU_FACE_CACHE at a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputFolderError(
            f"cannot create {what}: {err.strerror or err}; point AU_FACE_CACHE at a writable folder"
        ) from err
    return path


def check_output_folder(path: str | Path, what: str = "output folder") -> Path:
    """Create ``path`` if needed and make sure a file can be written in it, or raise
    :class:`OutputFolderError` (``what`` names it in the message, e.g. ``--out``)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputFolderError(f"{what} {path} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".write-test.{os.getpid()}-", dir=path)
    except OSError as err:
        raise OutputFolderError(f"cannot write to {what} {path}: {err.strerror or err}") from err
    os.close(fd)
    os.unlink(probe)
    return path


@contextmanager
def output_folder(path: str | Path, what: str = "output folder") -> Iterator[Path]:
    """:func:`check_output_folder`; a folder this call created is removed again if the block fails
    before anything was written in it."""
    path = Path(path)
    existed = path.exists()
    check_output_folder(path, what)
    try:
        yield path
    except BaseException:
        if not existed and path.is_dir() and not any(path.iterdir()):
            path.rmdir()
        raise


def _alive(pid: int) -> bool:
    """Whether a process with this id exists (on this machine)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but is not ours (PermissionError), or no signals on this platform
        return True
    return True


def remove_stale(folder: str | Path, prefix: str) -> list[Path]:
    """Remove the entries of ``folder`` named ``<prefix>...`` whose writing process has died
    (temporary files and work folders of killed runs). Returns what was removed."""
    removed = []
    for entry in Path(folder).glob(f"{glob.escape(prefix)}*"):
        owner = _OWNER.search(entry.name[len(prefix) :])
        if owner is None or _alive(int(owner.group(1))):
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def make_work_folder(parent: str | Path, stem: str) -> Path:
    """A new hidden work folder ``.<stem>_work.<pid>-<random>`` in ``parent``, after removing
    those of killed runs (and their temporary files, ``.<stem>_...``)."""
    remove_stale(parent, f".{stem}_")
    return Path(tempfile.mkdtemp(prefix=f".{stem}_work.{os.getpid()}-", dir=parent))
