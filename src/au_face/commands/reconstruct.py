"""``au-face reconstruct``: 3D face meshes (and, with a checkpoint, AU probabilities) for a video."""

from __future__ import annotations

import argparse
from pathlib import Path

from au_face.commands import positive_int
from au_face.errors import AUFaceError
from au_face.fileutil import output_folder
from au_face.io import MESH_FORMATS


class UsageError(AUFaceError, ValueError):
    """Inconsistent command-line arguments."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``au-face reconstruct``."""
    parser.description = (
        "Reconstruct a 3D face mesh for every frame of a video with MediaPipe and, given a trained "
        "checkpoint, refine it with the AU-aware transformer and write per-frame AU probabilities."
    )
    parser.add_argument("video", nargs="?", type=Path, help="input video file (a still image counts as a 1-frame video)")
    parser.add_argument("--ckpt", type=Path, help="trained AUFaceTask checkpoint (without it: coarse meshes only, no AUs)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--mesh-format", choices=MESH_FORMATS, help="also write one canonical mesh file per frame")
    parser.add_argument("--no-overlay", action="store_true", help="skip the overlay video")
    parser.add_argument("--stride", type=positive_int, default=1, help="process every N-th frame (default 1)")
    parser.add_argument("--max-frames", type=positive_int, help="stop after this many processed frames")
    parser.add_argument(
        "--demo",
        action="store_true",
        help="use the built-in clip (a still public-domain portrait under synthetic camera motion: "
        "shows tracking and mesh output, not expressions)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the reconstruction and print where the outputs went."""
    from au_face.coarse.mediapipe import MediaPipeReconstructor
    from au_face.pipeline import load_refiner, reconstruct

    video = _input_video(args)
    refiner = load_refiner(args.ckpt) if args.ckpt is not None else None
    reconstructor = MediaPipeReconstructor()
    with output_folder(args.out, "--out") as out:
        result = reconstruct(
            video,
            out,
            reconstructor,
            refiner=refiner,
            mesh_format=args.mesh_format,
            overlay=not args.no_overlay,
            stride=args.stride,
            max_frames=args.max_frames,
        )
    print(f"{video}:")
    print(result.summary())
    return 0


def _input_video(args: argparse.Namespace) -> Path:
    """The video to reconstruct: the built-in demo clip or an existing file (a still image is a 1-frame video)."""
    from au_face.video import VideoError, VideoNotFoundError

    if args.demo == (args.video is not None):
        raise UsageError("give either a VIDEO or --demo (exactly one)")
    if args.demo:
        from au_face.demo import demo_video

        return demo_video()
    if args.video.is_dir():
        raise VideoError(f"{args.video} is a folder, not a video file; give one video file (for folders: au-face preprocess)")
    if not args.video.is_file():
        raise VideoNotFoundError(f"video not found: {args.video}")
    return args.video
