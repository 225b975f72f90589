"""What the in-process pipeline and the refiner process share: the refiner's interface, its
``S̄`` estimate from a work store, and pass 2, the refinement of sliding windows read from the store."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

import numpy as np
import torch
from tqdm import tqdm

from au_face.coarse.base import CoarseFrames
from au_face.coarse.stream import FrameStore
from au_face.errors import AUFaceError
from au_face.model.refiner import Refinement
from au_face.model.windows import SlidingWindow


class PipelineError(AUFaceError, RuntimeError):
    """A refiner or reconstructor returned something inconsistent."""


class Refiner(Protocol):
    """The inference side of a trained model (:class:`~au_face.model.refiner.AUFaceRefiner`, or the task training one)."""

    clip_length: int
    topology_name: str

    def refine(self, coarse: CoarseFrames, reference: torch.Tensor | None = None) -> Refinement:
        """Refine one clip; ``reference`` is ``S̄`` of the whole video."""
        ...

    def reference(self, coarse: CoarseFrames) -> torch.Tensor:
        """``S̄ [V,3]`` of a video's frames, as the model was trained to use it."""
        ...


def progress_bar(total: int | None, desc: str, enabled: bool) -> tqdm:
    """A frame progress bar, shown only when ``enabled`` and stderr is a terminal."""
    return tqdm(total=total, desc=desc, unit="frame", leave=False, disable=not (enabled and sys.stderr.isatty()))


#: Frames, evenly spaced over the video, from which the refiner estimates S̄ (memory stays flat).
REFERENCE_FRAMES = 256


def person_reference(refiner: Refiner, store: FrameStore, fps: float, topology: str) -> np.ndarray:
    """``S̄`` of the video in ``store`` as the refiner computes it, from at most
    :data:`REFERENCE_FRAMES` evenly spaced frames."""
    num_frames = store.shape("vertices")[0]
    picks = np.unique(np.linspace(0, num_frames - 1, min(num_frames, REFERENCE_FRAMES)).round().astype(np.int64))
    vertices = np.concatenate([store.read("vertices", i, i + 1) for i in picks])
    valid = np.concatenate([store.read("valid", i, i + 1) for i in picks]).astype(bool)
    sample = CoarseFrames.from_canonical(torch.from_numpy(vertices).float(), torch.from_numpy(valid), fps, topology)
    return refiner.reference(sample).detach().float().cpu().numpy()


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Cap torch's intra-op threads at ``threads`` meanwhile (None: leave as is)."""
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
    progress: bool,
    threads: int | None = 1,
    on_rows: Callable[[int, list[int]], None] | None = None,
) -> list[int]:
    """Pass 2: refine the windows of :class:`~au_face.model.windows.SlidingWindow` read from ``store`` and
    append ``refined``/``au_probs`` rows in time order.

    Overlapping outputs are blended as in :meth:`AUFaceTask.refine <au_face.training.task.AUFaceTask.refine>`,
    so both give the same result. Only one window and one overlap are in memory at a time.
    Frames without a face keep their coarse mesh and get NaN probabilities. ``threads`` caps
    torch's intra-op threads meanwhile (None: leave as is); one clip is a small batch, where
    extra threads mostly wait on each other. ``on_rows(rows, aus)`` is called whenever rows were
    appended, with the number of refined frames so far and the AU numbers. Returns the AU numbers.
    """
    num_frames = store.shape("vertices")[0]
    ref = torch.from_numpy(reference)
    aus: list[int] = []
    window = SlidingWindow(int(refiner.clip_length))
    blend = window.blend()
    with progress_bar(num_frames, "refine", progress) as bar, torch_threads(threads):
        for start, stop in window.plan(num_frames):
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
            bar.update(_append_refined(store, blend.add(start, vertices, probs), on_rows, aus))
        bar.update(_append_refined(store, blend.finish(), on_rows, aus))
    return aus


def _append_refined(
    store: FrameStore, rows: list[np.ndarray], on_rows: Callable[[int, list[int]], None] | None, aus: list[int]
) -> int:
    """Append blended ``[vertices, probs]`` rows, with the coarse mesh and NaN where there is no face;
    then call ``on_rows`` with the number of refined frames and ``aus``."""
    if not rows:
        return 0
    vertices, probs = rows
    start = store.shape("refined")[0] if "refined" in store else 0
    stop = start + len(vertices)
    valid = store.read("valid", start, stop).astype(bool)
    store.append("refined", np.where(valid[:, None, None], vertices, store.read("vertices", start, stop)).astype(np.float32))
    store.append("au_probs", np.where(valid[:, None], probs, np.nan).astype(np.float32))
    if on_rows is not None:
        on_rows(stop, aus)
    return len(vertices)


__all__ = ["REFERENCE_FRAMES", "PipelineError", "Refiner", "person_reference", "progress_bar", "refine_windows", "torch_threads"]
