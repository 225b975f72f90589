"""``au-face frames``: encode folders of numbered frames (BP4D, Multiface ship images) as MJPG videos
for ``au-face preprocess``, keeping the source frame numbers (``0001.jpg`` → frame 1)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``au-face frames``."""
    parser.add_argument("images_root", type=Path, help="folder whose sub-folders hold numbered frames")
    parser.add_argument("videos_root", type=Path, help="where the videos go (same relative paths, .avi)")
    parser.add_argument("--fps", type=float, required=True, help="frame rate (BP4D 25, Multiface 30)")


def run(args: argparse.Namespace) -> int:
    """Encode every frame folder (existing videos are kept, so a rerun resumes)."""
    from au_face.data.datamodules.cached import encode_image_folders

    videos = encode_image_folders(args.images_root, args.videos_root, args.fps)
    print(f"{len(videos)} videos under {args.videos_root}")
    return 0
