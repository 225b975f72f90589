"""``au-face preprocess``: coarse-reconstruct videos into a resumable on-disk cache.

Runs :class:`~au_face.data.preprocess.CoarseTask` with ``Trainer.predict`` (``--devices N`` spreads
the videos over N processes). Videos already cached with the same settings are skipped, so an
interrupted run is resumed by running the same command again.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from au_face.coarse.base import CoarseReconstructor
from au_face.coarse.registry import RECONSTRUCTORS, build_reconstructor
from au_face.commands import path_arg, positive_int
from au_face.data.cache import CoarseCache
from au_face.errors import AUFaceError
from au_face.io.sources import VIDEO_EXTENSIONS, list_videos
from au_face.utils.files import check_output_folder


class PreprocessInputError(AUFaceError, ValueError):
    """An input path that does not exist, or no videos to process."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``au-face preprocess``."""
    parser.description = (
        "Run the coarse reconstructor over videos (files, or folders searched recursively for "
        f"{', '.join(VIDEO_EXTENSIONS)}) and cache one npz per video plus manifest.json in --out. "
        "Rerunning skips finished videos and redoes interrupted or outdated ones."
    )
    parser.add_argument("inputs", nargs="+", type=path_arg, metavar="VIDEO_OR_DIR", help="video files or folders")
    parser.add_argument("--out", type=path_arg, required=True, help="cache folder")
    parser.add_argument(
        "--base",
        type=path_arg,
        help="folder that cache keys are relative to (default: the common folder of the inputs)",
    )
    parser.add_argument("--stride", type=positive_int, default=1, help="process every N-th frame (default 1)")
    parser.add_argument("--max-frames", type=positive_int, help="at most this many processed frames per video")
    parser.add_argument(
        "--reconstructor",
        choices=RECONSTRUCTORS,
        default="mediapipe",
        help="coarse reconstructor (deca needs $AU_FACE_DECA, $AU_FACE_FLAME, $AU_FACE_FLAME_LANDMARKS; "
        "landmarker needs --landmarker-model or $AU_FACE_LANDMARKER)",
    )
    parser.add_argument(
        "--landmarker-model",
        type=path_arg,
        metavar="TASK",
        help="landmarker: the MediaPipe Face Landmarker model face_landmarker.task (default $AU_FACE_LANDMARKER; "
        "not shipped, get it from the MediaPipe Face Landmarker page). The cache does not record which "
        "file: use a new --out after changing it",
    )
    parser.add_argument(
        "--devices", type=positive_int, default=1, help="Lightning devices (processes) sharing the videos"
    )
    parser.add_argument(
        "--accelerator", default="cpu", help="Lightning accelerator (default cpu: MediaPipe runs on CPU)"
    )
    parser.add_argument("--chunk-size", type=positive_int, default=64, help="frames decoded per reconstructor call")
    parser.add_argument(
        "--appearance",
        action="store_true",
        help="also cache each frame's appearance descriptor, for a model with an appearance head (the default "
        "model); a cache of its own version (DataModules: appearance: true)",
    )


def collect_videos(inputs: Sequence[str | Path]) -> list[Path]:
    """Video files from files and folders (searched recursively, sorted), in input order, without duplicates."""
    found: dict[Path, Path] = {}
    for item in map(Path, inputs):
        if item.is_dir():
            videos = list_videos(item)
            if not videos:
                raise PreprocessInputError(f"no videos ({', '.join(VIDEO_EXTENSIONS)}) under {item}")
        elif item.exists():
            videos = [item]
        else:
            raise PreprocessInputError(f"no such video file or folder: {item}")
        for video in videos:
            found.setdefault(video.resolve(), video)
    return list(found.values())


def default_base(inputs: Sequence[str | Path]) -> Path:
    """The deepest folder containing every input (a folder input counts as itself)."""
    folders = [str(Path(p).resolve() if Path(p).is_dir() else Path(p).resolve().parent) for p in inputs]
    return Path(os.path.commonpath(folders))


def _predict(
    cache: CoarseCache, reconstructor: CoarseReconstructor, videos: list[Path], args: argparse.Namespace
) -> bool:
    """Process ``videos`` with ``Trainer.predict``; True in the process that should report."""
    import lightning as L
    from torch.utils.data import DataLoader

    from au_face.data.preprocess import CoarseCacheWriter, CoarseTask, VideoPathDataset

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    trainer = L.Trainer(
        accelerator=args.accelerator,
        devices=args.devices,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=sys.stderr.isatty(),
        callbacks=[CoarseCacheWriter(cache)],
    )
    task = CoarseTask(reconstructor, cache, chunk_size=args.chunk_size)
    loader = DataLoader(VideoPathDataset(videos), batch_size=None, shuffle=False)
    try:
        trainer.predict(task, dataloaders=loader, return_predictions=False)
    except SystemExit as exit_:  # Lightning ends a run stopped by Ctrl-C (or SIGTERM) with exit(1)
        if isinstance(exit_.__context__, KeyboardInterrupt):
            raise exit_.__context__ from None
        raise
    return trainer.is_global_zero


def summary_rows(cache: CoarseCache, videos: list[Path], redone: set[Path]) -> list[dict[str, Any]]:
    """One row per video from the manifest: name, frames, valid, status, message."""
    manifest = cache.manifest()
    rows = []
    for video in videos:
        entry = manifest.get(cache.key(video))
        if entry is not None and video in redone and not cache.is_current(video, entry):
            row = {
                "frames": 0,
                "valid": 0,
                "status": "failed",
                "message": f"{video} changed while it was read; run the command again",
            }
        elif entry is None or not cache.is_current(video, entry):
            row = {"frames": 0, "valid": 0, "status": "failed", "message": f"{video}: no result was recorded"}
        else:
            row = {k: entry[k] for k in ("frames", "valid", "status", "message")}
            if row["status"] in ("done", "no_face") and not cache.is_done(video, entry):
                row.update(status="failed", message=f"{cache.path(video)} is missing or unreadable")
            elif row["status"] == "done" and video not in redone:
                row["status"] = "cached"
        rows.append({"video": cache.relative_name(video), **row})
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of :func:`summary_rows`."""
    header = ("video", "frames", "valid", "status")
    body = [(r["video"], str(r["frames"]), str(r["valid"]), r["status"]) for r in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    return "\n".join(f"{v:<{widths[0]}}  {f:>{widths[1]}}  {n:>{widths[2]}}  {s}" for v, f, n, s in [header, *body])


def run(args: argparse.Namespace) -> int:
    """Preprocess; print the summary table; 1 if any video failed or had no face, else 0."""
    videos = collect_videos(args.inputs)
    base = args.base if args.base is not None else default_base(args.inputs)
    if args.landmarker_model is not None and args.reconstructor != "landmarker":
        raise PreprocessInputError(
            f"--landmarker-model applies to --reconstructor landmarker, not {args.reconstructor}"
        )
    reconstructor = build_reconstructor(
        args.reconstructor, args.accelerator, model_path=args.landmarker_model, appearance=args.appearance
    )
    cache = CoarseCache(
        args.out, reconstructor.name, reconstructor.version, base, args.stride, args.max_frames, args.appearance
    )
    todo = cache.missing(videos) if args.out.is_dir() else videos
    if todo:  # a complete cache is only read: it may be read-only
        check_output_folder(args.out, "--out")
    start = time.perf_counter()
    if todo and not _predict(cache, reconstructor, todo, args):
        return 0  # another process of a multi-device run reports
    seconds = time.perf_counter() - start
    rows = summary_rows(cache, videos, set(todo))
    print(format_table(rows))
    frames = sum(row["frames"] for video, row in zip(videos, rows) if video in set(todo))
    rate = f" ({1000 * seconds / frames:.1f} ms/frame)" if frames else ""
    if todo:
        print(f"{len(todo)} of {len(videos)} videos processed in {seconds:.1f} s{rate}; cache: {cache.root}")
    else:
        print(f"all {len(videos)} videos cached; nothing to do; cache: {cache.root}")
    bad = [row for row in rows if row["status"] in ("failed", "no_face")]
    for row in bad:
        print(f"{row['status']}: {row['message'] or row['video']}", file=sys.stderr)
    return 1 if bad else 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m au_face.commands.preprocess``: same as ``au-face preprocess``."""
    parser = argparse.ArgumentParser(prog="au-face preprocess")
    add_arguments(parser)
    try:
        return run(parser.parse_args(argv))
    except AUFaceError as err:
        print(f"au-face: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
