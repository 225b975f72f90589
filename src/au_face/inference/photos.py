"""Photo collections: every image reconstructed on its own, with one CSV row and one mesh each.

A folder of images is otherwise one video (:mod:`au_face.io.sources`): the frames share one
``S̄`` and the model smooths them over time. Unrelated photos must not: here each photo starts
the reconstructor afresh (no tracking), gets its own ``S̄`` (the refiner's reference of that
one frame) and its own row, named by its file. No overlay video and no AU plot are made: a
collection has no time axis.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from au_face.coarse.base import CoarseFrames, CoarseReconstructor
from au_face.coarse.stream import FRAME_FIELDS, NoFaceError
from au_face.inference.passes import PipelineError, Refiner, torch_threads
from au_face.inference.pipeline import TopologyMismatchError
from au_face.inference.result import ReconstructionResult, output_paths
from au_face.io.au_csv import AUCsvWriter
from au_face.io.meshes import MESH_FORMATS, save_mesh_sequence_npz, write_frame_meshes
from au_face.io.sources import IMAGE_EXTENSIONS, InputNotFoundError, is_image, list_images, read_image
from au_face.io.video import DEFAULT_FPS, VideoError

#: Photos named in a warning before "and N more".
_NAMED = 5


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
    refiner: Refiner | None = None,
    mesh_format: str | None = None,
    progress: bool = False,
    name: str | None = None,
) -> ReconstructionResult:
    """Reconstruct each photo of ``source`` on its own (see :func:`find_photos`) into ``out_dir``.

    Writes ``<name>_meshes.npz`` (one row per photo: final and, with a refiner, coarse canonical
    vertices, pose, ``valid``, ``confidence``, each photo's own ``S̄`` as ``reference [N,V,3]`` and
    its name in ``files``) and ``<name>_aus.csv`` (a ``file`` column, then the columns of a video's
    CSV, one row per photo); ``mesh_format`` adds ``<name>_meshes/<file>.<format>`` for each photo
    with a face. A photo without a face (or unreadable, with a :class:`UnreadablePhotoWarning`)
    keeps an empty row; :class:`~au_face.coarse.stream.NoFaceError` when no photo has a face.
    """
    start_time = time.perf_counter()
    photos, names = find_photos(source)
    name = name or collection_name(source)
    if mesh_format is not None and mesh_format not in MESH_FORMATS:
        raise PipelineError(f"unknown mesh format {mesh_format!r}; choose from {', '.join(MESH_FORMATS)}")
    topology = reconstructor.topology
    if refiner is not None and refiner.topology_name != topology.name:
        raise TopologyMismatchError(
            f"checkpoint was trained on topology {refiner.topology_name!r}, the {reconstructor.name} reconstructor gives {topology.name!r}"
        )
    rows: list[dict[str, np.ndarray]] = []
    unreadable: list[str] = []
    errors: list[str] = []
    show = progress and sys.stderr.isatty()
    for photo, label in tqdm(list(zip(photos, names)), desc="photos", unit="photo", leave=False, disable=not show):
        try:
            rgb = cv2.cvtColor(read_image(photo), cv2.COLOR_BGR2RGB)
        except VideoError as err:
            unreadable.append(label)
            errors.append(str(err))
            rgb = np.zeros((32, 32, 3), dtype=np.uint8)  # a frame without a face: an empty row
        reconstructor.reset()  # no tracking from one photo to the next
        rows.append(_photo_row(reconstructor.reconstruct([rgb], [0.0], DEFAULT_FPS), refiner))
    if unreadable:
        warnings.warn(
            f"cannot read {_listed(unreadable)}; their rows are empty ({errors[0]})",
            UnreadablePhotoWarning,
            stacklevel=2,
        )
    if not any(row["valid"] for row in rows):
        raise NoFaceError(
            f"no face found in any of the {len(photos)} photos; the faces may be too small, turned away or occluded"
        )
    aus = next(([int(a) for a in row["aus"]] for row in rows if "aus" in row), [])
    for row in rows:
        row.pop("aus", None)
        if refiner is not None and "au_probs" not in row:
            row["au_probs"] = np.full(len(aus), np.nan, dtype=np.float32)
    arrays = {key: np.stack([row[key] for row in rows]) for key in rows[0]}
    valid = arrays.pop("valid").astype(bool)
    missing = [label for label, ok in zip(names, valid) if not ok and label not in unreadable]
    if missing:
        warnings.warn(f"no face found in {_listed(missing)}", stacklevel=2)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = output_paths(name, out_dir)
    _write(paths, arrays, valid, names, topology.triangles, topology.name, aus, refiner is not None)
    written = {"meshes": paths["meshes"], "au_csv": paths["au_csv"]}
    if mesh_format is not None:
        stems = [label.replace("/", "_") for label in names]
        write_frame_meshes(
            paths["frame_meshes"], arrays["vertices"], topology.triangles, mesh_format, valid=valid, names=stems
        )
        written["frame_meshes"] = paths["frame_meshes"]
    timings = {"total": time.perf_counter() - start_time}
    return ReconstructionResult(
        written, len(photos), int(valid.sum()), timings, refined=refiner is not None, name=name, photos=True
    )


def _photo_row(coarse: CoarseFrames, refiner: Refiner | None) -> dict[str, np.ndarray]:
    """One photo's arrays: its own S̄ (``reference``) and, with a refiner and a face, the refinement."""
    valid = bool(coarse.valid[0])
    kept = [f for f in FRAME_FIELDS if f not in ("crops", "features", "timestamps")]
    row = {key: value[0] for key, value in coarse.to_numpy().items() if key in kept}
    row["coarse_vertices"] = row["vertices"]
    row["reference"] = row["vertices"] if valid else np.zeros_like(row["vertices"])
    if refiner is not None and valid:
        with torch.inference_mode(), torch_threads(1):  # one frame: extra threads only wait (as in the pipeline)
            reference = refiner.reference(coarse)
            out = refiner.refine(coarse, reference=reference)
        row["reference"] = reference.detach().float().cpu().numpy()
        row["vertices"] = out.vertices[0].detach().float().cpu().numpy()
        row["au_probs"] = out.au_probs[0].detach().float().cpu().numpy()
        row["aus"] = np.asarray(out.aus, dtype=np.int64)
    return row


def _write(
    paths: dict[str, Path],
    arrays: dict[str, np.ndarray],
    valid: np.ndarray,
    names: list[str],
    triangles: np.ndarray,
    topology: str,
    aus: list[int],
    refined: bool,
) -> None:
    """The collection's npz and CSV."""
    n = len(names)
    frames = np.arange(1, n + 1, dtype=np.int64)
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
        )


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
