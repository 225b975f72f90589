"""``au-face reconstruct``: 3D face meshes, pose and (with a model) AU probabilities for videos and images."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from au_face.coarse.base import EVERY_FACE
from au_face.coarse.registry import RECONSTRUCTORS
from au_face.commands import non_negative_int, path_arg, positive_float, positive_int
from au_face.errors import AUFaceError
from au_face.io.meshes import MESH_FORMATS
from au_face.utils.files import output_folder
from au_face.viz import MESH_STYLES, OVERLAY_MAX_SIDE

if TYPE_CHECKING:
    from au_face.coarse.base import CoarseReconstructor

#: Processes that track a photo collection at most (one per core up to this; each holds its own MediaPipe graphs).
MAX_PHOTO_WORKERS = 4


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``au-face reconstruct``."""
    parser.description = (
        "Reconstruct a 3D face mesh for every frame of a video, an image, or a folder of videos or of "
        "image frames and, with a trained model, refine it with the AU-aware transformer and write "
        "per-frame AU probabilities."
    )
    parser.add_argument(
        "input",
        nargs="?",
        type=path_arg,
        help="a video, an image (a 1-frame video), or a folder of videos or of image frames",
    )
    parser.add_argument("--out", type=path_arg, required=True, help="output folder")
    parser.add_argument(
        "--ckpt", type=path_arg, help="trained AUFaceTask checkpoint (default: the packaged model, if installed)"
    )
    parser.add_argument(
        "--photos",
        action="store_true",
        help="INPUT (a folder of images, or one image) is a photo collection: every image on its own (its own S̄, no "
        "tracking), one CSV row each named by its file, one mesh npz for the collection; no overlay or AU plot",
    )
    parser.add_argument(
        "--all-faces",
        action="store_true",
        help=f"keep every face (up to {EVERY_FACE}; mediapipe and landmarker), not only the largest. An image or a folder "
        "of images is then a photo collection (--photos): each face gets its own row, S̄ and mesh, numbered from the "
        "left in face_id. A video: its faces are found and followed first, then each is reconstructed as its own "
        "sequence (outputs NAME_face0_*, NAME_face1_*, ... numbered by first sight; one more pass over the video "
        "per face)",
    )
    parser.add_argument(
        "--fps",
        type=positive_float,
        help="frame rate of a folder of image frames (default 30, with a warning); videos have their own",
    )
    parser.add_argument(
        "--no-refine", action="store_true", help="coarse meshes, pose and confidence only (no model, no AUs)"
    )
    parser.add_argument(
        "--reconstructor", choices=RECONSTRUCTORS, default="mediapipe", help="coarse reconstructor (default mediapipe)"
    )
    parser.add_argument(
        "--landmarker-model",
        type=path_arg,
        metavar="TASK",
        help="landmarker: the MediaPipe Face Landmarker model face_landmarker.task (default $AU_FACE_LANDMARKER; "
        "not shipped, get it from the MediaPipe Face Landmarker page)",
    )
    parser.add_argument("--mesh-format", choices=MESH_FORMATS, help="also write one canonical mesh file per frame")
    parser.add_argument("--no-overlay", action="store_true", help="skip the overlay video")
    parser.add_argument(
        "--overlay-style",
        choices=MESH_STYLES,
        default="wire",
        help="how the overlay draws the mesh: its wireframe (default, about 1.5 ms a frame) or shaded triangles "
        "under it (about 4 ms)",
    )
    parser.add_argument(
        "--overlay-max-side",
        type=non_negative_int,
        default=OVERLAY_MAX_SIDE,
        metavar="PIXELS",
        help=f"draw the overlay scaled down to this many pixels on its longer side (default {OVERLAY_MAX_SIDE}; "
        "0: the video's own size)",
    )
    parser.add_argument("--stride", type=positive_int, default=1, help="process every N-th frame (default 1)")
    parser.add_argument("--max-frames", type=positive_int, help="stop after this many processed frames")
    parser.add_argument(
        "--verbose", action="store_true", help="show MediaPipe/TFLite/absl log lines (hidden by default)"
    )
    parser.add_argument(
        "--max-faces",
        type=positive_int,
        help="mediapipe, landmarker: faces looked for, every 30 frames and when tracking is lost (default 4; the "
        "largest is used). 1 never looks for further faces and takes MediaPipe's own pick of face",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="use the built-in clip (scikit-image's public-domain astronaut photo, a smiling face, under "
        "synthetic camera motion: shows tracking, the mesh and AU12 on)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the reconstruction and print where the outputs went."""
    from au_face.coarse.registry import build_reconstructor
    from au_face.inference.api import UsageError, open_refiner, reconstruct_all
    from au_face.io.sources import are_photos
    from au_face.utils.quiet import native_logs_silenced

    if args.demo == (args.input is not None):
        raise UsageError("give either an INPUT or --demo (exactly one)")
    if args.ckpt is not None and args.no_refine:
        raise UsageError("--ckpt and --no-refine contradict each other")
    source, name = args.input, None
    if args.demo:
        from au_face.data.demo import demo_video

        source, name = demo_video(), "demo"
    if args.landmarker_model is not None and args.reconstructor != "landmarker":
        raise UsageError(f"--landmarker-model applies to --reconstructor landmarker, not {args.reconstructor}")

    def make_reconstructor():
        reconstructor = build_reconstructor(args.reconstructor, model_path=args.landmarker_model)
        if args.max_faces is not None:
            if not hasattr(reconstructor, "max_faces"):
                raise UsageError(
                    f"--max-faces applies to the mediapipe and landmarker reconstructors, not {args.reconstructor}"
                )
            reconstructor.max_faces = args.max_faces
        return reconstructor

    if args.all_faces and args.max_faces is not None:
        raise UsageError(
            f"--max-faces chooses one face among several; --all-faces keeps every face (up to {EVERY_FACE})"
        )
    if args.photos or (args.all_faces and args.input is not None and are_photos(args.input)):
        return _run_photos(args, make_reconstructor)
    options = {
        "mesh_format": args.mesh_format,
        "overlay": not args.no_overlay,
        "overlay_style": args.overlay_style,
        "overlay_max_side": args.overlay_max_side,
        "stride": args.stride,
        "max_frames": args.max_frames,
        "fps": args.fps,
        "all_faces": args.all_faces,
    }
    failed: list[str] = []

    def report(path: Path, err: AUFaceError) -> None:
        print(f"au-face: error: {err}", file=sys.stderr)
        failed.append(str(path))

    # forked first: the model (and torch) load there while MediaPipe loads here and tracks
    with open_refiner(args.ckpt, refine=not args.no_refine, fork=args.fresh_process) as refiner:
        reconstructor = make_reconstructor()
        with native_logs_silenced(not args.verbose), output_folder(args.out, "--out") as out:
            for result in reconstruct_all(
                source, out, reconstructor, refiner, name=name, on_error=report, progress=True, **options
            ):
                print(f"{result.name}:")
                print(result.summary())
    if failed:
        inputs = "input" if len(failed) == 1 else "inputs"
        print(f"au-face: {len(failed)} {inputs} failed (the others are done): {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _run_photos(args: argparse.Namespace, make_reconstructor: Callable[[], CoarseReconstructor]) -> int:
    """``--photos``: a photo collection (:func:`au_face.inference.photos.reconstruct_photos`), tracked on
    every core when run from the shell while the model loads in a process of its own."""
    from au_face.inference.api import UsageError, open_refiner
    from au_face.inference.photos import reconstruct_photos
    from au_face.utils.quiet import native_logs_silenced

    if args.demo:
        raise UsageError("--photos reads a folder of images or an image, not --demo")
    given = [
        flag
        for flag, on in (("--fps", args.fps), ("--stride", args.stride != 1), ("--max-frames", args.max_frames))
        if on
    ]
    if given:
        raise UsageError(f"{', '.join(given)} apply to videos and frames; --photos reads every image on its own")
    with open_refiner(args.ckpt, refine=not args.no_refine, fork=args.fresh_process) as refiner:
        reconstructor = make_reconstructor()
        forking = args.fresh_process and reconstructor.one_core
        workers = min(len(os.sched_getaffinity(0)), MAX_PHOTO_WORKERS) if forking else 1
        with native_logs_silenced(not args.verbose), output_folder(args.out, "--out") as out:
            result = reconstruct_photos(
                args.input,
                out,
                reconstructor,
                refiner,
                args.mesh_format,
                progress=True,
                workers=workers,
                all_faces=args.all_faces,
            )
    print(f"{result.name}:")
    print(result.summary())
    return 0
