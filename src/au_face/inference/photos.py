"""Photo collections: every image reconstructed on its own, with one CSV row and one mesh each (or, with
``all_faces``, one for each face in it).

A folder of images is otherwise one video (:mod:`au_face.io.sources`): the frames share one
``S̄`` and the model smooths them over time. Unrelated photos must not: here each photo is
reconstructed on its own (``CoarseReconstructor.reconstruct_still``: no tracking), gets its own
``S̄`` (the refiner's reference of that one frame) and its own row, named by its file. No overlay
video and no AU plot are made: a collection has no time axis.

Photos are tracked by this process and, with ``workers``, by forked ones (each with its own
MediaPipe graphs), and refined :data:`BATCH_PHOTOS` at a time in name order (so the numbers do not
depend on how the tracking was shared), as soon as a batch is tracked and the refiner (perhaps a
:class:`~au_face.inference.process.RefinerProcess` still loading) is ready.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from au_face.coarse.base import CoarseReconstructor
from au_face.coarse.stream import FRAME_FIELDS, NoFaceError
from au_face.inference.passes import InferenceRefiner, PipelineError, refine_photos
from au_face.inference.pipeline import check_refiner, frame_inputs_of, only_inputs
from au_face.inference.process import RefinerProcess
from au_face.inference.result import ReconstructionResult, output_paths
from au_face.io.au_csv import AUCsvWriter
from au_face.io.meshes import MESH_FORMATS, save_mesh_sequence_npz, write_frame_meshes
from au_face.io.sources import IMAGE_EXTENSIONS, InputNotFoundError, is_image, list_images, read_image
from au_face.io.video import DEFAULT_FPS, VideoError
from au_face.utils.concurrency import forked_map

#: Photos named in a warning before "and N more".
_NAMED = 5
#: Photos refined in one call of the model.
BATCH_PHOTOS = 32
#: Per-photo fields kept in the outputs (crops, features and appearance descriptors only feed the model).
_KEPT = [f for f in FRAME_FIELDS if f not in ("crops", "features", "appearance", "timestamps")]


class UnreadablePhotoWarning(UserWarning):
    """A photo of a collection that cannot be read (or is a truncated JPEG); its row says no face."""


def find_photos(
    source: str | Path | Sequence[str | Path],
) -> tuple[list[Path], list[str]]:
    """The photos of ``source`` (a folder: its images, in natural name order; an image; or a list
    of images) and their names in the outputs: the file name, or the path as given where two
    photos share a file name."""
    if isinstance(source, (str, Path)):
        source = Path(source)
        if not source.exists():
            raise InputNotFoundError(f"photo or folder not found: {source}")
        photos = list_images(source) if source.is_dir() else [source]
        if not photos:
            raise InputNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {source}")
    else:
        photos = [Path(p) for p in source]
        if not photos:
            raise InputNotFoundError("no photos given (an empty list)")
    for photo in photos:
        if photo.is_dir():
            raise VideoError(f"{photo} is a folder, not an image; give its images, or the folder alone")
        if not photo.is_file():
            raise InputNotFoundError(f"photo not found: {photo}")
        if not is_image(photo):
            raise VideoError(f"{photo} is not an image ({', '.join(IMAGE_EXTENSIONS)}); photo mode reads images only")
    names = [p.name for p in photos]
    if len(set(names)) < len(names):
        names = [p.as_posix() for p in photos]
    return photos, names


def collection_name(source: str | Path | Sequence[str | Path]) -> str:
    """The stem of a collection's output files: the folder's or image's name, else ``photos``."""
    if isinstance(source, (str, Path)):
        path = Path(source).resolve()
        return path.name if path.is_dir() else path.stem
    return "photos"


def reconstruct_photos(
    source: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    reconstructor: CoarseReconstructor,
    refiner: InferenceRefiner | RefinerProcess | None = None,
    mesh_format: str | None = None,
    progress: bool = False,
    name: str | None = None,
    workers: int = 1,
    all_faces: bool = False,
) -> ReconstructionResult:
    """Reconstruct each photo of ``source`` on its own (see :func:`find_photos`) into ``out_dir``.

    Writes ``<name>_meshes.npz`` (one row per photo: final and, with a refiner, coarse canonical
    vertices, pose, ``valid``, ``confidence``, each photo's own ``S̄`` as ``reference [N,V,3]`` and
    its name in ``files``) and ``<name>_aus.csv`` (a ``file`` column, then the columns of a video's
    CSV, one row per photo); ``mesh_format`` adds ``<name>_meshes/<file>.<format>`` for each photo
    with a face. A photo without a face (or unreadable, with a :class:`UnreadablePhotoWarning`)
    keeps an empty row; :class:`~au_face.coarse.stream.NoFaceError` when no photo has a face.
    ``workers`` processes track the photos (this one and forked ones: only from a fresh process,
    see :func:`~au_face.utils.concurrency.forked_map`); the outputs are the same for any number.
    With ``all_faces`` (a reconstructor that :attr:`~au_face.coarse.base.CoarseReconstructor.finds_every_face`)
    every face of a photo gets its own row, S̄ and mesh, numbered left to right in ``face_id`` (CSV and
    npz; a photo with one face or none keeps the row it has without); mesh files are then named
    ``<file>_face<id>``.
    """
    start_time = time.perf_counter()
    photos, names = find_photos(source)
    name = name or collection_name(source)
    if mesh_format is not None and mesh_format not in MESH_FORMATS:
        raise PipelineError(f"unknown mesh format {mesh_format!r}; choose from {', '.join(MESH_FORMATS)}")
    if all_faces and not reconstructor.finds_every_face:
        raise PipelineError(
            f"the {reconstructor.name} reconstructor gives one face per photo; every face needs mediapipe or landmarker"
        )
    topology = reconstructor.topology
    check_refiner(refiner, topology, reconstructor.name, wait=False)
    batches = _Batches(refiner, len(photos), partial(check_refiner, refiner, topology, reconstructor.name, wait=True))
    errors: dict[int, str] = {}
    show = progress and sys.stderr.isatty()
    with (
        only_inputs(reconstructor, frame_inputs_of(refiner)),
        tqdm(total=len(photos), desc="photos", unit="photo", leave=False, disable=not show) as bar,
    ):
        for index, (arrays, error) in forked_map(_tracker(photos, reconstructor, all_faces), len(photos), workers):
            batches.tracked[index] = arrays
            if error is not None:
                errors[index] = error
            bar.update()
            while batches.ready():
                batches.refine()
    while batches.done < len(photos):
        batches.refine()
    rows, aus, owners = batches.rows, batches.aus, np.asarray(batches.owners)
    unreadable = [names[i] for i in sorted(errors)]
    if unreadable:
        warnings.warn(
            f"cannot read {_listed(unreadable)}; their rows are empty ({errors[min(errors)]})",
            UnreadablePhotoWarning,
            stacklevel=2,
        )
    if not any(row["valid"] for row in rows):
        raise NoFaceError(
            f"no face found in any of the {len(photos)} photos; the faces may be too small, turned away or occluded"
        )
    arrays = {key: np.stack([row[key] for row in rows]) for key in rows[0]}
    valid = arrays.pop("valid").astype(bool)
    with_face = np.zeros(len(photos), dtype=bool)
    with_face[owners[valid]] = True
    missing = [label for i, (label, ok) in enumerate(zip(names, with_face)) if not ok and i not in errors]
    if missing:
        warnings.warn(f"no face found in {_listed(missing)}", stacklevel=2)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = output_paths(name, out_dir)
    face_ids = _face_ids(owners)
    labels = [names[i] for i in owners]
    _write(
        paths, arrays, valid, labels, owners + 1, face_ids, topology.triangles, topology.name, aus, refiner is not None
    )
    written = {"meshes": paths["meshes"], "au_csv": paths["au_csv"]}
    if mesh_format is not None:
        stems = [label.replace("/", "_") + (f"_face{k}" if all_faces else "") for label, k in zip(labels, face_ids)]
        write_frame_meshes(
            paths["frame_meshes"], arrays["vertices"], topology.triangles, mesh_format, valid=valid, names=stems
        )
        written["frame_meshes"] = paths["frame_meshes"]
    timings = {"total": time.perf_counter() - start_time}
    return ReconstructionResult(
        written,
        len(photos),
        int(with_face.sum()),
        timings,
        refined=refiner is not None,
        name=name,
        photos=True,
        num_faces=int(valid.sum()),
    )


def _tracker(
    photos: list[Path], reconstructor: CoarseReconstructor, all_faces: bool
) -> Callable[[int], tuple[dict[str, np.ndarray], str | None]]:
    """Photo ``i``'s coarse arrays (one row, or with ``all_faces`` one per face) and, if it cannot be
    read, why (it then has no face)."""

    def track(i: int) -> tuple[dict[str, np.ndarray], str | None]:
        error = None
        try:
            rgb = cv2.cvtColor(read_image(photos[i]), cv2.COLOR_BGR2RGB)
        except VideoError as err:
            error = str(err)
            rgb = np.zeros((32, 32, 3), dtype=np.uint8)  # a frame without a face: an empty row
        if all_faces:
            return reconstructor.reconstruct_faces(rgb, DEFAULT_FPS), error
        return reconstructor.reconstruct_still(rgb, DEFAULT_FPS), error

    return track


class _Batches:
    """The output rows of ``count`` photos as they are tracked (``tracked[i]``: photo i's coarse arrays,
    one row per face), refined :data:`BATCH_PHOTOS` photos at a time in name order (``done`` so far;
    ``owners``: each row's photo); ``check()`` runs before the first refinement."""

    def __init__(
        self, refiner: InferenceRefiner | RefinerProcess | None, count: int, check: Callable[[], None]
    ) -> None:
        self.refiner, self.check = refiner, check
        self.tracked: list[dict[str, np.ndarray] | None] = [None] * count
        self.rows: list[dict[str, np.ndarray]] = []
        self.owners: list[int] = []
        self.done = 0
        self.aus: list[int] = []

    def ready(self) -> bool:
        """Whether the next batch is tracked and the refiner loaded (never waits)."""
        batch = self.tracked[self.done : self.done + BATCH_PHOTOS]
        loaded = not isinstance(self.refiner, RefinerProcess) or self.refiner.check()
        return bool(batch) and all(arrays is not None for arrays in batch) and loaded

    def refine(self) -> None:
        """Turn the next batch (all tracked) into rows: with a refiner each photo's S̄ and refinement,
        without one its coarse mesh as S̄."""
        first = self.done
        batch: list[dict[str, np.ndarray]] = self.tracked[first : first + BATCH_PHOTOS]  # type: ignore[assignment]
        self.tracked[first : first + len(batch)] = [None] * len(batch)
        frames = {key: np.concatenate([a[key] for a in batch]) for key in batch[0] if batch[0][key].ndim}
        frames.update(fps=batch[0]["fps"], topology=batch[0]["topology"])
        out = {key: frames[key] for key in _KEPT if key in frames}
        if self.refiner is None:
            out["reference"] = np.where(out["valid"][:, None, None], out["vertices"], 0.0).astype(np.float32)
        else:
            if not self.rows:
                self.check()
            out["coarse_vertices"] = out["vertices"]
            if isinstance(self.refiner, RefinerProcess):
                out.update(self.refiner.refine_photos(frames))
            else:
                out.update(refine_photos(self.refiner, frames))
            self.aus = out.pop("aus").tolist()
        counts = [len(arrays["valid"]) for arrays in batch]
        self.rows += [{key: value[i] for key, value in out.items()} for i in range(sum(counts))]
        self.owners += [first + j for j, count in enumerate(counts) for _ in range(count)]
        self.done += len(batch)


def _write(
    paths: dict[str, Path],
    arrays: dict[str, np.ndarray],
    valid: np.ndarray,
    names: list[str],
    frames: np.ndarray,
    face_ids: np.ndarray,
    triangles: np.ndarray,
    topology: str,
    aus: list[int],
    refined: bool,
) -> None:
    """The collection's npz and CSV: one row per face (``names``, ``frames`` 1-based photo numbers, ``face_ids``)."""
    n = len(names)
    extra = {
        k: v for k, v in arrays.items() if k != "vertices" and (refined or k not in ("coarse_vertices", "au_probs"))
    }
    if refined:
        extra["aus"] = np.asarray(aus, dtype=np.int64)
    save_mesh_sequence_npz(
        paths["meshes"],
        arrays["vertices"],
        triangles,
        valid,
        np.zeros(n),
        files=np.asarray(names),
        frames=frames,
        face_id=face_ids,
        topology=np.asarray(topology),
        refined=np.asarray(refined),
        **extra,
    )
    with AUCsvWriter(paths["au_csv"], aus, label="file") as writer:
        writer.write(
            frames,
            np.zeros(n),
            valid,
            arrays["au_probs"] if refined else None,
            confidence=arrays.get("confidence"),
            rotation=arrays["rotation"],
            translation=arrays["translation"],
            labels=names,
            face_ids=face_ids,
        )


def _face_ids(owners: np.ndarray) -> np.ndarray:
    """Each row's number among its photo's rows (0, 1, ...): ``owners`` lists the rows' photos in order."""
    starts = np.searchsorted(owners, owners)  # the first row of each row's photo
    return (np.arange(len(owners)) - starts).astype(np.int64)


def _listed(names: list[str]) -> str:
    """``a.jpg, b.jpg`` (at most :data:`_NAMED`, then ``and N more``)."""
    more = f" and {len(names) - _NAMED} more" if len(names) > _NAMED else ""
    return ", ".join(names[:_NAMED]) + more


__all__ = [
    "UnreadablePhotoWarning",
    "collection_name",
    "find_photos",
    "reconstruct_photos",
]
