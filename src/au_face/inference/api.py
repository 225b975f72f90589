"""The one-call Python API, shared by ``au-face reconstruct``::

import au_face
result = au_face.reconstruct("clip.mp4")        # the packaged model when installed, else coarse only
result.aus                                       # pandas DataFrame, the CSV's columns
result.save("outputs/clip")                      # npz, csv, png

with au_face.Reconstructor() as reconstruct:     # many inputs: load and build once
    results = [reconstruct(path) for path in paths]
"""

from __future__ import annotations

import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from au_face.coarse.base import CoarseReconstructor
from au_face.errors import AUFaceError
from au_face.inference.passes import InferenceRefiner
from au_face.inference.process import RefinerProcess
from au_face.inference.result import ReconstructionResult
from au_face.io.checkpoints import default_checkpoint
from au_face.io.sources import are_photos, find_inputs, sequence_name
from au_face.model.numpy_refiner import load_array_refiner
from au_face.viz import OVERLAY_MAX_SIDE


class UsageError(AUFaceError, ValueError):
    """Inconsistent arguments."""


def resolve_refiner(ckpt: str | Path | None = None, refine: bool = True) -> InferenceRefiner | None:
    """The model to refine with: ``ckpt``, else the packaged default model, else None (coarse only).
    ``refine=False`` gives None. It runs in NumPy (:func:`~au_face.model.numpy_refiner.load_array_refiner`:
    no torch import once the checkpoint has been exported to the cache)."""
    path = _checkpoint_path(ckpt, refine)
    return None if path is None else load_array_refiner(path)


@contextmanager
def open_refiner(
    ckpt: str | Path | None = None, refine: bool = True, fork: bool = False
) -> Iterator[InferenceRefiner | RefinerProcess | None]:
    """:func:`resolve_refiner` for the block; with ``fork`` (and no other thread running) as a
    :class:`~au_face.inference.process.RefinerProcess`, which loads the model while
    :func:`au_face.inference.pipeline.reconstruct` tracks faces and is ended after the block.

    Fork only from a fresh process (``au-face reconstruct`` from the shell): a forked child can
    hang in torch if the parent has run torch's thread pool (the first run of a checkpoint loads
    it with torch to export it).
    """
    path = _checkpoint_path(ckpt, refine)
    if path is None or not fork or threading.active_count() > 1:
        yield None if path is None else load_array_refiner(path)
        return
    process = RefinerProcess(lambda: load_array_refiner(path))
    try:
        yield process
    finally:
        process.close()


def _checkpoint_path(ckpt: str | Path | None, refine: bool) -> str | Path | None:
    """``ckpt``, else the packaged default model, else None; None when ``refine`` is False."""
    if not refine:
        return None
    return ckpt if ckpt is not None else default_checkpoint()


def input_names(source: str | Path, inputs: list[Path]) -> list[str]:
    """Output-file stems: the input's name (a folder's own name, also for ``.``); videos found in a
    folder by their path inside it. Names that would clash (``a.mp4`` and ``a.avi``, ``sub/x.mp4``
    and ``sub_x.avi``; compared ignoring case) keep their extension; :class:`UsageError` if even
    those clash."""
    source = Path(source)
    if inputs == [source]:
        return [sequence_name(source)]
    relative = [p.relative_to(source) for p in inputs]
    names = [r.with_suffix("").as_posix().replace("/", "_") for r in relative]
    counts = Counter(n.casefold() for n in names)
    names = [r.as_posix().replace("/", "_") if counts[n.casefold()] > 1 else n for r, n in zip(relative, names)]
    seen: dict[str, Path] = {}
    for path, name in zip(inputs, names):
        if name.casefold() in seen:
            raise UsageError(
                f"{seen[name.casefold()]} and {path} would both write the outputs named {name!r}; rename one"
            )
        seen[name.casefold()] = path
    return names


def reconstruct_all(
    source: str | Path,
    out: str | Path,
    reconstructor: CoarseReconstructor,
    refiner: InferenceRefiner | RefinerProcess | None,
    name: str | None = None,
    on_error: Callable[[Path, AUFaceError], None] | None = None,
    all_faces: bool = False,
    **options,
) -> Iterator[ReconstructionResult]:
    """Reconstruct every sequence of ``source`` (see :func:`~au_face.io.sources.find_inputs`) into ``out``,
    one result per sequence as it finishes; ``options`` go to :func:`au_face.inference.pipeline.reconstruct`.
    With ``all_faces``, one result per face of each sequence (:func:`reconstruct_every_face`). Nothing
    in ``out`` is an input. With ``on_error``, an input of several that fails is passed to it (with its
    error) and the others still run; else the error ends the run."""
    from au_face.inference.pipeline import reconstruct as run_pipeline

    inputs = find_inputs(source, exclude=out)
    names = [name] if name is not None and len(inputs) == 1 else input_names(source, inputs)
    for path, stem in zip(inputs, names):
        try:
            if all_faces:
                yield from reconstruct_every_face(path, out, reconstructor, refiner, name=stem, **options)
            else:
                yield run_pipeline(path, out, reconstructor, refiner=refiner, name=stem, **options)
        except AUFaceError as err:
            if on_error is None or len(inputs) == 1:
                raise
            on_error(path, err)


def reconstruct_every_face(
    source: Path,
    out: str | Path,
    reconstructor: CoarseReconstructor,
    refiner: InferenceRefiner | RefinerProcess | None,
    name: str,
    **options,
) -> Iterator[ReconstructionResult]:
    """Every face of one video (or folder of frames): its faces found and linked into tracks first
    (:func:`~au_face.coarse.tracks.scan_face_tracks`, a pass of the reconstructor alone), then each track
    reconstructed as its own sequence with the reconstructor following it: files ``<name>_face<k>_*``
    and ``face_id`` k, numbered by first sight (then from the left). ``options`` as for
    :func:`au_face.inference.pipeline.reconstruct`; :class:`~au_face.coarse.stream.NoFaceError` without a face."""
    from au_face.coarse.stream import NoFaceError
    from au_face.coarse.tracks import MIN_TRACK_FRAMES, scan_face_tracks
    from au_face.inference.pipeline import reconstruct as run_pipeline

    if not reconstructor.finds_every_face:
        raise UsageError(
            f"the {reconstructor.name} reconstructor follows one face; every face needs mediapipe or landmarker"
        )
    scan = {key: options.get(key) for key in ("max_frames", "fps")}
    with reconstructor.every_face():  # the same faces found in the scan and in each run
        tracks = scan_face_tracks(source, reconstructor, stride=options.get("stride", 1), **scan)
        if not tracks:
            raise NoFaceError(
                f"no face found in {source}, or none on enough frames to follow (at least {MIN_TRACK_FRAMES})"
            )
        for face_id, track in enumerate(tracks):
            with reconstructor.following(track):
                yield run_pipeline(
                    source,
                    out,
                    reconstructor,
                    refiner=refiner,
                    name=f"{name}_face{face_id}",
                    face_id=face_id,
                    **options,
                )


class Reconstructor:
    """Reconstructs many inputs with one coarse reconstructor and one loaded model::

        with au_face.Reconstructor() as r:
            for path in paths:
                result = r(path)

    The reconstructor is built and the model loaded once, here; :meth:`close` (or the end of
    the ``with`` block) frees them. :func:`reconstruct` is one call of a ``Reconstructor`` that
    is closed afterwards.

    Args:
        ckpt: a trained ``AUFaceTask`` checkpoint; None uses the packaged default model when this
            installation has one (:func:`~au_face.io.checkpoints.default_checkpoint`), else coarse meshes only.
        refine: False skips the model (coarse meshes, pose and confidence only).
        reconstructor: a name from :data:`~au_face.coarse.registry.RECONSTRUCTORS`, or an instance
            (which the caller keeps and closes).
        verbose: let MediaPipe/TFLite print their log lines (see :mod:`au_face.utils.quiet`).
    """

    def __init__(
        self,
        ckpt: str | Path | None = None,
        *,
        refine: bool = True,
        reconstructor: str | CoarseReconstructor = "mediapipe",
        verbose: bool = False,
    ) -> None:
        self._owned = isinstance(reconstructor, str)
        if isinstance(reconstructor, str):
            from au_face.coarse.registry import build_reconstructor

            reconstructor = build_reconstructor(reconstructor)
        self.coarse: CoarseReconstructor = reconstructor
        self.verbose = verbose
        self._closed = False
        try:
            self.refiner: InferenceRefiner | None = resolve_refiner(ckpt, refine)
        except BaseException:
            self.close()
            raise

    def __call__(
        self,
        source: str | Path | Sequence[str | Path],
        *,
        photos: bool = False,
        all_faces: bool = False,
        fps: float | None = None,
        out: str | Path | None = None,
        overlay: bool = False,
        overlay_style: str = "wire",
        overlay_max_side: int | None = OVERLAY_MAX_SIDE,
        mesh_format: str | None = None,
        stride: int = 1,
        max_frames: int | None = None,
        progress: bool = False,
    ) -> ReconstructionResult | list[ReconstructionResult]:
        """Reconstruct a video, an image, a folder of videos or of image frames, or photos.

        A folder of videos, or a video with ``all_faces``, gives a list of results, anything else one
        result. A list of image paths, or a folder or image with ``photos=True``, is a photo collection
        (:func:`~au_face.inference.photos.reconstruct_photos`): every photo on its own, with its own S̄ and
        one row (named by its file) of one result. ``all_faces`` keeps every face: of a photo (an image
        or a folder of images is then a photo collection), each its own row, numbered from the left in
        ``face_id``; of a video, each its own sequence and result (:func:`reconstruct_every_face`).
        ``fps`` is the frame rate of a folder of image frames (default 30, with a warning). ``out`` keeps
        the files (npz, csv, png, overlay) in that folder; None keeps the results in memory only. ``overlay`` (an MP4) needs ``out``;
        ``overlay_style`` draws its mesh as a ``wire`` frame (default) or ``shaded``; ``overlay_max_side``
        scales its picture down to that many pixels on the longer side (None or 0: the video's size).
        ``mesh_format``, ``stride``, ``max_frames``, ``progress``: as in :func:`au_face.inference.pipeline.reconstruct`.
        """
        from au_face.utils.quiet import native_logs_silenced

        if self._closed:
            raise UsageError("this Reconstructor is closed")
        _check_overlay_has_out(overlay, out)
        if photos or not isinstance(source, (str, Path)) or (all_faces and are_photos(source)):
            if overlay or stride != 1 or max_frames is not None or fps is not None:
                raise UsageError(
                    "photos are each on their own: overlay, stride, max_frames and fps apply to videos and frames"
                )
            return self._photos(source, out, mesh_format, progress, all_faces)
        options: dict[str, Any] = {
            "overlay": overlay, "overlay_style": overlay_style, "overlay_max_side": overlay_max_side, "mesh_format": mesh_format, "stride": stride, "max_frames": max_frames, "progress": progress, "fps": fps, "all_faces": all_faces,
        }  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="au_face_") as scratch, native_logs_silenced(not self.verbose):
            results = [
                result if out is not None else _in_memory(result)
                for result in reconstruct_all(
                    source, out if out is not None else scratch, self.coarse, self.refiner, **options
                )
            ]
        single = find_inputs(source) == [Path(source)] and not all_faces
        return results[0] if single else results

    def _photos(
        self,
        source: str | Path | Sequence[str | Path],
        out: str | Path | None,
        mesh_format: str | None,
        progress: bool,
        all_faces: bool,
    ) -> ReconstructionResult:
        """A photo collection (see :meth:`__call__`)."""
        from au_face.inference.photos import reconstruct_photos
        from au_face.utils.quiet import native_logs_silenced

        with tempfile.TemporaryDirectory(prefix="au_face_") as scratch, native_logs_silenced(not self.verbose):
            result = reconstruct_photos(
                source,
                out if out is not None else scratch,
                self.coarse,
                self.refiner,
                mesh_format,
                progress,
                all_faces=all_faces,
            )
            return result if out is not None else _in_memory(result)

    def close(self) -> None:
        """Free the reconstructor (if built here) and the model. Idempotent."""
        self._closed = True
        self.refiner = None
        if self._owned:
            self.coarse.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _check_overlay_has_out(overlay: bool, out: str | Path | None) -> None:
    if overlay and out is None:
        raise UsageError("overlay=True writes a video file: give out=FOLDER")


def reconstruct(
    source: str | Path | Sequence[str | Path],
    ckpt: str | Path | None = None,
    *,
    refine: bool = True,
    reconstructor: str | CoarseReconstructor = "mediapipe",
    photos: bool = False,
    all_faces: bool = False,
    fps: float | None = None,
    out: str | Path | None = None,
    overlay: bool = False,
    overlay_style: str = "wire",
    overlay_max_side: int | None = OVERLAY_MAX_SIDE,
    mesh_format: str | None = None,
    stride: int = 1,
    max_frames: int | None = None,
    progress: bool = False,
    verbose: bool = False,
) -> ReconstructionResult | list[ReconstructionResult]:
    """Reconstruct a video, an image, a folder of videos or of image frames, or photos (a list of
    images, or ``photos=True``): one call of a :class:`Reconstructor` (arguments as there), which is closed afterwards. For many inputs, keep
    one ``Reconstructor``: this loads the model and builds the reconstructor on every call."""
    _check_overlay_has_out(overlay, out)  # before the model loads
    with Reconstructor(ckpt, refine=refine, reconstructor=reconstructor, verbose=verbose) as run:
        return run(
            source,
            photos=photos,
            all_faces=all_faces,
            fps=fps,
            out=out,
            overlay=overlay,
            overlay_style=overlay_style,
            overlay_max_side=overlay_max_side,
            mesh_format=mesh_format,
            stride=stride,
            max_frames=max_frames,
            progress=progress,
        )


def _in_memory(result: ReconstructionResult) -> ReconstructionResult:
    """``result`` read into memory, pointing at no files (they are about to go)."""
    result.load()
    result.paths = {}
    return result


__all__ = [
    "Reconstructor",
    "UsageError",
    "input_names",
    "open_refiner",
    "reconstruct",
    "reconstruct_all",
    "reconstruct_every_face",
    "resolve_refiner",
]
