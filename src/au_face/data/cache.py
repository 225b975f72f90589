"""On-disk cache of coarse reconstructions, one npz per video plus a manifest; resumable.

Layout of ``root``::

    <key>.npz        CoarseFrames of one video (written atomically: temporary file + rename)
    manifest.json    per key: source path, size, mtime, reconstructor, version, settings, counts,
                     status and the npz's SHA-256
    .locks/<key>.lock  held by the process writing that video (concurrent runs share the work)

A video's npz is always written before its manifest entry, and both by rename, so a process
killed at any moment leaves either a finished entry, or a video that the next run redoes.
An entry counts only while the source file is unchanged (size and mtime), the reconstructor,
its version and the frame settings match, and the npz still has the recorded checksum.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import time
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from au_face.coarse.base import CoarseFrames
from au_face.errors import AUFaceError
from au_face.utils.files import atomic_write_text

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
#: Statuses whose npz is in the cache (a video without any face is cached as all-invalid).
CACHED_STATUSES = ("done", "no_face")
#: Arrays every cached npz has.
_REQUIRED = ("vertices", "valid", "rotation", "translation", "scale", "landmarks2d", "timestamps", "fps", "topology")

#: Folder of the per-video and manifest lock files.
LOCKS = ".locks"


class CacheMissError(AUFaceError, FileNotFoundError):
    """A video has no usable entry in the coarse cache."""


#: Appended to the reconstructor's version in a cache whose records carry appearance descriptors.
APPEARANCE_VERSION = "+brows+mouth"


class CoarseCache:
    """Coarse reconstructions of many videos under ``root``, for one reconstructor and version.

    Args:
        root: cache folder (created on first write).
        reconstructor_name, version: identify the producer; entries of others are stale.
        base: folder that video keys are relative to (so a dataset folder can move); videos
            outside it are keyed by their absolute path.
        stride, max_frames: frame selection the cached records were made with.
        appearance: the records carry appearance descriptors (``au-face preprocess --appearance``): a
            version of its own (:data:`APPEARANCE_VERSION` appended), so records without them are stale.
    """

    def __init__(
        self,
        root: str | Path,
        reconstructor_name: str,
        version: str,
        base: str | Path | None = None,
        stride: int = 1,
        max_frames: int | None = None,
        appearance: bool = False,
    ) -> None:
        self.root = Path(root).expanduser()
        self.reconstructor_name = reconstructor_name
        self.appearance = bool(appearance)
        self.version = str(version) + (APPEARANCE_VERSION if appearance else "")
        self.base = Path(base).expanduser().resolve() if base is not None else None
        self.stride = int(stride)
        self.max_frames = max_frames

    # -- keys and paths ---------------------------------------------------------------------
    def relative_name(self, video: str | Path) -> str:
        """The video's path relative to ``base`` (posix), or its absolute path outside it."""
        resolved = Path(video).expanduser().resolve()
        if self.base is not None and resolved.is_relative_to(self.base):
            return resolved.relative_to(self.base).as_posix()
        return resolved.as_posix()

    def key(self, video: str | Path) -> str:
        """File-name-safe key: the sanitised relative path plus a hash of it (no collisions)."""
        name = self.relative_name(video)
        digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:8]
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name.strip("/").replace("/", "__"))[-120:].lstrip(".")
        return f"{safe}-{digest}"

    def path(self, video: str | Path) -> Path:
        """Where the video's npz lives."""
        return self.root / f"{self.key(video)}.npz"

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    # -- manifest ---------------------------------------------------------------------------
    def manifest(self) -> dict[str, dict[str, Any]]:
        """All entries by key (empty if there is no manifest yet)."""
        try:
            data = json.loads(self.manifest_path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as err:
            warnings.warn(f"{self.manifest_path} is unreadable ({err}); every video will be redone", stacklevel=2)
            return {}
        videos = data.get("videos") if isinstance(data, dict) else None
        return videos if isinstance(videos, dict) else {}

    def entry(self, video: str | Path) -> dict[str, Any] | None:
        """The manifest entry of a video, if any (current or stale)."""
        return self.manifest().get(self.key(video))

    def lock(self, video: str | Path | None = None) -> FileLock:
        """Inter-process lock of one video's entry (or, without a video, of the manifest).

        Hold a video's lock from :meth:`prepare` to :meth:`record`: a second process waits,
        then finds the video done instead of deleting the first one's live files.
        """
        folder = self.root / LOCKS
        folder.mkdir(parents=True, exist_ok=True)
        return FileLock(folder / (f"{self.key(video)}.lock" if video is not None else "manifest.lock"))

    def record(
        self,
        video: str | Path,
        status: str,
        num_frames: int = 0,
        num_valid: int = 0,
        message: str = "",
        read: os.stat_result | None = None,
    ) -> dict[str, Any]:
        """Add or replace the video's manifest entry (after its npz is in place). Returns the entry.

        ``read`` is the video's :func:`source_stat` taken before it was read (default: now): a file
        replaced while it was read then no longer matches its entry, and is redone."""
        return self.record_many([(video, status, num_frames, num_valid, message, read)])[0]

    def record_many(
        self, results: Iterable[tuple[str | Path, str, int, int, str, os.stat_result | None]]
    ) -> list[dict[str, Any]]:
        """:meth:`record` for many ``(video, status, frames, valid, message, read)`` at once: the manifest
        is rewritten once, not once per video (a photo collection has thousands of one-frame entries)."""
        entries = {
            self.key(video): self._entry(video, status, frames, valid, message, read)
            for video, status, frames, valid, message, read in results
        }
        with self.lock():
            videos = self.manifest()
            videos.update(entries)
            text = json.dumps({"format": MANIFEST_FORMAT, "videos": dict(sorted(videos.items()))}, indent=1)
            atomic_write_text(self.manifest_path, text + "\n")
            self._remove_leftovers(MANIFEST)
        return list(entries.values())

    def _entry(
        self, video: str | Path, status: str, num_frames: int, num_valid: int, message: str, read: os.stat_result | None
    ) -> dict[str, Any]:
        source = Path(video).expanduser().resolve()
        stat = read if read is not None else source_stat(source)
        size, mtime_ns = (stat.st_size, stat.st_mtime_ns) if stat is not None else (None, None)
        return {
            "source": str(source),
            "size": size,
            "mtime_ns": mtime_ns,
            "reconstructor": self.reconstructor_name,
            "version": self.version,
            "stride": self.stride,
            "max_frames": self.max_frames,
            "frames": int(num_frames),
            "valid": int(num_valid),
            "status": status,
            "message": message,
            "sha256": _digest(self.path(video)) if status in CACHED_STATUSES else None,
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }

    # -- state of a video -------------------------------------------------------------------
    def has_face(self, video: str | Path, manifest: dict[str, dict[str, Any]]) -> bool:
        """Whether ``manifest`` (:meth:`manifest`) records the video as reconstructed with a face."""
        return manifest.get(self.key(video), {}).get("status") == "done"

    def is_current(self, video: str | Path, entry: dict[str, Any] | None) -> bool:
        """Whether ``entry`` describes the video as it is now, made with these settings."""
        if entry is None:
            return False
        try:
            stat = Path(video).expanduser().resolve().stat()
        except OSError:
            return False
        return (
            entry.get("size") == stat.st_size
            and entry.get("mtime_ns") == stat.st_mtime_ns
            and entry.get("reconstructor") == self.reconstructor_name
            and entry.get("version") == self.version
            and entry.get("stride") == self.stride
            and entry.get("max_frames") == self.max_frames
        )

    def is_done(self, video: str | Path, entry: dict[str, Any] | None = None) -> bool:
        """True if the video has a current entry with a cached status and its npz is intact."""
        entry = self.entry(video) if entry is None else entry
        if entry is None or not self.is_current(video, entry) or entry.get("status") not in CACHED_STATUSES:
            return False
        return not self.is_damaged(video, entry)

    def is_damaged(self, video: str | Path, entry: dict[str, Any]) -> bool:
        """Whether the video's npz differs from what its entry recorded (missing, changed bytes, unreadable)."""
        path = self.path(video)
        if entry.get("sha256"):
            return _digest(path) != entry["sha256"]
        return not _npz_readable(path, entry.get("frames"))  # entries written before checksums

    def missing(self, videos: Iterable[str | Path]) -> list[Path]:
        """The videos that are not (or no longer) cached."""
        manifest = self.manifest()
        return [Path(v) for v in videos if not self.is_done(v, manifest.get(self.key(v)))]

    def load(self, video: str | Path) -> CoarseFrames:
        """The cached record of a video; :class:`CacheMissError` (with the command to run) if missing."""
        if not self.is_done(video):
            raise CacheMissError(self.missing_message([video]))
        return CoarseFrames.load(self.path(video))

    def command(self, videos: Iterable[str | Path]) -> str:
        """The ``au-face preprocess`` command line that fills the cache for ``videos``."""
        parts = ["au-face", "preprocess", *[str(Path(v)) for v in videos], "--out", str(self.root)]
        if self.base is not None:
            parts += ["--base", str(self.base)]
        if self.stride != 1:
            parts += ["--stride", str(self.stride)]
        if self.max_frames is not None:
            parts += ["--max-frames", str(self.max_frames)]
        parts += ["--reconstructor", self.reconstructor_name]
        if self.appearance:
            parts.append("--appearance")
        return shlex.join(parts)

    def missing_message(self, videos: Iterable[str | Path]) -> str:
        """What is missing and the exact command that makes it ("" when nothing is missing)."""
        videos = list(videos)
        missing = self.missing(videos)
        if not missing:
            return ""
        damaged = self.damaged(missing)
        note = f" ({len(damaged)} damaged, e.g. {damaged[0]})" if damaged else ""
        return (
            f"{len(missing)} of {len(videos)} videos have no coarse reconstruction "
            f"({self.reconstructor_name} v{self.version}) in {self.root}{note}; run:\n  {self.command(missing)}"
        )

    def damaged(self, videos: Iterable[str | Path]) -> list[Path]:
        """npz files of current entries whose content no longer matches the manifest."""
        manifest = self.manifest()
        found = []
        for video in videos:
            entry = manifest.get(self.key(video))
            if (
                entry is not None
                and self.is_current(video, entry)
                and entry.get("status") in CACHED_STATUSES
                and self.is_damaged(video, entry)
            ):
                found.append(self.path(video))
        return found

    # -- housekeeping -----------------------------------------------------------------------
    def prepare(self, video: str | Path) -> Path:
        """Remove leftovers of an interrupted write of this video; return its npz path.

        Call before (re)writing a video. Only the process writing a video touches its files.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.path(video)
        self._remove_leftovers(path.name)
        return path

    def _remove_leftovers(self, name: str) -> None:
        """Temporary files and spool folders of ``name`` (``.<name>.*``) from killed writers.

        Keys and the manifest name contain no glob wildcards."""
        for leftover in self.root.glob(f".{name}.*"):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)


def source_stat(video: str | Path) -> os.stat_result | None:
    """``stat`` of a video (size and mtime identify what was read), None if it cannot be read."""
    try:
        return Path(video).expanduser().resolve().stat()
    except OSError:
        return None


def _digest(path: Path) -> str | None:
    """SHA-256 of a file's bytes (None if it cannot be read)."""
    try:
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError:
        return None


def _npz_readable(path: Path, num_frames: Any) -> bool:
    """Cheap check: the npz opens, has every required array, and ``valid`` has ``num_frames`` rows."""
    try:
        with np.load(path) as z:
            if not set(_REQUIRED) <= set(z.files):
                return False
            return len(z["valid"]) == num_frames
    except Exception:
        return False
