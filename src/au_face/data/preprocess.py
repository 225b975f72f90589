"""Coarse preprocessing as ``Trainer.predict``: one video per step, results into a :class:`CoarseCache`.

Running it through Lightning spreads the videos over devices and processes (e.g. DDP on
several GPUs or CPU processes): predict uses an unrepeated distributed sampler, so each video
goes to exactly one process, which writes its npz and records it in the manifest while holding
the video's file lock (so separate runs into one cache share the work).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from torch.utils.data import Dataset

from au_face.coarse.base import CoarseReconstructor
from au_face.coarse.stream import reconstruct_video_to_file
from au_face.data.cache import CoarseCache, source_stat
from au_face.errors import AUFaceError, PendingSignal


class VideoPathDataset(Dataset):
    """Video paths as strings; use with ``DataLoader(..., batch_size=None)``."""

    def __init__(self, videos: Sequence[str | Path]) -> None:
        self.videos = [str(v) for v in videos]

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> str:
        return self.videos[index]


class CoarseTask(L.LightningModule):
    """Wraps a :class:`CoarseReconstructor`; ``predict_step`` turns one video into one cached npz.

    Returns a small summary dict per video (``video``, ``status``, ``frames``, ``valid``,
    ``message``): status ``done``, ``no_face`` (cached as all-invalid) or
    ``failed`` (nothing written; the message says why). A failing video does not stop the run.
    """

    def __init__(self, reconstructor: CoarseReconstructor, cache: CoarseCache, chunk_size: int = 64) -> None:
        super().__init__()
        self.reconstructor = reconstructor
        self.cache = cache
        self.chunk_size = chunk_size

    def predict_step(self, batch: str, batch_idx: int) -> dict[str, Any]:
        """Reconstruct and record one video under its cache lock (a video another run has just
        finished is taken from the cache)."""
        PendingSignal.reraise()  # a Ctrl-C or SIGTERM whose exception was lost (raised inside a __del__)
        video = Path(batch)
        with self.cache.lock(video):
            entry = self.cache.entry(video)
            if entry is not None and self.cache.is_done(video, entry):
                return {"video": str(video), **{k: entry[k] for k in ("status", "frames", "valid", "message")}}
            read = source_stat(video)  # the file as read: one replaced meanwhile is redone next time
            result = self.reconstruct(video)
            self.cache.record(video, result["status"], result["frames"], result["valid"], result["message"], read)
        return result

    def reconstruct(self, video: Path) -> dict[str, Any]:
        """Reconstruct one video into its cache npz (not yet recorded); the summary dict."""
        summary: dict[str, Any] = {"video": str(video), "frames": 0, "valid": 0, "message": ""}
        try:
            result = reconstruct_video_to_file(
                video,
                self.reconstructor,
                self.cache.prepare(video),
                stride=self.cache.stride,
                max_frames=self.cache.max_frames,
                chunk_size=self.chunk_size,
                allow_no_face=True,
            )
        except AUFaceError as err:
            return {**summary, "status": "failed", "message": str(err)}
        except Exception as err:
            return {**summary, "status": "failed", "message": f"{video}: {type(err).__name__}: {err}"}
        notes = []
        if result.num_valid == 0:
            notes.append(f"no face found in any of the {result.num_frames} frames")
        if result.truncated:
            notes.append("fewer frames decoded than the container states (truncated or damaged file?)")
        return {
            **summary,
            "status": "done" if result.num_valid else "no_face",
            "frames": result.num_frames,
            "valid": result.num_valid,
            "message": "; ".join(notes),
        }


class CoarseCacheWriter(Callback):
    """Waits for every process's entries (recorded by :class:`CoarseTask`) before any reports."""

    def __init__(self, cache: CoarseCache) -> None:
        self.cache = cache

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.strategy.barrier("coarse_cache_written")


def fill_cache(
    cache: CoarseCache,
    reconstructor: CoarseReconstructor,
    videos: Sequence[str | Path],
    flush_every: int = 256,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, int]:
    """Reconstruct the ``videos`` (e.g. the one-frame photos of a collection) that ``cache`` lacks, in
    this process, recording the manifest once per ``flush_every`` videos instead of once per video.

    For one writer at a time (``au-face preprocess`` is the multi-process route). Returns counts
    per status (``done``, ``no_face``, ``failed``); ``progress(done, total)`` is called per flush.
    """
    task = CoarseTask(reconstructor, cache)
    todo = cache.missing(videos)
    counts: dict[str, int] = {}
    pending: list[tuple[Path, str, int, int, str, os.stat_result | None]] = []
    for i, video in enumerate(todo, 1):
        read = source_stat(video)
        result = task.reconstruct(video)
        counts[result["status"]] = counts.get(result["status"], 0) + 1
        pending.append((video, result["status"], result["frames"], result["valid"], result["message"], read))
        if len(pending) >= flush_every or i == len(todo):
            cache.record_many(pending)
            pending = []
            if progress is not None:
                progress(i, len(todo))
    return counts
