"""Run a coarse reconstructor over a whole video, chunk by chunk, with flat memory use."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from au_face.coarse.base import OPTIONAL_FIELDS, CoarseFrames, CoarseReconstructor
from au_face.errors import AUFaceError
from au_face.io.meshes import NpzStreamWriter
from au_face.io.sources import FrameReader, open_frames
from au_face.io.video import VideoFrame, iter_chunks
from au_face.utils.concurrency import read_ahead

#: Per-frame fields of :class:`CoarseFrames`, in file order.
FRAME_FIELDS = ("vertices", "valid", "rotation", "translation", "scale", "landmarks2d", "timestamps", *OPTIONAL_FIELDS)


class NoFaceError(AUFaceError, ValueError):
    """No frame of a video has a face."""


@dataclass(frozen=True)
class CoarseSummary:
    """What :func:`reconstruct_video_to_file` did: counts and timing, not the arrays.

    ``truncated`` is True when the file decoded clearly fewer frames than its container states.
    """

    video: Path
    path: Path
    num_frames: int
    num_valid: int
    fps: float
    topology: str
    truncated: bool
    seconds: float

    @property
    def ms_per_frame(self) -> float:
        return 1000.0 * self.seconds / max(self.num_frames, 1)


def _no_face_message(path: Path, num_frames: int, stride: int) -> str:
    step = f" (every {stride}th frame)" if stride > 1 else ""
    return (
        f"{path}: no face found in any of the {num_frames} frames read{step}; the face may be too small, "
        "turned away or occluded"
    )


def _chunks(reader: FrameReader, reconstructor: CoarseReconstructor, chunk_size: int) -> Iterator[CoarseFrames]:
    """The reconstructor's output for consecutive chunks; frames are decoded ahead in a thread."""
    reconstructor.reset()
    for chunk in iter_chunks(read_ahead(reader), chunk_size):
        yield reconstructor.reconstruct([f.rgb for f in chunk], [f.timestamp for f in chunk], reader.fps)


def reconstruct_video(
    path: str | Path,
    reconstructor: CoarseReconstructor,
    stride: int = 1,
    max_frames: int | None = None,
    chunk_size: int = 64,
    allow_no_face: bool = False,
    fps: float | None = None,
) -> Iterator[CoarseFrames]:
    """Yield :class:`CoarseFrames` for consecutive chunks of ``chunk_size`` processed frames of
    ``path``: a video, an image or a folder of image frames (see :func:`~au_face.io.sources.open_frames`).

    The reconstructor is reset first. Only one chunk of decoded frames is in memory at a time.
    ``fps`` is the frame rate of image frames (a video has its own). After the last chunk, raises :class:`NoFaceError` if no frame had a face (unless ``allow_no_face``).
    """
    path = Path(path)
    num_frames = num_valid = 0
    with open_frames(path, stride=stride, max_frames=max_frames, fps=fps) as reader:
        for chunk in _chunks(reader, reconstructor, chunk_size):
            num_frames += len(chunk)
            num_valid += chunk.num_valid
            yield chunk
    if num_valid == 0 and not allow_no_face:
        raise NoFaceError(_no_face_message(path, num_frames, stride))


def reconstruct_video_arrays(
    path: str | Path,
    reconstructor: CoarseReconstructor,
    stride: int = 1,
    max_frames: int | None = None,
    chunk_size: int = 64,
    fps: float | None = None,
    on_frame: Callable[[VideoFrame], None] | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """:func:`reconstruct_video`, each chunk as :meth:`CoarseFrames.to_numpy` arrays
    (:meth:`~au_face.coarse.base.CoarseReconstructor.reconstruct_arrays`: MediaPipe needs no torch);
    raises :class:`NoFaceError` after the last chunk if no frame had a face. ``on_frame`` is called
    with every frame as it is decoded, in the decoding thread."""
    path = Path(path)
    num_frames = num_valid = 0
    with open_frames(path, stride=stride, max_frames=max_frames, fps=fps) as reader:
        reconstructor.reset()
        frames = reader if on_frame is None else _passing(reader, on_frame)
        for chunk in iter_chunks(read_ahead(frames), chunk_size):
            arrays = reconstructor.reconstruct_arrays([f.rgb for f in chunk], [f.timestamp for f in chunk], reader.fps)
            num_frames += len(chunk)
            num_valid += int(np.count_nonzero(arrays["valid"]))
            yield arrays
    if num_valid == 0:
        raise NoFaceError(_no_face_message(path, num_frames, stride))


def _passing(frames: Iterable[VideoFrame], on_frame: Callable[[VideoFrame], None]) -> Iterator[VideoFrame]:
    """``frames``, each shown to ``on_frame`` first."""
    for frame in frames:
        on_frame(frame)
        yield frame


#: Rows one read from a :class:`FrameStore` streams at most (the passes' unit; memory stays flat).
STORE_CHUNK = 256


class FrameStore:
    """Append-only raw files, one per field, in a work folder; rows are read back by range.

    Reads use ``np.fromfile`` (no memory mapping), so resident memory is one chunk.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._layout: dict[str, tuple[np.dtype, tuple[int, ...]]] = {}
        self._rows: dict[str, int] = {}

    def append(self, name: str, rows: np.ndarray) -> None:
        """Add rows (first axis) to field ``name``; dtype and row shape are fixed by the first call."""
        rows = np.ascontiguousarray(rows)
        layout = self._layout.setdefault(name, (rows.dtype, rows.shape[1:]))
        if layout != (rows.dtype, rows.shape[1:]):
            raise AUFaceError(f"{name}: rows {rows.dtype}{rows.shape[1:]} after {layout[0]}{layout[1]}")
        with open(self.root / f"{name}.bin", "ab") as fh:
            fh.write(rows.tobytes())
        self._rows[name] = self._rows.get(name, 0) + len(rows)

    def note_rows(self, name: str, dtype: np.dtype, row_shape: tuple[int, ...], rows: int) -> None:
        """Record that field ``name``'s file now holds ``rows`` rows, appended by another process
        (a copy of this store) with this dtype and row shape."""
        layout = self._layout.setdefault(name, (np.dtype(dtype), tuple(row_shape)))
        if layout != (np.dtype(dtype), tuple(row_shape)):
            raise AUFaceError(f"{name}: rows {dtype}{tuple(row_shape)} after {layout[0]}{layout[1]}")
        self._rows[name] = rows

    def append_fields(self, arrays: dict[str, np.ndarray], fields: tuple[str, ...] = FRAME_FIELDS) -> None:
        """Append the ``fields`` present in ``arrays`` (e.g. :meth:`CoarseFrames.to_numpy`)."""
        for name in fields:
            if name in arrays:
                self.append(name, arrays[name])

    def __contains__(self, name: str) -> bool:
        return name in self._layout

    def shape(self, name: str) -> tuple[int, ...]:
        """``(rows, *row_shape)`` of a field."""
        return (self._rows[name], *self._layout[name][1])

    def dtype(self, name: str) -> np.dtype:
        return self._layout[name][0]

    def read(self, name: str, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` of a field (clipped at its end)."""
        dtype, row = self._layout[name]
        stop = min(stop, self._rows[name])
        per_row = int(np.prod(row, dtype=np.int64))
        count = max(stop - start, 0) * per_row
        data = np.fromfile(self.root / f"{name}.bin", dtype=dtype, count=count, offset=start * per_row * dtype.itemsize)
        return data.reshape(-1, *row)

    def chunks(self, name: str, size: int = STORE_CHUNK) -> Iterator[np.ndarray]:
        """All rows of a field, ``size`` at a time."""
        for start in range(0, self._rows[name], size):
            yield self.read(name, start, start + size)


def num_frames(store: FrameStore) -> int:
    """Frames stored so far (every frame has a ``valid`` row)."""
    return store.shape("valid")[0] if "valid" in store else 0


def reconstruct_video_to_file(
    path: str | Path,
    reconstructor: CoarseReconstructor,
    out_path: str | Path,
    stride: int = 1,
    max_frames: int | None = None,
    chunk_size: int = 64,
    allow_no_face: bool = False,
) -> CoarseSummary:
    """Reconstruct a video into one :class:`CoarseFrames` npz at ``out_path`` (readable by ``CoarseFrames.load``).

    Chunks are spooled to raw files beside ``out_path`` and the npz is then streamed from
    them and renamed into place, so memory stays flat in the video length and ``out_path`` is
    either absent, the old file, or complete. Raises :class:`NoFaceError` (writing nothing)
    when no frame has a face, unless ``allow_no_face``.
    """
    path, out_path = Path(path), Path(out_path)
    start = time.perf_counter()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    spool_dir = Path(tempfile.mkdtemp(prefix=f".{out_path.name}.spool.", dir=out_path.parent))
    try:
        spool = FrameStore(spool_dir)
        num_valid, fps, topology = 0, 0.0, reconstructor.topology.name
        with open_frames(path, stride=stride, max_frames=max_frames) as reader:
            for chunk in _chunks(reader, reconstructor, chunk_size):
                spool.append_fields(chunk.to_numpy())
                num_valid += chunk.num_valid
                fps, topology = chunk.fps, chunk.topology
            truncated = reader.truncated
        if num_valid == 0 and not allow_no_face:
            raise NoFaceError(_no_face_message(path, num_frames(spool), stride))
        with NpzStreamWriter(out_path) as npz:
            for name in FRAME_FIELDS:
                if name in spool:
                    npz.add_chunks(name, spool.shape(name), spool.dtype(name), spool.chunks(name, max(chunk_size, 256)))
            npz.add("fps", np.asarray(fps))
            npz.add("topology", np.asarray(topology))
    finally:
        shutil.rmtree(spool_dir, ignore_errors=True)
    return CoarseSummary(
        video=path,
        path=out_path,
        num_frames=num_frames(spool),
        num_valid=num_valid,
        fps=fps,
        topology=topology,
        truncated=truncated,
        seconds=time.perf_counter() - start,
    )
