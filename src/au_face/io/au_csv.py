"""The OpenFace-style AU CSV: per-frame pose, AU probabilities and occurrence; atomic writer and reader."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from au_face.aus import au_label, parse_au
from au_face.io.meshes import MeshIOError
from au_face.utils.files import AtomicStreamWriter, publish, temporary_sibling

#: Leading columns of the AU CSV (as in OpenFace's output).
CSV_LEADING = ("frame", "face_id", "timestamp", "confidence", "success")
#: Head pose columns (OpenFace names): translation, then rotation as Euler angles in radians.
POSE_COLUMNS = ("pose_Tx", "pose_Ty", "pose_Tz", "pose_Rx", "pose_Ry", "pose_Rz")
#: Canonical head axes (x to the viewer's right, y up, z towards the viewer) → camera axes (y down,
#: z away from the viewer): a head facing the camera has pose ``Rx = Ry = Rz = 0``, as in OpenFace.
HEAD_TO_CAMERA = np.diag([1.0, -1.0, -1.0])
#: Columns an AU CSV must have to be read back (CSVs written before ``face_id`` included).
_CSV_REQUIRED = ("frame", "timestamp", "confidence", "success")


def au_csv_columns(aus: Sequence[int]) -> list[str]:
    """Header of the AU CSV: ``frame, face_id, timestamp, confidence, success``, the pose columns,
    then ``AUxx_p`` and ``AUxx_c``."""
    labels = [au_label(a) for a in aus]
    return [*CSV_LEADING, *POSE_COLUMNS, *(f"{lab}_p" for lab in labels), *(f"{lab}_c" for lab in labels)]


def euler_angles(rotation: np.ndarray) -> np.ndarray:
    """``[N,3]`` angles ``(rx, ry, rz)`` in radians with ``rotation = Rx(rx) @ Ry(ry) @ Rz(rz)`` (OpenFace's order)."""
    r = np.asarray(rotation, dtype=np.float64)
    rx = np.arctan2(-r[:, 1, 2], r[:, 2, 2])
    ry = np.arcsin(np.clip(r[:, 0, 2], -1.0, 1.0))
    rz = np.arctan2(-r[:, 0, 1], r[:, 0, 0])
    return np.stack([rx, ry, rz], axis=1)


class AUCsvWriter(AtomicStreamWriter):
    """Stream per-frame pose and AU probabilities to an OpenFace-style CSV.

    Columns follow OpenFace where they apply: ``frame`` (1-based), ``face_id`` (0; with every face
    kept, each face's number: in a photo from the left, in a video by first sight), ``timestamp``
    (seconds), ``confidence`` (fit quality in [0, 1]), ``success`` (1 when
    a face was found), ``pose_Tx..pose_Tz`` (translation in image pixels, depth in x's pixel
    units) and ``pose_Rx..pose_Rz`` (:func:`euler_angles` of the head rotation in camera axes,
    zero when facing the camera; see :data:`HEAD_TO_CAMERA`), then one probability column per AU (``AU12_p``, our analogue of OpenFace's
    ``AU12_r``) and one 0/1 occurrence column (``AU12_c``, probability >= ``threshold``). Frames
    without a face leave the pose and AU fields empty. With ``label`` (e.g. ``"file"`` for a photo
    collection) a first column of that name holds each row's ``labels``. Rows go to a temporary
    file renamed onto ``path`` at :meth:`close`; an exception inside ``with`` discards it.
    """

    def __init__(self, path: str | Path, aus: Sequence[int], threshold: float = 0.5, label: str | None = None) -> None:
        self.path = Path(path)
        self.aus = [parse_au(a) for a in aus]
        self.threshold = float(threshold)
        self.label = label
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = temporary_sibling(self.path)
        self._fh = open(self._tmp, "w", newline="")
        self._csv = csv.writer(self._fh)
        self._csv.writerow(([label] if label else []) + au_csv_columns(self.aus))
        self.rows = 0

    def write(
        self,
        frames: Sequence[int] | np.ndarray,
        timestamps: Sequence[float] | np.ndarray,
        success: Sequence[bool] | np.ndarray,
        probs: np.ndarray | None = None,
        confidence: Sequence[float] | np.ndarray | None = None,
        rotation: np.ndarray | None = None,
        translation: np.ndarray | None = None,
        labels: Sequence[str] | None = None,
        face_ids: Sequence[int] | np.ndarray | None = None,
    ) -> None:
        """Append rows: 1-based frame numbers, seconds, face found, ``[N,K]`` probabilities (None
        without AUs), confidence (default: 1 with a face, 0 without), pose ``[N,3,3]`` and ``[N,3]``
        (None: pose cells empty), the ``labels`` column's values (needed when it has one) and each
        row's ``face_id`` (default 0)."""
        frames = np.asarray(frames, dtype=np.int64)
        n = len(frames)
        timestamps = np.asarray(timestamps, dtype=np.float64)
        success = np.asarray(success, dtype=bool)
        probs = np.zeros((n, 0)) if probs is None else np.asarray(probs, dtype=np.float64)
        conf = success.astype(np.float64) if confidence is None else np.asarray(confidence, dtype=np.float64)
        ids = np.zeros(n, dtype=np.int64) if face_ids is None else np.asarray(face_ids, dtype=np.int64)
        if self.label is not None and (labels is None or len(labels) != n):
            raise MeshIOError(f"AU rows: {n} frames need {n} values of the {self.label!r} column")
        lead = [[str(x)] for x in labels] if self.label is not None and labels is not None else [[]] * n
        if not (len(timestamps) == len(success) == len(conf) == len(ids) == n) or probs.shape != (n, len(self.aus)):
            raise MeshIOError(
                f"AU rows: {n} frames, {len(timestamps)} timestamps, {len(success)} flags, {len(ids)} face ids, "
                f"probabilities {probs.shape} for {len(self.aus)} AUs"
            )
        pose = None
        if rotation is not None and translation is not None:
            angles = euler_angles(np.asarray(rotation, dtype=np.float64) @ HEAD_TO_CAMERA)
            pose = np.concatenate([np.asarray(translation, dtype=np.float64), angles], axis=1)
        for i in range(n):
            row = [*lead[i], int(frames[i]), int(ids[i]), f"{timestamps[i]:.3f}", f"{conf[i]:.2f}", int(success[i])]
            if success[i]:
                row += (
                    [""] * len(POSE_COLUMNS)
                    if pose is None
                    else [f"{x:.1f}" for x in pose[i, :3]] + [f"{x:.3f}" for x in pose[i, 3:]]
                )
                row += [f"{p:.4f}" for p in probs[i]]
                row += [int(p >= self.threshold) for p in probs[i]]
            else:
                row += [""] * (len(POSE_COLUMNS) + 2 * len(self.aus))
            self._csv.writerow(row)
        self.rows += n

    def close(self) -> None:
        """Flush and rename the CSV onto its final path."""
        if self._fh.closed:
            return
        self._fh.close()
        publish(self._tmp, self.path)

    def abort(self) -> None:
        """Discard the rows written so far."""
        if not self._fh.closed:
            self._fh.close()
        self._tmp.unlink(missing_ok=True)


@dataclass
class AUTable:
    """Per-frame AU output read from a CSV (or built from arrays for plotting).

    Attributes:
        frames: ``[T]`` 1-based frame numbers; timestamps: ``[T]`` seconds;
        success: ``[T]`` bool; aus: FACS numbers (``K``);
        probs: ``[T,K]`` probabilities, NaN where no face was found;
        occurrence: ``[T,K]`` int8, 1/0, -1 where no face was found.
        confidence: ``[T]`` per-frame confidence.
    """

    frames: np.ndarray
    timestamps: np.ndarray
    success: np.ndarray
    aus: list[int]
    probs: np.ndarray
    occurrence: np.ndarray
    confidence: np.ndarray

    def __len__(self) -> int:
        return int(self.frames.shape[0])


def read_au_csv(path: str | Path) -> AUTable:
    """Read an AU CSV written by :class:`AUCsvWriter` (spaces after commas are tolerated)."""
    path = Path(path)
    if not path.is_file():
        raise MeshIOError(f"AU csv not found: {path}")
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh, skipinitialspace=True))
    if not rows:
        raise MeshIOError(f"{path} is empty")
    return au_table_from_rows(rows[0], rows[1:], str(path))


def au_table_from_rows(header: Sequence[str], body: Sequence[Sequence[str]], source: str = "AU table") -> AUTable:
    """An :class:`AUTable` from the AU CSV's header and rows (cells as text; empty or ``nan``: missing)."""
    header = [h.strip() for h in header]
    missing = [c for c in _CSV_REQUIRED if c not in header]
    if missing:
        raise MeshIOError(f"{source} is not an au_face AU csv (missing {missing})")
    prob_cols = [h for h in header if h.startswith("AU") and h.endswith("_p")]
    aus = [parse_au(h[:-2]) for h in prob_cols]
    col = {h: i for i, h in enumerate(header)}
    occ_cols = [f"{au_label(a)}_c" for a in aus]
    absent = [c for c in occ_cols if c not in col]
    if absent:
        raise MeshIOError(f"{source} lacks occurrence columns {absent}")

    def numbers(name: str, dtype: type) -> np.ndarray:
        values = [r[col[name]].strip() for r in body]
        return np.array([float(v) if v else np.nan for v in values], dtype=np.float64).astype(dtype)

    try:
        empty = np.zeros((len(body), 0))
        probs = np.stack([numbers(c, np.float64) for c in prob_cols], axis=1) if body and aus else empty
        occ = np.stack([numbers(c, np.float64) for c in occ_cols], axis=1) if body and aus else empty
        table = AUTable(
            frames=numbers("frame", np.int64),
            timestamps=numbers("timestamp", np.float64),
            success=numbers("success", np.float64) > 0,
            aus=aus,
            probs=probs,
            occurrence=np.where(np.isnan(occ), -1, occ).astype(np.int8),
            confidence=numbers("confidence", np.float64),
        )
    except (ValueError, IndexError) as err:
        raise MeshIOError(f"{source}: malformed row: {err}") from err
    return table
