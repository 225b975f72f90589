"""Run a coarse reconstructor over a whole video, chunk by chunk, with flat memory use."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from au_face.coarse.base import OPTIONAL_FIELDS, CoarseFrames, CoarseReconstructor
from au_face.errors import AUFaceError
from au_face.io import NpzStreamWriter
from au_face.video import VideoReader, iter_chunks

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


def _chunks(
    reader: VideoReader, reconstructor: CoarseReconstructor, chunk_size: int
) -> Iterator[CoarseFrames]:
    reconstructor.reset()
    for chunk in iter_chunks(reader, chunk_size):
        yield reconstructor.reconstruct([f.rgb for f in chunk], [f.timestamp for f in chunk], reader.fps)


def reconstruct_video(
    path: str | Path,
    reconstructor: CoarseReconstructor,
    stride: int = 1,
    max_frames: int | None = None,
    chunk_size: int = 64,
    allow_no_face: bool = False,
) -> Iterator[CoarseFrames]:
    """Yield :class:`CoarseFrames` for consecutive chunks of ``chunk_size`` processed frames.

    The reconstructor is reset first. Only one chunk of decoded frames is in memory at a time.
    After the last chunk, raises :class:`NoFaceError` if no frame had a face (unless ``allow_no_face``).
    """
    path = Path(path)
    num_frames = num_valid = 0
    with VideoReader(path, stride=stride, max_frames=max_frames) as reader:
        for chunk in _chunks(reader, reconstructor, chunk_size):
            num_frames += len(chunk)
            num_valid += chunk.num_valid
            yield chunk
    if num_valid == 0 and not allow_no_face:
        raise NoFaceError(_no_face_message(path, num_frames, stride))


class _Spool:
    """Per-field raw files in a folder; rows appended, read back in chunks."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.layout: dict[str, tuple[np.dtype, tuple[int, ...]]] = {}
        self.rows = 0

    def append(self, arrays: dict[str, np.ndarray]) -> None:
        for name in FRAME_FIELDS:
            if name not in arrays:
                continue
            rows = np.ascontiguousarray(arrays[name])
            layout = self.layout.setdefault(name, (rows.dtype, rows.shape[1:]))
            if layout != (rows.dtype, rows.shape[1:]):
                raise AUFaceError(f"reconstructor changed the layout of {name!r} between chunks")
            with open(self.folder / f"{name}.bin", "ab") as fh:
                fh.write(rows.tobytes())
        self.rows += len(arrays["valid"])

    def chunks(self, name: str, rows_per_chunk: int) -> Iterator[np.ndarray]:
        dtype, row = self.layout[name]
        row_bytes = int(np.prod(row, dtype=np.int64)) * dtype.itemsize
        with open(self.folder / f"{name}.bin", "rb") as fh:
            while block := fh.read(rows_per_chunk * row_bytes):
                yield np.frombuffer(block, dtype=dtype).reshape(-1, *row)


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
        spool = _Spool(spool_dir)
        num_valid, fps, topology = 0, 0.0, reconstructor.topology.name
        with VideoReader(path, stride=stride, max_frames=max_frames) as reader:
            for chunk in _chunks(reader, reconstructor, chunk_size):
                spool.append(chunk.to_numpy())
                num_valid += chunk.num_valid
                fps, topology = chunk.fps, chunk.topology
            truncated = reader.truncated
        if num_valid == 0 and not allow_no_face:
            raise NoFaceError(_no_face_message(path, spool.rows, stride))
        with NpzStreamWriter(out_path) as npz:
            for name, (dtype, row) in spool.layout.items():
                npz.add_chunks(name, (spool.rows, *row), dtype, spool.chunks(name, max(chunk_size, 256)))
            npz.add("fps", np.asarray(fps))
            npz.add("topology", np.asarray(topology))
    finally:
        shutil.rmtree(spool_dir, ignore_errors=True)
    return CoarseSummary(
        video=path,
        path=out_path,
        num_frames=spool.rows,
        num_valid=num_valid,
        fps=fps,
        topology=topology,
        truncated=truncated,
        seconds=time.perf_counter() - start,
    )
