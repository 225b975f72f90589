"""Readers for the AU label files of BP4D, DISFA, Aff-Wild2 and a generic per-video CSV.

Every reader returns a :class:`LabelTrack`: source frame numbers, ``[T,K]`` int8 labels
(1 present, 0 absent, -1 unknown) for a chosen AU list, and optional intensities.
:func:`align_labels` then maps a track onto the frames of a video.

Format facts and where they come from (each reader repeats the relevant ones):

* BP4D-Spontaneous ``AUCoding/AU_OCC/F001_T1.csv``: a header row whose first cell names the
  frame column (``0``) and whose other cells are FACS numbers; one row per coded frame; cells
  0/1, and 9 where the AU was not coded. ME-GraphAU ``tool/BP4D_image_label_process.py`` reads
  it with ``header=0, index_col=0, usecols=["0","1","2","4",...]``; the FERA-2015 baseline
  (``extract_BP4D_labels.m``) indexes the code columns by AU number and treats 9 as invalid.
* DISFA ``ActionUnit_Labels/SN001/SN001_au1.txt``: one ``frame,intensity`` line per frame,
  intensity 0-5, frames numbered from 1 (12 AUs: 1 2 4 5 6 9 12 15 17 20 25 26). Frame
  numbering: a DISFA loader indexes images with ``frame - 1``; ME-GraphAU and PyTorch-JAANet
  name the frames ``0.png`` ... ``4844`` (4845 labelled frames). Occurrence is intensity >= 2
  in ME-GraphAU ``tool/DISFA_image_label_process.py`` and JAA-Net.
* Aff-Wild2 / ABAW ``AU_Detection_Challenge/{Train_Set,Validation_Set}/<video>.txt``: first
  line ``AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26``, then one line per video
  frame with 0/1, -1 where the frame is not annotated (e.g. no face). Line ``i`` after the
  header is frame ``i`` (1-based): ABAW loaders pair it with ``cropped_aligned/<video>/{i:05d}.jpg``.
  Videos with two people have ``<video>_left.txt`` / ``<video>_right.txt`` sharing one video file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from au_face.aus import AU_NAMES, au_label, parse_au, resolve_aus
from au_face.errors import AUFaceError

UNKNOWN = -1
#: BP4D's code for "not coded".
BP4D_UNCODED = 9
#: DISFA occurrence threshold on the 0-5 intensity used by JAA-Net and ME-GraphAU.
DISFA_THRESHOLD = 2.0


class LabelFormatError(AUFaceError, ValueError):
    """A label file is malformed (message names the file and line)."""


class MissingLabelsError(AUFaceError, FileNotFoundError):
    """A label file or folder that the dataset layout requires does not exist."""


class LabelAlignmentError(AUFaceError, ValueError):
    """Label frames and video frames disagree and the policy is ``"error"``."""


@dataclass(frozen=True)
class LabelTrack:
    """AU labels of one video.

    Attributes:
        frames: ``[T]`` int64 source frame numbers, strictly increasing.
        labels: ``[T,K]`` int8, 1 present, 0 absent, -1 unknown.
        aus: the ``K`` FACS numbers, in column order.
        intensities: ``[T,K]`` float32 (NaN where unknown) when the source has intensities.
        source: where the labels came from (for messages).
    """

    frames: np.ndarray
    labels: np.ndarray
    aus: list[int]
    intensities: np.ndarray | None = None
    source: str = ""

    def __post_init__(self) -> None:
        t = self.frames.shape[0]
        if self.frames.ndim != 1:
            raise LabelFormatError(f"{self.source}: frames must be 1-D")
        if self.labels.shape != (t, len(self.aus)):
            raise LabelFormatError(
                f"{self.source}: labels are {list(self.labels.shape)}, expected [{t}, {len(self.aus)}]"
            )
        if self.intensities is not None and self.intensities.shape != self.labels.shape:
            raise LabelFormatError(f"{self.source}: intensities and labels differ in shape")
        if t > 1 and not np.all(np.diff(self.frames) > 0):
            raise LabelFormatError(f"{self.source}: frame numbers must be strictly increasing")

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    def select(self, aus: str | Iterable[str | int]) -> LabelTrack:
        """The columns of ``aus`` (an AU set name or list), in that order."""
        wanted = resolve_aus(aus)
        missing = [a for a in wanted if a not in self.aus]
        if missing:
            raise LabelFormatError(
                f"{self.source}: no labels for {', '.join(au_label(a) for a in missing)}; "
                f"the file has {', '.join(au_label(a) for a in self.aus)}"
            )
        cols = [self.aus.index(a) for a in wanted]
        return LabelTrack(
            frames=self.frames,
            labels=self.labels[:, cols],
            aus=wanted,
            intensities=None if self.intensities is None else self.intensities[:, cols],
            source=self.source,
        )


# ----------------------------------------------------------------------------- text reading


def _read_rows(path: Path) -> list[tuple[int, list[str]]]:
    """Non-blank lines as ``(line_number, stripped cells)``; BOM, CRLF and spaces tolerated."""
    if not path.is_file():
        raise MissingLabelsError(f"label file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise LabelFormatError(f"{path}: not UTF-8 text ({err})") from err
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            rows.append((number, [cell.strip() for cell in line.split(",")]))
    if not rows:
        raise LabelFormatError(f"{path}: file is empty")
    return rows


def _number(cell: str, path: Path, line: int, column: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise LabelFormatError(f"{path}:{line}: column {column}: {cell!r} is not a number") from None
    if not np.isfinite(value):
        raise LabelFormatError(f"{path}:{line}: column {column}: {cell!r} is not finite")
    return value


def _numbers(rows: list[tuple[int, list[str]]], columns: list[int], header: list[str], path: Path) -> np.ndarray:
    """``[R, C]`` float values of ``columns`` of every row; empty cells are NaN.

    Converted in one numpy call; on failure the cells are checked one by one so the error names
    the file, line and column.
    """
    try:
        table = [[cells[c] for c in columns] for _, cells in rows]
        values = np.array(table, dtype=np.float64) if table else np.empty((0, len(columns)))
        if np.isfinite(values).all():
            return values
    except (ValueError, IndexError):
        pass
    values = np.full((len(rows), len(columns)), np.nan)
    for r, (line, cells) in enumerate(rows):
        for k, c in enumerate(columns):
            cell = _cell(cells, c, path, line, header[c])
            if cell:
                values[r, k] = _number(cell, path, line, header[c])
    return values


def _first_bad(bad: np.ndarray, rows: list[tuple[int, list[str]]]) -> tuple[int, int, int]:
    """``(line, row, column)`` of the first True of ``bad [R, C]``."""
    r, k = np.argwhere(bad)[0]
    return rows[r][0], int(r), int(k)


def _frame_number(cell: str, path: Path, line: int) -> int:
    value = _number(cell, path, line, "frame")
    if value != int(value) or value < 0:
        raise LabelFormatError(f"{path}:{line}: frame {cell!r} is not a non-negative integer")
    return int(value)


def _cell(cells: list[str], index: int, path: Path, line: int, column: str) -> str:
    if index >= len(cells):
        raise LabelFormatError(f"{path}:{line}: row has {len(cells)} cells, column {column} is missing")
    return cells[index]


def _header_au(cell: str) -> int | None:
    """FACS number of a header cell such as ``12``, ``AU12``, ``au06``; None for other columns."""
    match = re.fullmatch(r"(?:au)?\s*0*(\d+)", cell.strip(), flags=re.IGNORECASE)
    if match is None:
        return None
    return int(match.group(1))


def _looks_like_data(cells: list[str]) -> bool:
    """A row of plain numbers (not names such as ``AU12``): a data row where a header should be."""
    return all(re.fullmatch(r"-?\d+(?:\.\d*)?", cell) for cell in cells)


def _au_columns(header: list[str], path: Path, line: int, start: int) -> dict[int, int]:
    columns: dict[int, int] = {}
    for index in range(start, len(header)):
        number = _header_au(header[index])
        if number is None:
            continue
        if number in columns and _looks_like_data(header):
            raise LabelFormatError(
                f"{path}:{line}: the header row is missing: the first line holds values ({','.join(header[:6])}...), "
                "not column names"
            )
        if number in columns:
            raise LabelFormatError(f"{path}:{line}: AU column {header[index]!r} appears twice")
        columns[number] = index
    return columns


def _requested(aus: str | Iterable[str | int], columns: dict[int, int], path: Path, line: int) -> list[int]:
    wanted = resolve_aus(aus)
    missing = [a for a in wanted if a not in columns]
    if missing:
        have = ", ".join(au_label(a) for a in sorted(columns) if a in AU_NAMES) or "none"
        raise LabelFormatError(
            f"{path}:{line}: no column for {', '.join(au_label(a) for a in missing)} (AU columns: {have})"
        )
    return wanted


def _sorted_track(
    frames: list[int],
    labels: np.ndarray,
    aus: list[int],
    intensities: np.ndarray | None,
    path: Path,
    lines: list[int],
) -> LabelTrack:
    frame_array = np.asarray(frames, dtype=np.int64)
    order = np.argsort(frame_array, kind="stable")
    frame_array = frame_array[order]
    repeated = np.nonzero(np.diff(frame_array) == 0)[0]
    if repeated.size:
        first = order[repeated[0] + 1]
        raise LabelFormatError(f"{path}:{lines[first]}: frame {frame_array[repeated[0]]} appears twice")
    return LabelTrack(
        frames=frame_array,
        labels=labels[order],
        aus=aus,
        intensities=None if intensities is None else intensities[order],
        source=str(path),
    )


# ----------------------------------------------------------------------------- BP4D


def read_bp4d(path: str | Path, aus: str | Iterable[str | int] = "bp4d") -> LabelTrack:
    """One BP4D AU-occurrence CSV (``AUCoding/AU_OCC/<subject>_<task>.csv``).

    First column: frame number (header ``0``); other header cells: FACS numbers. Values 0/1,
    9 (not coded) becomes -1. Columns not requested (AUs, occlusion flags) are ignored.
    """
    path = Path(path)
    rows = _read_rows(path)
    header_line, header = rows[0]
    columns = _au_columns(header, path, header_line, start=1)
    wanted = _requested(aus, columns, path, header_line)
    data = rows[1:]
    frames = [_frame_number(cells[0], path, line) for line, cells in data]
    lines = [line for line, _ in data]
    values = _numbers(data, [columns[au] for au in wanted], header, path)
    bad = ~np.isin(values, (0.0, 1.0, BP4D_UNCODED))
    if bad.any():
        line, r, k = _first_bad(bad, data)
        raise LabelFormatError(
            f"{path}:{line}: column {header[columns[wanted[k]]]}: {_show(values[r, k], data[r][1], columns[wanted[k]])} "
            "is not a BP4D code (0, 1, or 9 = not coded)"
        )
    labels = np.where(values == BP4D_UNCODED, UNKNOWN, values).astype(np.int8)
    return _sorted_track(frames, labels, wanted, None, path, lines)


def bp4d_label_path(au_occ_dir: str | Path, subject: str, task: str) -> Path:
    """``<au_occ_dir>/<subject>_<task>.csv``."""
    return Path(au_occ_dir) / f"{subject}_{task}.csv"


# ----------------------------------------------------------------------------- DISFA


def read_disfa_au_file(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """One DISFA ``SN001_au1.txt`` file: ``(frames int64, intensities float32)``, frames 1-based."""
    path = Path(path)
    rows = _read_rows(path)
    for line, cells in rows:
        if len(cells) < 2:
            raise LabelFormatError(f"{path}:{line}: expected 'frame,intensity', got {','.join(cells)!r}")
    frames = np.array([_frame_number(cells[0], path, line) for line, cells in rows], dtype=np.int64)
    values = _numbers(rows, [1], ["frame", "intensity"], path)[:, 0]
    bad = np.isnan(values) | (values < 0) | (values > 5)
    if bad.any():
        line, r, _ = _first_bad(bad[:, None], rows)
        raise LabelFormatError(
            f"{path}:{line}: intensity {_show(values[r], rows[r][1], 1)} is outside DISFA's 0-5 scale"
        )
    if frames.size > 1 and not np.all(np.diff(frames) > 0):
        raise LabelFormatError(f"{path}: frame numbers are not strictly increasing")
    return frames, values.astype(np.float32)


def _find_disfa_file(subject_dir: Path, subject: str, au: int) -> Path:
    wanted = f"{subject}_au{au}.txt".lower()
    for candidate in subject_dir.iterdir():
        if candidate.name.lower() == wanted:
            return candidate
    raise MissingLabelsError(
        f"DISFA labels for {au_label(au)} of {subject} not found: expected {subject_dir / f'{subject}_au{au}.txt'}"
    )


def read_disfa(
    subject_dir: str | Path,
    aus: str | Iterable[str | int] = "disfa",
    threshold: float = DISFA_THRESHOLD,
) -> LabelTrack:
    """One DISFA subject folder (``ActionUnit_Labels/SN001``) assembled from its per-AU files.

    Occurrence is ``intensity >= threshold``; the 0-5 intensities are kept. If the AU files
    cover different frames, frames missing from one file are unknown (-1, NaN) for that AU.
    """
    subject_dir = Path(subject_dir)
    if not subject_dir.is_dir():
        raise MissingLabelsError(f"DISFA subject folder not found: {subject_dir}")
    subject = subject_dir.name
    wanted = resolve_aus(aus)
    per_au = [read_disfa_au_file(_find_disfa_file(subject_dir, subject, au)) for au in wanted]
    frames = per_au[0][0]
    if any(not np.array_equal(f, frames) for f, _ in per_au[1:]):
        frames = np.unique(np.concatenate([f for f, _ in per_au]))
    intensities = np.full((frames.size, len(wanted)), np.nan, dtype=np.float32)
    for k, (f, values) in enumerate(per_au):
        intensities[np.searchsorted(frames, f), k] = values
    labels = np.where(np.isnan(intensities), UNKNOWN, intensities >= threshold).astype(np.int8)
    return LabelTrack(frames=frames, labels=labels, aus=wanted, intensities=intensities, source=str(subject_dir))


# ----------------------------------------------------------------------------- Aff-Wild2


#: ABAW folder names of the official partitions (``Training_Set`` in early releases).
AFFWILD2_SPLIT_DIRS: dict[str, tuple[str, ...]] = {
    "train": ("Train_Set", "Training_Set"),
    "val": ("Validation_Set",),
}


def read_affwild2(path: str | Path, aus: str | Iterable[str | int] = "affwild2") -> LabelTrack:
    """One ABAW AU annotation file; frame ``i`` (1-based) is the ``i``-th line after the header."""
    path = Path(path)
    rows = _read_rows(path)
    header_line, header = rows[0]
    columns = _au_columns(header, path, header_line, start=0)
    if len(columns) != len(header):
        raise LabelFormatError(f"{path}:{header_line}: header must list AU names only, got {','.join(header)!r}")
    wanted = _requested(aus, columns, path, header_line)
    data = rows[1:]
    last_line = data[-1][0] if data else header_line
    if last_line - header_line != len(data):
        blank = next(n for n in range(header_line + 1, last_line) if n not in {line for line, _ in data})
        raise LabelFormatError(f"{path}:{blank}: blank line inside the annotation (frame numbers would shift)")
    for line, cells in data:
        if len(cells) != len(header):
            raise LabelFormatError(f"{path}:{line}: {len(cells)} values for {len(header)} AUs")
    values = _numbers(data, [columns[au] for au in wanted], header, path)
    bad = ~np.isin(values, (-1.0, 0.0, 1.0))
    if bad.any():
        line, r, k = _first_bad(bad, data)
        column = columns[wanted[k]]
        raise LabelFormatError(
            f"{path}:{line}: column {header[column]}: {_show(values[r, k], data[r][1], column)} is not 0, 1 or -1"
        )
    labels = values.astype(np.int8)
    frames = np.arange(1, len(data) + 1, dtype=np.int64)
    return LabelTrack(frames=frames, labels=labels, aus=wanted, source=str(path))


def affwild2_annotation_files(au_root: str | Path, split: Literal["train", "val"]) -> list[Path]:
    """Annotation files of an official partition, sorted by name.

    ``au_root`` is the ``AU_Detection_Challenge`` folder (or the folder holding it).
    """
    au_root = Path(au_root)
    if (au_root / "AU_Detection_Challenge").is_dir():
        au_root = au_root / "AU_Detection_Challenge"
    if split not in AFFWILD2_SPLIT_DIRS:
        raise LabelFormatError(f"unknown Aff-Wild2 split {split!r}; use 'train' or 'val'")
    for name in AFFWILD2_SPLIT_DIRS[split]:
        folder = au_root / name
        if folder.is_dir():
            return sorted(folder.glob("*.txt"))
    raise MissingLabelsError(
        f"Aff-Wild2 {split} annotations not found: expected {au_root / AFFWILD2_SPLIT_DIRS[split][0]} "
        "(the ABAW AU_Detection_Challenge folder)"
    )


def affwild2_video_name(annotation: str | Path) -> str:
    """Name of the video an annotation file belongs to (``_left``/``_right`` removed)."""
    stem = Path(annotation).stem
    return re.sub(r"_(left|right)$", "", stem)


# ----------------------------------------------------------------------------- generic CSV


def read_folder_csv(
    path: str | Path,
    aus: str | Iterable[str | int] | None = None,
    threshold: float | None = None,
) -> LabelTrack:
    """Generic per-video CSV: a ``frame`` column and ``AUxx`` columns (``AU1``, ``AU01``, ``au12``).

    Without ``threshold`` the cells must be 0, 1 or -1 (unknown). With a threshold they are
    intensities: occurrence is ``value >= threshold``, negative values are unknown. Empty
    cells are unknown. ``aus=None`` takes every AU column in file order.
    """
    path = Path(path)
    rows = _read_rows(path)
    header_line, header = rows[0]
    lowered = [cell.lower() for cell in header]
    if "frame" not in lowered:
        raise LabelFormatError(f"{path}:{header_line}: no 'frame' column (header: {','.join(header)!r})")
    frame_col = lowered.index("frame")
    columns: dict[int, int] = {}
    for index, cell in enumerate(header):
        if index == frame_col or not re.fullmatch(r"au\s*\d+", cell, flags=re.IGNORECASE):
            continue
        number = parse_au(cell)
        if number in columns:
            raise LabelFormatError(f"{path}:{header_line}: AU column {cell!r} appears twice")
        columns[number] = index
    if not columns:
        raise LabelFormatError(f"{path}:{header_line}: no AU columns such as 'AU12' in the header")
    wanted = list(columns) if aus is None else _requested(aus, columns, path, header_line)
    data = rows[1:]
    frames = [_frame_number(_cell(cells, frame_col, path, line, "frame"), path, line) for line, cells in data]
    lines = [line for line, _ in data]
    values = _numbers(data, [columns[au] for au in wanted], header, path)
    known = ~np.isnan(values)
    if threshold is None:
        bad = known & ~np.isin(values, (-1.0, 0.0, 1.0))
        if bad.any():
            r, k = np.argwhere(bad)[0]
            raise LabelFormatError(
                f"{path}:{lines[r]}: column {header[columns[wanted[k]]]}: {values[r, k]:g} is not 0, 1 or -1 "
                "(for intensities set a threshold)"
            )
        labels = np.where(known, values, UNKNOWN).astype(np.int8)
        intensities = None
    else:
        known &= values >= 0
        labels = np.where(known, values >= threshold, UNKNOWN).astype(np.int8)
        intensities = np.where(known, values, np.nan).astype(np.float32)
    return _sorted_track(frames, labels, wanted, intensities, path, lines)


# ----------------------------------------------------------------------------- alignment


def align_labels(
    track: LabelTrack,
    num_video_frames: int,
    frame_offset: int = 0,
    policy: Literal["mask", "error"] = "mask",
    stride: int = 1,
) -> LabelTrack:
    """Labels for video frames ``0 .. num_video_frames-1``; video frame ``i`` is label frame ``frame_offset + stride*i``.

    ``stride`` is the frame step the video was sampled with (labelled frames between sampled
    ones are simply skipped). Labelled frames outside the video and video frames without a
    label are masked to -1 (``policy="mask"``) or raise :class:`LabelAlignmentError`
    (``policy="error"``). The result's ``frames`` are the source frame numbers.
    """
    if num_video_frames < 0:
        raise LabelAlignmentError(f"negative frame count {num_video_frames}")
    if stride < 1:
        raise LabelAlignmentError(f"stride must be positive, got {stride}")
    video_frames = frame_offset + stride * np.arange(num_video_frames, dtype=np.int64)
    if stride > 1 and num_video_frames:
        inside = (track.frames >= video_frames[0]) & (track.frames <= video_frames[-1])
        keep = ~inside | ((track.frames - frame_offset) % stride == 0)
        track = LabelTrack(
            track.frames[keep],
            track.labels[keep],
            track.aus,
            None if track.intensities is None else track.intensities[keep],
            track.source,
        )
    return align_to_frames(track, video_frames, policy)


def align_to_frames(
    track: LabelTrack, video_frames: np.ndarray, policy: Literal["mask", "error"] = "mask"
) -> LabelTrack:
    """Labels for the video frames whose source frame numbers are ``video_frames`` (increasing).

    Used when a video's frames carry explicit numbers (an image sequence with gaps). Label
    frames not among ``video_frames`` and video frames without a label are masked to -1
    (``policy="mask"``) or raise :class:`LabelAlignmentError` (``policy="error"``).
    """
    if policy not in ("mask", "error"):
        raise LabelAlignmentError(f"unknown alignment policy {policy!r}; use 'mask' or 'error'")
    video_frames = np.asarray(video_frames, dtype=np.int64)
    if video_frames.size > 1 and not np.all(np.diff(video_frames) > 0):
        raise LabelAlignmentError("video frame numbers must be strictly increasing")
    pos = np.clip(np.searchsorted(video_frames, track.frames), 0, max(video_frames.size - 1, 0))
    matched = video_frames[pos] == track.frames if video_frames.size else np.zeros(len(track), bool)
    if policy == "error":
        if not matched.all():
            outside = track.frames[~matched]
            raise LabelAlignmentError(
                f"{track.source}: {outside.size} labelled frame(s) are not in the video of {video_frames.size} "
                f"frames ({_span(video_frames)}), e.g. frame {_examples(outside)}"
            )
        unlabelled = np.setdiff1d(video_frames, track.frames)
        if unlabelled.size:
            raise LabelAlignmentError(
                f"{track.source}: {unlabelled.size} video frame(s) have no label, e.g. frame {_examples(unlabelled)} "
                f"({_span(video_frames)})"
            )
    labels = np.full((video_frames.size, len(track.aus)), UNKNOWN, dtype=np.int8)
    labels[pos[matched]] = track.labels[matched]
    intensities = None
    if track.intensities is not None:
        intensities = np.full(labels.shape, np.nan, dtype=np.float32)
        intensities[pos[matched]] = track.intensities[matched]
    return LabelTrack(
        frames=video_frames, labels=labels, aus=list(track.aus), intensities=intensities, source=track.source
    )


def _span(video_frames: np.ndarray) -> str:
    return f"frames {video_frames[0]}..{video_frames[-1]}" if video_frames.size else "no frames"


def _show(value: float, cells: list[str], column: int) -> str:
    """The offending cell as written (or the value when the cell is gone)."""
    if column >= len(cells):
        return f"{value:g}"
    return cells[column] if cells[column] else "an empty cell"


def _examples(frames: Sequence[int] | np.ndarray, limit: int = 3) -> str:
    shown = ", ".join(str(int(f)) for f in list(frames)[:limit])
    return shown + (", ..." if len(frames) > limit else "")
