"""Video in, reconstruction out: coarse meshes, optional AU-aware refinement, files on disk.

Memory stays flat in the video length. Pass 1 streams frames through the coarse
reconstructor and appends every per-frame field to raw files in a work folder, keeping only a
running sum for ``S̄``. Pass 2 (with a refiner) reads overlapping windows back from there and
appends the stitched refinement. The outputs are then written chunk by chunk, and the overlay
video is a third streaming pass over the frames.
"""

from __future__ import annotations

import pickle
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from tqdm import tqdm

from au_face.coarse.base import CoarseFrames, CoarseReconstructor
from au_face.coarse.stream import FRAME_FIELDS, FrameStore, reconstruct_video
from au_face.errors import AUFaceError
from au_face.fileutil import make_work_folder
from au_face.io import MESH_FORMATS, AUCsvWriter, AUTable, NpzStreamWriter, write_frame_meshes

#: Per-frame inputs only the refiner reads (not stored when there is none).
_REFINER_INPUTS = ("crops", "features")
#: Frames per read when streaming from the work store.
_CHUNK = 256


class TopologyMismatchError(AUFaceError, ValueError):
    """The refiner was trained on a different mesh topology than the reconstructor produces."""


class PipelineError(AUFaceError, RuntimeError):
    """A refiner or reconstructor returned something inconsistent."""


class Refinement(Protocol):
    """What :meth:`Refiner.refine` returns for a clip of ``T`` frames."""

    vertices: torch.Tensor  # [T,V,3] refined canonical vertices
    au_probs: torch.Tensor  # [T,K]
    aus: list[int]


class Refiner(Protocol):
    """The inference side of a trained model (``AUFaceTask``)."""

    clip_length: int
    topology_name: str

    def refine(self, coarse: CoarseFrames, reference: torch.Tensor | None = None) -> Refinement:
        """Refine one clip; ``reference`` is ``S̄`` of the whole video."""
        ...


@dataclass
class ReconstructionResult:
    """Where the outputs went and how long each stage took (seconds)."""

    paths: dict[str, Path]
    num_frames: int
    num_valid: int
    timings: dict[str, float] = field(default_factory=dict)
    refined: bool = False

    def summary(self) -> str:
        """A few lines for the terminal."""
        lines = [f"{self.num_frames} frames, face found in {self.num_valid}"]
        names = {
            "meshes": "mesh sequence (npz)",
            "au_csv": "AU probabilities (csv)",
            "au_plot": "AU tracks (png)",
            "frame_meshes": "per-frame meshes",
            "overlay": "overlay video",
        }
        lines += [f"  {names[key]:<24} {path}" for key, path in self.paths.items()]
        if not self.refined:
            lines.append("  AU probabilities and the refined mesh need a trained checkpoint (--ckpt)")
        total = self.timings.get("total", 0.0)
        if total > 0 and self.num_frames:
            lines.append(f"  {total:.1f} s in all, {self.num_frames / total:.1f} frames/s")
        return "\n".join(lines)


def load_refiner(checkpoint: str | Path) -> Refiner:
    """Load a trained ``AUFaceTask`` checkpoint for inference (CPU, eval mode).

    Raises ``au_face.tasks.CheckpointError`` for a missing file or one that is not such a checkpoint.
    """
    from au_face.tasks import AUFaceTask, CheckpointError

    path = Path(checkpoint)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        task = AUFaceTask.load_from_checkpoint(path, map_location="cpu")
    except CheckpointError:
        raise
    except Exception as err:  # torch/pickle/Lightning raise many types for a foreign or broken file
        if isinstance(err, (pickle.UnpicklingError, EOFError)):
            reason = "not a readable PyTorch checkpoint file"
        else:
            reason = f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0]}"
        raise CheckpointError(f"{path} is not an au_face AUFaceTask checkpoint ({reason})") from err
    return task.eval()


def plan_windows(num_frames: int, length: int, overlap: int) -> list[tuple[int, int]]:
    """Windows ``(start, stop)`` of ``length`` frames covering ``num_frames``, consecutive ones
    overlapping by at least ``overlap`` frames (one shorter window if the video is shorter)."""
    if length < 1:
        raise PipelineError(f"clip length must be positive, got {length}")
    if num_frames <= length:
        return [(0, num_frames)]
    hop = max(1, length - overlap)
    starts = [*range(0, num_frames - length, hop), num_frames - length]
    return [(s, s + length) for s in starts]


def _progress(total: int | None, desc: str, enabled: bool) -> tqdm:
    return tqdm(total=total, desc=desc, unit="frame", leave=False, disable=not (enabled and sys.stderr.isatty()))


def _coarse_pass(
    video_path: Path,
    reconstructor: CoarseReconstructor,
    store: FrameStore,
    stride: int,
    max_frames: int | None,
    expected: int | None,
    progress: bool,
    fields: tuple[str, ...],
) -> tuple[float, np.ndarray, int]:
    """Pass 1: stream coarse chunks into ``store``; return fps, ``S̄`` and the valid-frame count.

    Only ``fields`` are stored. Raises ``NoFaceError`` (from
    :func:`~au_face.coarse.stream.reconstruct_video`) when no frame has a face.
    """
    num_vertices = reconstructor.topology.num_vertices
    shape_sum = np.zeros((num_vertices, 3), dtype=np.float64)
    num_valid = 0
    fps = 0.0
    with _progress(expected, "coarse", progress) as bar:
        for chunk in reconstruct_video(video_path, reconstructor, stride=stride, max_frames=max_frames):
            fps = chunk.fps
            arrays = chunk.to_numpy()
            store.append_fields(arrays, fields)
            valid = arrays["valid"].astype(bool)
            shape_sum += arrays["vertices"][valid].sum(axis=0, dtype=np.float64)
            num_valid += int(valid.sum())
            bar.update(len(chunk))
    reference = (shape_sum / max(num_valid, 1)).astype(np.float32)
    return fps, reference, num_valid


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def refine_windows(
    refiner: Refiner,
    store: FrameStore,
    reference: np.ndarray,
    fps: float,
    topology: str,
    overlap: int | None,
    progress: bool,
    threads: int | None = 1,
) -> list[int]:
    """Pass 2: refine overlapping windows of ``store`` and append ``refined``/``au_probs`` rows in time order.

    Where two windows overlap their outputs are cross-faded linearly, so each window's edge
    frames (least temporal context) get the least weight and no seam appears. Only one window
    and one overlap are in memory at a time. ``threads`` caps torch's intra-op threads meanwhile
    (None: leave as is); one clip is a small batch, where extra threads mostly wait on each other.
    Returns the AU numbers.
    """
    num_frames = store.shape("vertices")[0]
    length = int(refiner.clip_length)
    windows = plan_windows(num_frames, length, length // 4 if overlap is None else overlap)
    ref = torch.from_numpy(reference)
    aus: list[int] = []
    pending: list[np.ndarray] = []  # previous window's rows from this window's start on
    with _progress(num_frames, "refine", progress) as bar, _torch_threads(threads):
        for i, (start, stop) in enumerate(windows):
            clip = store.coarse(start, stop, fps, topology)
            with torch.inference_mode():
                out = refiner.refine(clip, reference=ref)
            vertices = out.vertices.detach().float().cpu().numpy()
            probs = out.au_probs.detach().float().cpu().numpy()
            aus = [int(a) for a in out.aus]
            if vertices.shape != tuple(clip.vertices.shape) or probs.shape != (len(clip), len(aus)):
                raise PipelineError(
                    f"refiner returned vertices {vertices.shape} and AU probabilities {probs.shape} "
                    f"for a clip of {tuple(clip.vertices.shape)} and {len(aus)} AUs"
                )
            valid = clip.valid.numpy()
            rows = [
                np.where(valid[:, None, None], vertices, clip.vertices.numpy()),
                np.where(valid[:, None], probs, np.nan),
            ]
            if pending:
                n = len(pending[0])
                ramp = np.arange(1, n + 1, dtype=np.float32) / (n + 1)
                for new, old in zip(rows, pending):
                    w = ramp.reshape(-1, *[1] * (new.ndim - 1))
                    new[:n] = (1 - w) * old + w * new[:n]
            keep = (windows[i + 1][0] if i + 1 < len(windows) else stop) - start
            store.append("refined", rows[0][:keep].astype(np.float32))
            store.append("au_probs", rows[1][:keep].astype(np.float32))
            pending = [r[keep:] for r in rows]
            bar.update(keep)
    return aus


def _write_npz(
    path: Path, store: FrameStore, triangles: np.ndarray, reference: np.ndarray, frames: np.ndarray,
    fps: float, topology: str, aus: list[int],
) -> None:
    """The mesh-sequence npz, streamed from the store (``vertices`` is the final mesh)."""
    refined = "refined" in store
    with NpzStreamWriter(path) as npz:
        final = "refined" if refined else "vertices"
        npz.add_chunks("vertices", store.shape(final), store.dtype(final), store.chunks(final))
        npz.add("triangles", triangles.astype(np.int64))
        for name in ("valid", "timestamps", "rotation", "translation", "scale", "landmarks2d", "expression"):
            if name in store:
                npz.add_chunks(name, store.shape(name), store.dtype(name), store.chunks(name))
        npz.add("frames", frames)
        npz.add("reference", reference)
        npz.add("fps", np.asarray(fps))
        npz.add("topology", np.asarray(topology))
        npz.add("refined", np.asarray(refined))
        if refined:
            npz.add_chunks("coarse_vertices", store.shape("vertices"), store.dtype("vertices"), store.chunks("vertices"))
            npz.add_chunks("au_probs", store.shape("au_probs"), np.float32, store.chunks("au_probs"))
            npz.add("aus", np.asarray(aus, dtype=np.int64))


def _write_csv(path: Path, store: FrameStore, frames: np.ndarray, aus: list[int]) -> None:
    with AUCsvWriter(path, aus) as writer:
        for start in range(0, len(frames), _CHUNK):
            stop = start + _CHUNK
            writer.write(
                frames[start:stop],
                store.read("timestamps", start, stop),
                store.read("valid", start, stop),
                store.read("au_probs", start, stop),
            )


def _write_frame_meshes(directory: Path, store: FrameStore, triangles: np.ndarray, frames: np.ndarray, fmt: str) -> None:
    final = "refined" if "refined" in store else "vertices"
    for start in range(0, len(frames), _CHUNK):
        stop = start + _CHUNK
        write_frame_meshes(
            directory, store.read(final, start, stop), triangles, fmt,
            valid=store.read("valid", start, stop), frames=frames[start:stop],
        )


def _write_overlay(
    path: Path, video_path: Path, store: FrameStore, triangles: np.ndarray, aus: list[int],
    stride: int, max_frames: int | None, progress: bool,
) -> None:
    """Pass 3: draw the posed (refined) mesh and AU bars on every processed frame."""
    from au_face.render import OverlayWriter
    from au_face.video import VideoReader

    final = "refined" if "refined" in store else "vertices"
    num_frames = store.shape("vertices")[0]
    with VideoReader(video_path, stride=stride, max_frames=max_frames) as reader, _progress(
        num_frames, "overlay", progress
    ) as bar, OverlayWriter(path, reader.fps / stride, reader.size, triangles, aus or None) as writer:
        rows: dict[str, np.ndarray] = {}
        for i, frame in enumerate(reader):
            if i >= num_frames:
                break
            if i % _CHUNK == 0:
                rows = {n: store.read(n, i, i + _CHUNK) for n in (final, "valid", "rotation", "translation", "scale")}
                if aus:
                    rows["au_probs"] = store.read("au_probs", i, i + _CHUNK)
            j = i % _CHUNK
            posed = None
            if rows["valid"][j]:
                posed = rows["scale"][j] * rows[final][j] @ rows["rotation"][j].T + rows["translation"][j]
            writer.write(frame.rgb, posed, rows["au_probs"][j] if aus else None, frame.timestamp)
            bar.update(1)
        written = writer.frames_written
    if written != num_frames:
        raise PipelineError(f"overlay: the video gave {written} frames on the second read, {num_frames} on the first")


def _au_table(store: FrameStore, frames: np.ndarray, aus: list[int]) -> AUTable:
    """The per-frame AU output as arrays (``[T,K]``, small) for the summary figure."""
    probs = store.read("au_probs", 0, len(frames)).astype(np.float64)
    valid = store.read("valid", 0, len(frames)).astype(bool)
    return AUTable(
        frames=frames,
        timestamps=store.read("timestamps", 0, len(frames)).astype(np.float64),
        success=valid,
        aus=aus,
        probs=probs,
        occurrence=np.where(np.isnan(probs), -1, probs >= 0.5).astype(np.int8),
        confidence=valid.astype(np.float64),
    )


def output_paths(video_path: str | Path, out_dir: str | Path) -> dict[str, Path]:
    """The file names ``reconstruct`` uses for a video (prefixed with its stem)."""
    stem, out = Path(video_path).stem, Path(out_dir)
    return {
        "meshes": out / f"{stem}_meshes.npz",
        "au_csv": out / f"{stem}_aus.csv",
        "au_plot": out / f"{stem}_aus.png",
        "frame_meshes": out / f"{stem}_meshes",
        "overlay": out / f"{stem}_overlay.mp4",
    }


def reconstruct(
    video_path: str | Path,
    out_dir: str | Path,
    reconstructor: CoarseReconstructor,
    refiner: Refiner | None = None,
    mesh_format: str | None = None,
    overlay: bool = True,
    stride: int = 1,
    max_frames: int | None = None,
    progress: bool = True,
    overlap: int | None = None,
    refine_threads: int | None = 1,
) -> ReconstructionResult:
    """Reconstruct every processed frame of a video and write the results to ``out_dir``.

    Always writes ``<stem>_meshes.npz`` (final and, with a refiner, coarse canonical vertices,
    pose, validity, timestamps, ``S̄``). With a ``refiner`` also ``<stem>_aus.csv`` and
    ``<stem>_aus.png``. ``mesh_format`` ("obj"/"ply") adds one canonical mesh per frame with a
    face under ``<stem>_meshes/``; ``overlay`` adds ``<stem>_overlay.mp4``. Windows of
    ``refiner.clip_length`` frames overlap by ``overlap`` frames (default a quarter window);
    ``refine_threads`` is torch's thread count while refining (see :func:`refine_windows`).
    """
    from au_face.video import VideoReader

    start_time = time.perf_counter()
    video_path = Path(video_path)
    if mesh_format is not None and mesh_format not in MESH_FORMATS:
        raise PipelineError(f"unknown mesh format {mesh_format!r}; choose from {', '.join(MESH_FORMATS)}")
    topology = reconstructor.topology
    if refiner is not None and refiner.topology_name != topology.name:
        raise TopologyMismatchError(
            f"checkpoint was trained on topology {refiner.topology_name!r}, "
            f"the {reconstructor.name} reconstructor gives {topology.name!r}"
        )
    with VideoReader(video_path, stride=stride, max_frames=max_frames) as reader:
        expected = reader.num_frames
    if expected is not None:
        expected = -(-expected // stride)
        expected = expected if max_frames is None else min(expected, max_frames)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = output_paths(video_path, out_dir)
    timings: dict[str, float] = {}
    work = make_work_folder(out_dir, video_path.stem)  # and removes those of killed runs
    try:
        store = FrameStore(work)
        tick = time.perf_counter()
        fields = FRAME_FIELDS if refiner is not None else tuple(f for f in FRAME_FIELDS if f not in _REFINER_INPUTS)
        fps, reference, num_valid = _coarse_pass(
            video_path, reconstructor, store, stride, max_frames, expected, progress, fields
        )
        timings["coarse"] = time.perf_counter() - tick
        num_frames = store.shape("vertices")[0]
        frames = np.arange(num_frames, dtype=np.int64) * stride + 1
        aus: list[int] = []
        if refiner is not None:
            tick = time.perf_counter()
            aus = refine_windows(refiner, store, reference, fps, topology.name, overlap, progress, refine_threads)
            timings["refine"] = time.perf_counter() - tick

        tick = time.perf_counter()
        written = {"meshes": paths["meshes"]}
        _write_npz(paths["meshes"], store, topology.triangles, reference, frames, fps, topology.name, aus)
        if refiner is not None:
            _write_csv(paths["au_csv"], store, frames, aus)
            written["au_csv"] = paths["au_csv"]
        if mesh_format is not None:
            _write_frame_meshes(paths["frame_meshes"], store, topology.triangles, frames, mesh_format)
            written["frame_meshes"] = paths["frame_meshes"]
        timings["write"] = time.perf_counter() - tick
        if refiner is not None:
            from au_face.render import plot_au_tracks

            tick = time.perf_counter()
            plot_au_tracks(_au_table(store, frames, aus), paths["au_plot"], title=f"{video_path.name}: AU probabilities")
            written["au_plot"] = paths["au_plot"]
            timings["plot"] = time.perf_counter() - tick
        if overlay:
            tick = time.perf_counter()
            _write_overlay(paths["overlay"], video_path, store, topology.triangles, aus, stride, max_frames, progress)
            written["overlay"] = paths["overlay"]
            timings["overlay"] = time.perf_counter() - tick
    finally:
        shutil.rmtree(work, ignore_errors=True)
    timings["total"] = time.perf_counter() - start_time
    return ReconstructionResult(written, num_frames, num_valid, timings, refined=refiner is not None)


__all__ = [
    "FrameStore",
    "PipelineError",
    "ReconstructionResult",
    "Refinement",
    "Refiner",
    "TopologyMismatchError",
    "load_refiner",
    "output_paths",
    "plan_windows",
    "reconstruct",
    "refine_windows",
]
