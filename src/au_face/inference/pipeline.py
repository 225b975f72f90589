"""Video in, reconstruction out: coarse meshes, optional AU-aware refinement, files on disk.

Memory stays flat in the video length. Pass 1 streams frames through the coarse
reconstructor and appends every per-frame field to raw files in a work folder. Pass 2 (with a
refiner) follows it: it reads overlapping windows back from there as soon as their frames and
their ``S̄`` are in (:mod:`~au_face.model.reference`: fitted on the first frames, refitted as more
come) and appends the stitched refinement. The outputs are then written chunk by chunk, and the
overlay video is a third streaming pass over the frames.

The passes overlap where the data allows, so both cores work: frames are decoded ahead of Face
Mesh in a thread (:func:`~au_face.utils.concurrency.read_ahead`); a refiner in its own process
(:class:`~au_face.inference.process.RefinerProcess`, as ``au-face reconstruct`` runs it) loads
during pass 1 and runs pass 2 there, a few frames behind pass 1; and the overlay is drawn in a
thread (:class:`~au_face.inference.overlay.OverlayStream`) and encoded by ffmpeg as soon as its
frames' final meshes are in the work folder, also during pass 1.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from au_face.coarse.base import SHOT_FIELD, CoarseReconstructor
from au_face.coarse.stream import FRAME_FIELDS, STORE_CHUNK, FrameStore, reconstruct_video_arrays
from au_face.errors import AUFaceError, PendingSignal
from au_face.inference.frame_tee import FrameTee
from au_face.inference.overlay import OverlayStream
from au_face.inference.passes import (
    FRAME_INPUTS,
    InferenceRefiner,
    PipelineError,
    WindowStream,
    array_refiner,
    progress_bar,
)
from au_face.inference.process import RefinerProcess
from au_face.inference.result import ReconstructionResult, output_paths
from au_face.io.au_csv import AUCsvWriter
from au_face.io.meshes import MESH_FORMATS, NpzStreamWriter, write_frame_meshes
from au_face.io.sources import open_frames, sequence_name
from au_face.utils.files import make_work_folder
from au_face.viz import MESH_STYLES, OVERLAY_MAX_SIDE
from au_face.viz.overlay import overlay_size

if TYPE_CHECKING:
    from au_face.faces.topology import FaceTopology


class TopologyMismatchError(AUFaceError, ValueError):
    """The refiner was trained on a different mesh topology than the reconstructor produces."""


def _coarse_pass(
    source: Path,
    reconstructor: CoarseReconstructor,
    store: FrameStore,
    stride: int,
    max_frames: int | None,
    expected: int | None,
    progress: bool,
    fields: tuple[str, ...],
    on_chunk: Callable[[int, float], None],
    frame_rate: float | None = None,
    tee: FrameTee | None = None,
) -> tuple[float, np.ndarray, int]:
    """Pass 1: stream coarse chunks into ``store``; return fps, the mean shape and the valid-frame count.

    Only ``fields`` are stored; ``on_chunk(rows, fps)`` is called after each chunk with the number
    of frames stored so far; the decoded frames go to ``tee`` (closed at the end). Raises ``NoFaceError`` (from
    :func:`~au_face.coarse.stream.reconstruct_video_arrays`) when no frame has a face.
    """
    num_vertices = reconstructor.topology.num_vertices
    shape_sum = np.zeros((num_vertices, 3), dtype=np.float64)
    num_valid = 0
    fps = 0.0
    on_frame = None if tee is None else tee.add
    with progress_bar(expected, "coarse", progress) as bar:
        try:
            for arrays in reconstruct_video_arrays(
                source, reconstructor, stride=stride, max_frames=max_frames, fps=frame_rate, on_frame=on_frame
            ):
                fps = float(arrays["fps"])
                store.append_fields(arrays, fields)
                valid = arrays["valid"].astype(bool)
                shape_sum += arrays["vertices"][valid].sum(axis=0, dtype=np.float64)
                num_valid += int(valid.sum())
                bar.update(len(valid))
                on_chunk(store.shape("vertices")[0], fps)
                PendingSignal.reraise()  # a signal whose exception fell into a __del__ stops the run here
        finally:
            if tee is not None:
                tee.close()
    reference = (shape_sum / max(num_valid, 1)).astype(np.float32)
    return fps, reference, num_valid


def _write_npz(
    path: Path,
    store: FrameStore,
    triangles: np.ndarray,
    reference: np.ndarray,
    frames: np.ndarray,
    fps: float,
    topology: str,
    aus: list[int],
) -> None:
    """The mesh-sequence npz, streamed from the store (``vertices`` is the final mesh)."""
    refined = "refined" in store
    with NpzStreamWriter(path) as npz:
        final = "refined" if refined else "vertices"
        npz.add_chunks("vertices", store.shape(final), store.dtype(final), store.chunks(final))
        npz.add("triangles", triangles.astype(np.int64))
        for name in (
            "valid",
            "timestamps",
            "rotation",
            "translation",
            "scale",
            "landmarks2d",
            "expression",
            "confidence",
            SHOT_FIELD,  # each frame's shot, from reconstructors that find shot changes
        ):
            if name in store:
                npz.add_chunks(name, store.shape(name), store.dtype(name), store.chunks(name))
        npz.add("frames", frames)
        npz.add("reference", reference)
        npz.add("fps", np.asarray(fps))
        npz.add("topology", np.asarray(topology))
        npz.add("refined", np.asarray(refined))
        if refined:
            npz.add_chunks(
                "coarse_vertices", store.shape("vertices"), store.dtype("vertices"), store.chunks("vertices")
            )
            npz.add_chunks("au_probs", store.shape("au_probs"), np.float32, store.chunks("au_probs"))
            npz.add("aus", np.asarray(aus, dtype=np.int64))


def _write_csv(path: Path, store: FrameStore, frames: np.ndarray, aus: list[int], face_id: int) -> None:
    """The OpenFace-style CSV: pose and confidence for every frame, AUs when a model ran."""
    with AUCsvWriter(path, aus) as writer:
        for start in range(0, len(frames), STORE_CHUNK):
            stop = start + STORE_CHUNK
            valid = store.read("valid", start, stop)
            writer.write(
                frames[start:stop],
                store.read("timestamps", start, stop),
                valid,
                store.read("au_probs", start, stop) if aus else None,
                confidence=store.read("confidence", start, stop) if "confidence" in store else None,
                rotation=store.read("rotation", start, stop),
                translation=store.read("translation", start, stop),
                face_ids=np.full(len(valid), face_id),
            )


def _write_frame_meshes(
    directory: Path, store: FrameStore, triangles: np.ndarray, frames: np.ndarray, fmt: str
) -> None:
    final = "refined" if "refined" in store else "vertices"
    for start in range(0, len(frames), STORE_CHUNK):
        stop = start + STORE_CHUNK
        write_frame_meshes(
            directory,
            store.read(final, start, stop),
            triangles,
            fmt,
            valid=store.read("valid", start, stop),
            frames=frames[start:stop],
        )


def _replace_folder(new: Path, target: Path, old: Path) -> None:
    """Move the finished folder ``new`` onto ``target``; a folder already there is moved to ``old``
    (in the work folder, removed with it)."""
    if target.is_dir():
        target.rename(old)
    new.rename(target)


def _remove(paths: Iterable[Path]) -> None:
    """Delete output files and folders (those of a run that failed)."""
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def frame_inputs_of(refiner: InferenceRefiner | RefinerProcess | None) -> tuple[str, ...]:
    """The optional per-frame fields (:data:`~au_face.inference.passes.FRAME_INPUTS`) the refiner reads:
    none without one; all of them from a refiner whose needs are not known (a process still loading)."""
    if refiner is None:
        return ()
    if isinstance(refiner, RefinerProcess):
        refiner.check()
        return refiner.frame_inputs
    return array_refiner(refiner).frame_inputs


@contextmanager
def only_inputs(reconstructor: CoarseReconstructor, inputs: tuple[str, ...]) -> Iterator[None]:
    """Meanwhile, a reconstructor makes face crops (``crop_size``; warping them cost 0.5 ms a frame on
    the thread that tracks) and appearance descriptors (``appearance``) only where ``inputs`` name them."""
    size = getattr(reconstructor, "crop_size", 0)
    appearance = getattr(reconstructor, "appearance", None)
    if size and "crops" not in inputs:
        reconstructor.crop_size = 0
    if appearance is not None:
        reconstructor.appearance = "appearance" in inputs
    try:
        yield
    finally:
        if size:
            reconstructor.crop_size = size
        if appearance is not None:
            reconstructor.appearance = appearance


def check_refiner(
    refiner: InferenceRefiner | RefinerProcess | None, topology: FaceTopology, reconstructor: str, wait: bool
) -> None:
    """Raise :class:`TopologyMismatchError` if ``refiner`` was trained on another topology.

    A :class:`~au_face.inference.process.RefinerProcess` still loading is checked only with ``wait``
    (else its loading error, if it has already failed, is raised: a bad checkpoint stops pass 1 early).
    """
    if isinstance(refiner, RefinerProcess) and not (refiner.check() or wait):
        return
    if refiner is not None and refiner.topology_name != topology.name:
        raise TopologyMismatchError(
            f"checkpoint was trained on topology {refiner.topology_name!r}, the {reconstructor} reconstructor gives {topology.name!r}"
        )


def reconstruct(
    source: str | Path,
    out_dir: str | Path,
    reconstructor: CoarseReconstructor,
    refiner: InferenceRefiner | RefinerProcess | None = None,
    mesh_format: str | None = None,
    overlay: bool = True,
    stride: int = 1,
    max_frames: int | None = None,
    progress: bool = True,
    refine_threads: int | None = 1,
    name: str | None = None,
    fps: float | None = None,
    overlay_style: str = "wire",
    overlay_max_side: int | None = OVERLAY_MAX_SIDE,
    face_id: int = 0,
) -> ReconstructionResult:
    """Reconstruct every processed frame of one input and write the results to ``out_dir``.

    ``source`` is a video, an image or a folder of image frames (see :mod:`au_face.io.sources`).
    Files are named ``<name>_...`` (default: the input's name). Always writes ``<name>_meshes.npz``
    (final and, with a refiner, coarse canonical vertices, pose, validity, confidence,
    timestamps, ``S̄``) and ``<name>_aus.csv`` (pose and confidence; with a ``refiner`` also AU
    probabilities, plotted in ``<name>_aus.png``). ``mesh_format`` ("obj"/"ply") adds one canonical
    mesh per frame with a face under ``<name>_meshes/``; ``overlay`` adds ``<name>_overlay.mp4``, its
    mesh drawn in ``overlay_style`` (:data:`~au_face.viz.MESH_STYLES`), its picture scaled down to
    ``overlay_max_side`` pixels on its longer side (None or 0: the frames' size).
    ``refiner`` may be a :class:`~au_face.inference.process.RefinerProcess` still loading: it is
    waited for after pass 1. The refinement runs as the frames arrive (:class:`~au_face.inference.passes.WindowStream`);
    ``refine_threads`` is torch's thread count while refining. ``fps`` is the frame rate of image
    frames (default :data:`~au_face.video.DEFAULT_FPS`, with a warning); a video has its own.
    ``face_id`` fills the CSV's column (the face's number where a video's faces are reconstructed one by one).
    """
    start_time = time.perf_counter()
    source = Path(source)
    name = name or sequence_name(source)
    if mesh_format is not None and mesh_format not in MESH_FORMATS:
        raise PipelineError(f"unknown mesh format {mesh_format!r}; choose from {', '.join(MESH_FORMATS)}")
    if overlay_style not in MESH_STYLES:
        raise PipelineError(f"unknown overlay style {overlay_style!r}; choose from {', '.join(MESH_STYLES)}")
    topology = reconstructor.topology
    check_refiner(refiner, topology, reconstructor.name, wait=False)
    frame_rate = fps  # of image frames; ``fps`` becomes the frame rate read
    with open_frames(source, stride=stride, max_frames=max_frames, fps=frame_rate) as reader:
        expected, frame_size = reader.num_frames, reader.size
    if expected is not None:
        expected = -(-expected // stride)
        expected = expected if max_frames is None else min(expected, max_frames)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = output_paths(name, out_dir)
    timings: dict[str, float] = {}
    work = make_work_folder(out_dir, name)  # and removes those of killed runs
    stream: OverlayStream | None = None
    written: dict[str, Path] = {}  # outputs published by this run
    # the frames pass 1 decodes, kept for the overlay at its picture's size
    picture = overlay_size(frame_size, overlay_max_side) if overlay else frame_size
    tee = FrameTee(size=picture) if overlay else None
    try:
        store = FrameStore(work)

        def start_overlay(final: str, aus: list[int]) -> OverlayStream:
            return OverlayStream(
                paths["overlay"],
                source,
                store,
                final,
                topology.triangles,
                aus,
                stride,
                max_frames,
                progress,
                frame_rate,
                overlay_style,
                tee,
                picture,
            )

        windows: WindowStream | None = None  # the in-process refinement

        def refine_stored(rows: int, final: bool = False) -> tuple[np.ndarray, list[int]] | None:
            """Refine what the first ``rows`` stored frames allow (all, with ``final``)."""
            nonlocal windows
            if isinstance(refiner, RefinerProcess):
                return refiner.stored(store, refine_threads, rows, on_rows, final)
            windows = windows or WindowStream(refiner, store, refine_threads, on_rows, progress=progress)
            windows.advance(rows, final)
            return (windows.reference, windows.aus) if final else None

        def coarse_stored(rows: int, fps: float) -> None:
            check_refiner(refiner, topology, reconstructor.name, wait=False)  # a loading error stops pass 1
            if refiner is not None:
                refine_stored(rows)
            elif stream is not None:
                stream.ready(rows)

        def refined_stored(rows: int, aus: list[int]) -> None:
            nonlocal stream
            stream = stream or start_overlay("refined", aus)
            stream.ready(rows)

        on_rows = refined_stored if overlay else None
        if overlay and refiner is None:  # the final meshes are the coarse ones: draw them as they come
            stream = start_overlay("vertices", [])
        tick = time.perf_counter()
        inputs = frame_inputs_of(refiner)
        fields = tuple(f for f in (*FRAME_FIELDS, SHOT_FIELD) if f not in FRAME_INPUTS or f in inputs)
        with only_inputs(reconstructor, inputs):
            fps, reference, num_valid = _coarse_pass(
                source,
                reconstructor,
                store,
                stride,
                max_frames,
                expected,
                progress,
                fields,
                coarse_stored,
                frame_rate,
                tee,
            )
        timings["coarse"] = time.perf_counter() - tick
        num_frames = store.shape("vertices")[0]
        frames = np.arange(num_frames, dtype=np.int64) * stride + 1
        aus: list[int] = []
        tick = time.perf_counter()
        check_refiner(refiner, topology, reconstructor.name, wait=True)
        timings["model_wait"] = time.perf_counter() - tick
        tick = time.perf_counter()
        if refiner is not None:
            reference, aus = refine_stored(num_frames, final=True)
            timings["refine_tail"] = time.perf_counter() - tick

        tick = time.perf_counter()
        _write_npz(paths["meshes"], store, topology.triangles, reference, frames, fps, topology.name, aus)
        written["meshes"] = paths["meshes"]
        _write_csv(paths["au_csv"], store, frames, aus, face_id)
        written["au_csv"] = paths["au_csv"]
        if mesh_format is not None:  # all files or none: written in the work folder, then moved
            _write_frame_meshes(work / "frame_meshes", store, topology.triangles, frames, mesh_format)
            _replace_folder(work / "frame_meshes", paths["frame_meshes"], work / "old_frame_meshes")
            written["frame_meshes"] = paths["frame_meshes"]
        timings["write"] = time.perf_counter() - tick
        if refiner is not None:
            from au_face.viz.au_tracks import plot_au_tracks

            tick = time.perf_counter()
            plot_au_tracks(paths["au_csv"], paths["au_plot"], title=f"{source.name}: AU probabilities")
            written["au_plot"] = paths["au_plot"]
            timings["plot"] = time.perf_counter() - tick
        if overlay:
            tick = time.perf_counter()
            stream = stream or start_overlay("refined" if refiner is not None else "vertices", aus)
            stream.finish(num_frames)
            written["overlay"] = paths["overlay"]
            timings["overlay_wait"] = time.perf_counter() - tick
    except BaseException:
        if stream is not None:
            stream.cancel()
        _remove(written.values())  # no half-written set of outputs
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    timings["total"] = time.perf_counter() - start_time
    return ReconstructionResult(written, num_frames, num_valid, timings, refined=refiner is not None, name=name)


__all__ = ["TopologyMismatchError", "check_refiner", "reconstruct"]
