"""Every face of a video: the faces found on each frame linked into tracks, one per person and shot.

:func:`scan_face_tracks` runs a reconstructor's :meth:`faces_in_frame` over a video, notes where the
shot changes (its ``shot``) and links the faces frame to frame within each shot
(:func:`link_faces`); each :class:`FaceTrack` is then reconstructed on its own, the reconstructor
:meth:`following` it (``au-face reconstruct --all-faces``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from au_face.io.sources import open_frames
from au_face.utils.concurrency import read_ahead

#: Processed frames a track may go unseen and still take up its face again (a face looked for again
#: after tracking lost it is found within this many).
TRACK_GAP = 30
#: A track seen on fewer processed frames than this (or than the video has) is dropped: a face
#: glimpsed so briefly gives no sequence to read, and is more often a detector's mistake.
MIN_TRACK_FRAMES = 8


@dataclass(frozen=True)
class FaceTrack:
    """One face through a video: where it was seen (``frames``, processed-frame indices, ascending),
    its 2D centre there (``centres [M,2]``, pixels) and its width (``widths [M]``)."""

    frames: np.ndarray
    centres: np.ndarray
    widths: np.ndarray

    def pick(self, index: int, faces: Sequence[np.ndarray]) -> np.ndarray | None:
        """Of ``faces`` (``[468,3]`` pixel points) on processed frame ``index``, this track's: the one
        nearest the track's centre on the frame nearest ``index`` where it was seen, if within half that
        face's width; None outside the frames from its first sight to its last, and where it was not
        seen within :data:`TRACK_GAP` frames of ``index``."""
        if not self.frames[0] <= index <= self.frames[-1]:
            return None
        seen = int(np.searchsorted(self.frames, index, side="right")) - 1
        near = [i for i in (seen, seen + 1) if 0 <= i < len(self.frames) and abs(self.frames[i] - index) <= TRACK_GAP]
        if not near:
            return None
        centre = self.centres[min(near, key=lambda i: abs(int(self.frames[i]) - index))]
        distances = [float(np.linalg.norm(face[:, :2].mean(axis=0) - centre)) for face in faces]
        best = int(np.argmin(distances))
        return faces[best] if distances[best] < face_width(faces[best]) / 2 else None

    def __len__(self) -> int:
        return len(self.frames)


class FaceFinder(Protocol):
    """A reconstructor that gives every face of a frame and numbers the shots (its last frame's ``shot``;
    :class:`~au_face.coarse.mediapipe.MediaPipeReconstructor`)."""

    shot: int

    def reset(self) -> None: ...

    def faces_in_frame(self, rgb: np.ndarray, timestamp: float | None = None) -> list[np.ndarray]: ...


def link_faces(frames: Sequence[Sequence[np.ndarray]], shots: Sequence[int] = ()) -> list[FaceTrack]:
    """Tracks of the faces found on each frame (``frames[i]``: ``[468,3]`` pixel points of each face).

    Faces of one frame closer than half a width are one face. A face continues the track whose last
    centre is nearest to its own, within half its width, among those seen in the last
    :data:`TRACK_GAP` frames of the same shot (``shots``: the frames that start a new one; the nearest
    pairs first; one face per track and frame); any other face starts a track. Tracks seen on fewer
    than :data:`MIN_TRACK_FRAMES` frames (or fewer than the video has) are dropped; the rest are
    ordered by first sight, then left to right.
    """
    tracks: list[tuple[list[int], list[np.ndarray], list[float]]] = []
    shot_start, starts = 0, set(shots)
    for index, found in enumerate(frames):
        if index in starts:
            shot_start = index
        faces: list[np.ndarray] = []
        for face in found:  # one face found twice on a frame (two meshes on it) counts once
            if not same_face(face, faces):
                faces.append(face)
        centres = [face[:, :2].mean(axis=0) for face in faces]
        widths = [face_width(face) for face in faces]
        open_tracks = [t for t in tracks if index - t[0][-1] <= TRACK_GAP and t[0][-1] >= shot_start]
        pairs = sorted(
            (float(np.linalg.norm(track[1][-1] - centre)), j, f)
            for j, track in enumerate(open_tracks)
            for f, centre in enumerate(centres)
        )
        used_tracks: set[int] = set()
        used_faces: set[int] = set()
        for distance, j, f in pairs:
            if j in used_tracks or f in used_faces or distance >= widths[f] / 2:
                continue
            used_tracks.add(j)
            used_faces.add(f)
            open_tracks[j][0].append(index)
            open_tracks[j][1].append(centres[f])
            open_tracks[j][2].append(widths[f])
        tracks += [([index], [centres[f]], [widths[f]]) for f in range(len(faces)) if f not in used_faces]
    least = min(MIN_TRACK_FRAMES, len(frames))
    kept = [t for t in tracks if len(t[0]) >= least]
    kept.sort(key=lambda t: (t[0][0], float(t[1][0][0])))
    return [FaceTrack(np.asarray(f), np.asarray(c, dtype=float), np.asarray(w, dtype=float)) for f, c, w in kept]


def scan_face_tracks(
    source: str | Path,
    finder: FaceFinder,
    stride: int = 1,
    max_frames: int | None = None,
    fps: float | None = None,
) -> list[FaceTrack]:
    """The face tracks of a video (or image frames): ``finder``'s faces on each processed frame
    (``stride``, ``max_frames``, ``fps`` as for the reconstruction that will follow them), linked by
    :func:`link_faces` within each shot (the frames where ``finder.shot`` changes). Only the faces' centres
    and widths are kept, so memory stays small."""
    found: list[list[np.ndarray]] = []
    shots: list[int] = []
    with open_frames(Path(source), stride=stride, max_frames=max_frames, fps=fps) as reader:
        finder.reset()
        for index, frame in enumerate(read_ahead(reader)):
            faces = finder.faces_in_frame(frame.rgb, frame.timestamp)
            found.append([_outline(face) for face in faces])
            if finder.shot > len(shots):  # (shots counted from 0 at reset, at most one more a frame)
                shots.append(index)
    return link_faces(found, shots)


def _outline(points: np.ndarray) -> np.ndarray:
    """What linking needs of a face's points: its centre and horizontal extent, as two 2D points."""
    centre = points[:, :2].mean(axis=0)
    half = face_width(points) / 2
    return np.array([[centre[0] - half, centre[1]], [centre[0] + half, centre[1]]])


def same_face(face: np.ndarray, faces: Sequence[np.ndarray]) -> bool:
    """Whether ``face`` (pixel points) is one of ``faces`` (found again, in an overlapping square or on
    the same frame): their centres closer than half its width."""
    centre = face[:, :2].mean(axis=0)
    return any(np.linalg.norm(other[:, :2].mean(axis=0) - centre) < face_width(face) / 2 for other in faces)


def face_width(points: np.ndarray) -> float:
    """A face's width in pixels: the horizontal extent of its points."""
    return float(np.ptp(points[:, 0]))


__all__ = [
    "MIN_TRACK_FRAMES",
    "TRACK_GAP",
    "FaceFinder",
    "FaceTrack",
    "face_width",
    "link_faces",
    "same_face",
    "scan_face_tracks",
]
