"""What the in-process pipeline and the refiner process share: the refiner's interface, its
``S̄`` estimate from a work store, and pass 2, the refinement of sliding windows read from the store."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Protocol

import numpy as np
from tqdm import tqdm

from au_face.coarse.base import SHOT_FIELD, CoarseFrames
from au_face.coarse.stream import FRAME_FIELDS, FrameStore
from au_face.errors import AUFaceError
from au_face.model.reference import ReferenceSchedule, bounded_update, fit_frames
from au_face.model.windows import SlidingWindow
from au_face.utils.lazy import lazy_module

if TYPE_CHECKING:
    import torch

    from au_face.model.refiner import Refinement
else:
    torch = lazy_module("torch")  # the parent of a refiner process tracks without it


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

    def refine_photos(self, photos: CoarseFrames) -> tuple[torch.Tensor, Refinement]:
        """Each frame on its own (unrelated photos): its S̄ ``[N,V,3]`` and its refinement, in one batch."""
        ...


#: Per-frame fields only some models read (stored and computed only for one): a video branch's crops or
#: features, an appearance head's descriptors.
FRAME_INPUTS = ("crops", "features", "appearance")


class ArrayRefiner(Protocol):
    """A refiner on NumPy arrays: what pass 2 and photo collections call. The NumPy refiner
    (:class:`~au_face.model.numpy_refiner.NumpyRefiner`, no torch) is one; :class:`TorchArrayRefiner`
    makes any :class:`Refiner` one. ``frames`` holds the coarse-frame fields
    (:data:`~au_face.coarse.stream.FRAME_FIELDS`) of clips stacked ``[B,T,...]`` or of photos ``[N,...]``."""

    clip_length: int
    topology_name: str
    aus: list[int]
    #: the optional per-frame fields it reads (of :data:`FRAME_INPUTS`)
    frame_inputs: tuple[str, ...]

    def fit_reference(self, vertices: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """``S̄ [V,3]`` of frames ``[T,V,3]`` (their ``valid [T]`` ones)."""
        ...

    def refine_windows(self, frames: dict[str, np.ndarray], reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Clips of equal length refined with one ``S̄``: vertices ``[B,T,V,3]`` and AU probabilities ``[B,T,K]``."""
        ...

    def refine_each(self, frames: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Unrelated photos: each one's ``S̄ [N,V,3]``, refined vertices ``[N,V,3]`` and AU probabilities ``[N,K]``."""
        ...


class TorchArrayRefiner:
    """A torch :class:`Refiner` as an :class:`ArrayRefiner`: arrays to :class:`CoarseFrames` and back, in
    inference mode, with torch's intra-op threads capped at ``threads`` meanwhile (None: as they are)."""

    def __init__(self, refiner: Refiner, threads: int | None = 1) -> None:
        self.refiner, self.threads = refiner, threads
        self.clip_length = int(refiner.clip_length)
        self.topology_name = refiner.topology_name
        self.aus: list[int] = [int(a) for a in getattr(refiner, "aus", [])]
        self.frame_inputs: tuple[str, ...] = tuple(getattr(refiner, "frame_inputs", FRAME_INPUTS))

    def fit_reference(self, vertices: np.ndarray, valid: np.ndarray) -> np.ndarray:
        sample = CoarseFrames.from_canonical(
            torch.from_numpy(np.ascontiguousarray(vertices)).float(),
            torch.from_numpy(np.asarray(valid, dtype=bool)),
            1.0,  # S̄ does not depend on the frame rate
            self.topology_name,
        )
        with torch.inference_mode(), torch_threads(self.threads):
            return self.refiner.reference(sample).detach().float().cpu().numpy()

    def refine_windows(self, frames: dict[str, np.ndarray], reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        clips = [self._frames({key: value[i] for key, value in frames.items()}) for i in range(len(frames["valid"]))]
        with torch.inference_mode(), torch_threads(self.threads):
            s_bar = torch.from_numpy(np.asarray(reference, dtype=np.float32))
            if hasattr(self.refiner, "refine_clips"):
                outs = self.refiner.refine_clips(clips, s_bar)
            else:
                outs = [self.refiner.refine(clip, reference=s_bar) for clip in clips]
        self.aus = [int(a) for a in outs[0].aus]
        vertices = np.stack([out.vertices.detach().float().cpu().numpy() for out in outs])
        return vertices, np.stack([out.au_probs.detach().float().cpu().numpy() for out in outs])

    def refine_each(self, frames: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with torch.inference_mode(), torch_threads(self.threads):
            reference, out = self.refiner.refine_photos(self._frames(frames))
        self.aus = [int(a) for a in out.aus]
        return reference.float().cpu().numpy(), out.vertices.float().cpu().numpy(), out.au_probs.float().cpu().numpy()

    def _frames(self, arrays: dict[str, np.ndarray]) -> CoarseFrames:
        fields = {key: value for key, value in arrays.items() if key not in ("fps", "topology")}
        return CoarseFrames.from_numpy({**fields, "fps": np.asarray(1.0), "topology": np.asarray(self.topology_name)})


#: What the inference pipelines take: a torch refiner (a loaded model, or the task training one) or a NumPy one.
InferenceRefiner = Refiner | ArrayRefiner


def array_refiner(refiner: Refiner | ArrayRefiner, threads: int | None = 1) -> ArrayRefiner:
    """``refiner`` itself if it works on arrays, else it wrapped in a :class:`TorchArrayRefiner`."""
    if hasattr(refiner, "refine_windows"):
        return refiner  # type: ignore[return-value]
    return TorchArrayRefiner(refiner, threads)


def progress_bar(total: int | None, desc: str, enabled: bool) -> tqdm:
    """A frame progress bar, shown only when ``enabled`` and stderr is a terminal."""
    return tqdm(total=total, desc=desc, unit="frame", leave=False, disable=not (enabled and sys.stderr.isatty()))


#: Windows refined in one call of the refiner (memory stays flat: 16 windows of 16 frames).
BATCH_WINDOWS = 16


def person_reference(refiner: ArrayRefiner, store: FrameStore, count: int | None = None) -> np.ndarray:
    """``S̄`` of the first ``count`` frames in ``store`` (default: all) as the refiner computes it, from
    at most :data:`~au_face.model.reference.REFERENCE_FRAMES` evenly spaced frames."""
    picks = fit_frames(store.shape("vertices")[0] if count is None else count)
    vertices = np.concatenate([store.read("vertices", i, i + 1) for i in picks])
    valid = np.concatenate([store.read("valid", i, i + 1) for i in picks]).astype(bool)
    return refiner.fit_reference(vertices.astype(np.float32), valid)


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


class WindowStream:
    """Pass 2 as the frames arrive: refine the windows of :class:`~au_face.model.windows.SlidingWindow`
    read from ``store`` and append ``refined``/``au_probs`` rows in time order.

    Call :meth:`advance` whenever more frames are stored, and once more with ``final`` when all
    are. A window is refined as soon as its frames are stored and it is sure to be in the final
    plan, with ``S̄`` from :class:`~au_face.model.reference.ReferenceSchedule` (or the fixed
    ``reference``), so the rows do not depend on when frames arrive. Where the reconstructor found
    shot changes (the store's :data:`~au_face.coarse.base.SHOT_FIELD`), each shot has windows of its
    own: no window spans a cut, so no frame is smoothed with another shot's. Overlapping outputs are
    blended as in :meth:`AUFaceRefiner.refine <au_face.model.refiner.AUFaceRefiner.refine>`, which
    gives the same result for a video without cuts. Windows go to the refiner's ``refine_windows``
    :data:`BATCH_WINDOWS` at a time (a torch refiner through :class:`TorchArrayRefiner`). Frames
    without a face keep their coarse mesh and get NaN probabilities. ``threads`` caps a torch
    refiner's intra-op threads while it refines (None: leave as is).
    ``on_rows(rows, aus)`` is called whenever rows were appended, with the number of refined frames
    so far and the AU numbers.
    """

    def __init__(
        self,
        refiner: Refiner | ArrayRefiner,
        store: FrameStore,
        threads: int | None = 1,
        on_rows: Callable[[int, list[int]], None] | None = None,
        reference: np.ndarray | None = None,
        progress: bool = False,
    ) -> None:
        self._refiner, self._store = array_refiner(refiner, threads), store
        self._on_rows, self._fixed = on_rows, reference
        self._window = SlidingWindow(int(refiner.clip_length))
        self._schedule = ReferenceSchedule()
        self._fits: dict[int, np.ndarray] = {}
        self._shots = [_Shot(0, self._window)]  # the first not finished, and those after it
        self._shots_read = 0  # frames whose shot number was read
        self._bar = progress_bar(None, "refine", progress)
        self.aus: list[int] = []
        self.finished = False

    @property
    def reference(self) -> np.ndarray | None:
        """The latest ``S̄`` used (None before the first window)."""
        if self._fixed is not None:
            return self._fixed
        return self._fits[max(self._fits)] if self._fits else None

    def advance(self, rows: int, final: bool = False) -> None:
        """``rows`` frames are stored (all of them with ``final``): refine every window that can be."""
        if self.finished:
            raise PipelineError("the refinement has finished")
        self._schedule.add(self._store.read("valid", self._schedule.frames, rows).astype(bool))
        for cut in self._cuts(rows):
            self._shots[-1].stop = cut
            self._shots.append(_Shot(cut, self._window))
        while self._shots:
            shot = self._shots[0]
            self._refine_shot(shot, rows, final)
            if not shot.finished:
                break
            self._shots.pop(0)
        if final:
            self._bar.close()
            self.finished = True

    def _cuts(self, rows: int) -> list[int]:
        """The first frames of the shots that begin among the stored frames up to ``rows`` not looked at before."""
        if SHOT_FIELD not in self._store or rows <= self._shots_read:
            return []
        first = max(self._shots_read - 1, 0)  # (from the last frame looked at: a cut may follow it)
        shots = self._store.read(SHOT_FIELD, first, rows)
        self._shots_read = rows
        return [first + 1 + int(i) for i in np.flatnonzero(np.diff(shots))]

    def _refine_shot(self, shot: _Shot, rows: int, final: bool) -> None:
        """Refine every window of ``shot`` that can be, its frames stored up to ``rows`` (all with ``final``)."""
        whole = shot.stop is not None or final  # every frame of the shot is stored
        length = (rows if shot.stop is None else shot.stop) - shot.start
        group: list[tuple[int, int]] = []
        group_fit: int | None = None
        for start, stop in shot.todo(length, whole):
            point = self._schedule.point_for(shot.start + stop, rows if final else None)
            if point is None and self._fixed is None:
                break
            if group and (point != group_fit or len(group) == BATCH_WINDOWS):
                self._refine(shot, group, group_fit)
                group = []
            group.append((start, stop))
            group_fit = point
        if group:
            self._refine(shot, group, group_fit)
        if whole and not shot.todo(length, whole):
            self._append(shot.blend.finish())
            shot.finished = True

    def _reference_at(self, point: int | None) -> np.ndarray:
        """``S̄`` of the fit on frames ``0..point`` (fitting it, and the earlier ones, if not done yet)."""
        if self._fixed is not None:
            return self._fixed
        if point is None:
            raise PipelineError("no fit of S̄ yet for this window")
        for count in [*self._schedule.points, point]:
            if count not in self._fits and count <= point:
                previous = self._fits[max(self._fits)] if self._fits else None
                fitted = person_reference(self._refiner, self._store, count)
                self._fits[count] = bounded_update(previous, fitted)
        return self._fits[point]

    def _refine(self, shot: _Shot, windows: list[tuple[int, int]], point: int | None) -> None:
        """Refine ``windows`` of ``shot`` (in plan order, frames from its start) with the ``S̄`` of fit
        ``point`` and blend them in."""
        reference = self._reference_at(point)
        frames = {
            name: np.stack([self._store.read(name, shot.start + start, shot.start + stop) for start, stop in windows])
            for name in FRAME_FIELDS
            if name in self._store
        }
        refined, probs = self._refiner.refine_windows(frames, reference)
        self.aus = [int(a) for a in self._refiner.aus]
        clips, length = frames["valid"].shape
        if refined.shape != frames["vertices"].shape or probs.shape != (clips, length, len(self.aus)):
            raise PipelineError(
                f"refiner returned vertices {refined.shape} and AU probabilities {probs.shape} "
                f"for clips of {frames['vertices'].shape} and {len(self.aus)} AUs"
            )
        for (start, _), clip_vertices, clip_probs in zip(windows, refined, probs):
            self._append(shot.blend.add(start, clip_vertices, clip_probs))
            shot.done += 1

    def _append(self, rows: list[np.ndarray]) -> None:
        """Append blended ``[vertices, probs]`` rows, with the coarse mesh and NaN where there is no face;
        then call ``on_rows``."""
        if not rows:
            return
        vertices, probs = rows
        store = self._store
        start = store.shape("refined")[0] if "refined" in store else 0
        stop = start + len(vertices)
        valid = store.read("valid", start, stop).astype(bool)
        store.append(
            "refined", np.where(valid[:, None, None], vertices, store.read("vertices", start, stop)).astype(np.float32)
        )
        store.append("au_probs", np.where(valid[:, None], probs, np.nan).astype(np.float32))
        self._bar.update(len(vertices))
        if self._on_rows is not None:
            self._on_rows(stop, self.aus)


class _Shot:
    """One shot's windows in :class:`WindowStream`: its frames ``start..stop`` of the store (``stop``
    None while it goes on), the windows refined so far and their blend."""

    def __init__(self, start: int, window: SlidingWindow) -> None:
        self.start, self.window = start, window
        self.stop: int | None = None
        self.blend = window.blend()
        self.done = 0  # windows refined
        self.finished = False

    def todo(self, length: int, whole: bool) -> list[tuple[int, int]]:
        """The windows not refined yet (frames from the shot's start) that are sure to be in its plan,
        ``length`` of its frames stored (all of them if ``whole``)."""
        if whole:
            return self.window.plan(length)[self.done :]
        hop, size = self.window.hop, self.window.length
        return [(s, s + size) for s in range(self.done * hop, max(length - size, 0), hop)]


def refine_photos(
    refiner: Refiner | ArrayRefiner, arrays: dict[str, np.ndarray], threads: int | None = 1
) -> dict[str, np.ndarray]:
    """Photos on their own (:meth:`ArrayRefiner.refine_each`) from their coarse frames' arrays stacked
    (:meth:`CoarseFrames.to_numpy` fields): each one's ``reference`` (S̄; zeros without a face),
    ``vertices`` (refined; coarse without a face), ``au_probs`` (NaN without a face), and ``aus``."""
    refiner = array_refiner(refiner, threads)
    reference, vertices, probs = refiner.refine_each(arrays)
    valid = arrays["valid"].astype(bool)
    return {
        "reference": np.where(valid[:, None, None], reference, 0.0).astype(np.float32),
        "vertices": vertices.astype(np.float32),
        "au_probs": np.where(valid[:, None], probs, np.nan).astype(np.float32),
        "aus": np.asarray(refiner.aus, dtype=np.int64),
    }


def refine_windows(
    refiner: Refiner | ArrayRefiner,
    store: FrameStore,
    reference: np.ndarray | None,
    progress: bool,
    threads: int | None = 1,
    on_rows: Callable[[int, list[int]], None] | None = None,
) -> list[int]:
    """Pass 2 over a store that holds all frames (:class:`WindowStream` in one step); ``reference``
    is ``S̄`` for every window, None for the schedule. Returns the AU numbers."""
    stream = WindowStream(refiner, store, threads, on_rows, reference, progress)
    stream.advance(store.shape("vertices")[0], final=True)
    return stream.aus


__all__ = [
    "BATCH_WINDOWS",
    "FRAME_INPUTS",
    "ArrayRefiner",
    "InferenceRefiner",
    "PipelineError",
    "Refiner",
    "TorchArrayRefiner",
    "WindowStream",
    "array_refiner",
    "person_reference",
    "progress_bar",
    "refine_photos",
    "refine_windows",
    "torch_threads",
]
