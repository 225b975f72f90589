"""MediaPipe Face Mesh as a coarse reconstructor: 468 tracked points, rigid pose, aligned crops."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Literal

import cv2
import numpy as np

from au_face.coarse.base import EVERY_FACE, SHOT_FIELD, CoarseFrames, CoarseReconstructor
from au_face.coarse.shots import shot_change, thumbnail
from au_face.coarse.tracks import FaceTrack, face_width, same_face
from au_face.errors import AUFaceError
from au_face.faces.align import similarity_fit, similarity_residual
from au_face.faces.appearance import DESCRIPTOR_SIZE, appearance_descriptor
from au_face.faces.mediapipe import (
    NUM_VERTICES,
    STABLE_VERTICES,
    landmark_points,
    mediapipe_topology,
    require_face_mesh,
)
from au_face.faces.topology import FaceTopology

#: Crop side = this many times the template's larger extent (face width or height).
CROP_MARGIN = 1.3
#: RMS residual of the pose fit over the stable vertices (template units, about cm) that gives
#: confidence 0.5. A tracked real face has about 0.2-0.3 (the template is not the subject's face).
HALF_CONFIDENCE_RESIDUAL = 0.5


def fit_confidence(residual: np.ndarray) -> np.ndarray:
    """Confidence in [0, 1] from the pose-fit residual: ``1 / (1 + (residual / HALF_CONFIDENCE_RESIDUAL)^2)``."""
    return 1.0 / (1.0 + (np.asarray(residual) / HALF_CONFIDENCE_RESIDUAL) ** 2)


#: Faces Face Mesh looks for by default; of several, one is chosen (:meth:`MediaPipeReconstructor.choose_face`).
MAX_FACES = 4
#: Faces within this fraction of the largest one's area count as equally large (then the most central wins).
SIZE_TIE = 0.9
#: Frames between two looks for further faces (MediaPipe's face detector) while faces are tracked.
DETECT_EVERY = 30
#: The same while every face is followed (:meth:`MediaPipeReconstructor.every_face`): a face that comes
#: into view is then picked up within this many frames (a look costs about 1.5 ms).
DETECT_EVERY_FACE = 5
#: A chunk's face is upside down when it fits at least this much better turned by 180° (fit-residual ratio).
UPSIDE_DOWN_RATIO = 0.75
#: A fit residual (template units) below which the face is taken as upright without the 180° check. Upright
#: faces fit with a median of 0.25; of 1,600 muxspace photos, upright and turned, those the check found upside
#: down all fitted worse than 0.29.
UPRIGHT_RESIDUAL = 0.25
#: Side in pixels of the square tiles a frame is searched in when Face Mesh finds no face in it
#: whole: its detector sees the frame shrunk to 128 px and misses faces narrower than a tenth to a
#: sixth of the frame (in 1280×720: 100-200 px); in a tile, faces from about 60 px wide are found
#: (benchmarks/bench_small_faces.py).
SMALL_FACE_TILE = 400
#: No tiles smaller than this (a frame whose shorter side is under it is not tiled): a face small enough
#: to need them would be too small to read.
MIN_TILE = 128
#: A small face found in the tiles is followed in a square this many times its size around where it was.
SMALL_FACE_MARGIN = 3.0
#: A face narrower than this share of the frame's larger side is looked at again in such a square where
#: it is first seen: Face Mesh places its points in the box its detector drew on the shrunk frame, which
#: is the coarser the smaller the face (a face 130 px wide in 1280×720: 5.5 px off, 0.6 px after the
#: second look).
CLOSE_LOOK_SHARE = 0.25
#: The tracker, which goes on from its own first points, agrees with a closer look once its points lie
#: within this share of the face's width of the closer look's on average (a settled track: under 1 %).
AGREEMENT = 0.03

#: The attributes holding MediaPipe graphs (closed by :meth:`MediaPipeReconstructor.close`, never pickled).
_GRAPHS = ("_mesh", "_still_mesh", "_turned_mesh", "_every_mesh", "_detector")

#: What a Face Mesh graph is for: tracking a video, single photos, or the upside-down check.
GraphMode = Literal["track", "still", "turned"]


class MultipleFacesWarning(UserWarning):
    """Several faces in view: one is used, the others are ignored."""


class ShotChangeWarning(UserWarning):
    """A video cuts from shot to shot: the one face followed may be different people across them."""


class ImplausibleFitWarning(UserWarning):
    """Frames whose mesh does not fit the face (e.g. an upside-down face) were marked not valid."""


class FrameFormatError(AUFaceError, ValueError):
    """A frame that is not an RGB uint8 image ``[H,W,3]``."""


class MediaPipeReconstructor(CoarseReconstructor):
    """MediaPipe Face Mesh (legacy solution, tracking mode) on each frame.

    With several faces in view, the largest (of equally large ones the most central) is taken
    and then followed from frame to frame; a :class:`MultipleFacesWarning` says which. Faces
    are looked for (MediaPipe's face detector) on the first frame and every :data:`DETECT_EVERY`
    frames, and Face Mesh tracks as many as were found: it runs its own detector again only
    when it loses one, not on every frame. Face
    Mesh draws an upright mesh over an upside-down face: each chunk's median frame, unless it fits
    well (:data:`UPRIGHT_RESIDUAL`), is tried turned by 180°, and when the face fits clearly better
    that way the chunk's frames are marked not valid (:class:`ImplausibleFitWarning` with the
    count). :meth:`reconstruct_still` takes single photos without tracking.

    Small faces: a frame where Face Mesh finds no face is searched again in overlapping squares
    (:func:`tiles`), for a face too small for its detector's view of the whole frame. In a video that
    search runs on a frame without a face at most once every :data:`DETECT_EVERY` frames (so a face
    that comes and goes costs one search in that many frames, not one a frame), and a face found so is followed
    in a square :data:`SMALL_FACE_MARGIN` times its size around its last place, until it is lost or
    Face Mesh finds it in the whole frame. Where a
    face is first seen (a photo, or a frame after one without a face) Face Mesh placed its points from
    its detector's coarse box; a face narrower than :data:`CLOSE_LOOK_SHARE` of the frame is then
    looked at again in such a square, and so are the next frames until Face Mesh's tracking, which
    goes on from its own first points, agrees with it (:data:`AGREEMENT`). Tracked frames that agree,
    and larger faces, are not changed.

    Per frame: the 468 points in pixels (x, y, and depth in x's pixel units); a similarity pose
    fitted to the template over :data:`~au_face.faces.mediapipe.STABLE_VERTICES`; canonical
    ``vertices`` = the points with that pose removed (so ``posed_vertices()`` gives the points
    back); iBUG-68 ``landmarks2d``; an aligned ``crop_size`` square RGB crop (eyes level,
    face centred); and ``confidence`` from the fit residual (:func:`fit_confidence`). Frames
    without a face are ``valid=False`` with zeros.

    Args:
        crop_size: side of the aligned crops in pixels (0 for none).
        appearance: also give each frame's appearance descriptor (:mod:`au_face.faces.appearance`), for a
            model with an appearance head.
        min_detection_confidence, min_tracking_confidence: Face Mesh thresholds.
        max_faces: faces looked for at most. More than one lets the choice (and the warning)
            happen, at one detector run every :data:`DETECT_EVERY` frames; 1 leaves the choice to
            MediaPipe, silently.
    """

    name = "mediapipe"
    # 2: pose fitted without the forehead (brows keep their motion); 3: small faces looked for in tiles and
    # looked at again up close; 4: a face found in a tile is kept only if found again around it; 5: tracking
    # starts again at a shot change
    version = "5"
    #: what finds the points, in messages
    engine = "Face Mesh"
    one_core = True
    finds_every_face = True

    def __init__(
        self,
        crop_size: int = 112,
        min_detection_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
        max_faces: int = MAX_FACES,
        appearance: bool = False,
    ) -> None:
        require_face_mesh()  # fail early with an install hint
        self.crop_size = int(crop_size)
        self.appearance = bool(appearance)
        self.max_faces = int(max_faces)
        self.min_detection_confidence = min_detection_confidence
        self.min_tracking_confidence = min_tracking_confidence
        self._topology = mediapipe_topology()
        template = self._topology.template.astype(np.float64)
        self._stable_template = template[STABLE_VERTICES]
        low, high = template[:, :2].min(axis=0), template[:, :2].max(axis=0)
        self._crop_centre = np.array([(low[0] + high[0]) / 2, (low[1] + high[1]) / 2, 0.0])
        self._crop_extent = CROP_MARGIN * float((high - low).max())
        self._mesh = None
        self._still_mesh = None  # single photos (reconstruct_still)
        self._turned_mesh = None
        self._every_mesh = None  # every face of a photo (reconstruct_faces)
        self._detector = None  # looks for further faces every DETECT_EVERY frames
        self._every_face = False  # within every_face(): faces looked for every DETECT_EVERY_FACE frames
        self._mesh_faces = 0  # faces the tracking graph follows at most
        self._last_found = 0  # faces it found on the previous frame
        self._frame = 0  # frames tracked since the last reset
        self._followed: np.ndarray | None = None  # 2D centre of the face being followed
        self._small_box: tuple[int, int, int] | None = None  # (x, y, side): where a small face is followed
        self._since_search = DETECT_EVERY  # video frames since the tiles were last searched
        self._settling = False  # a closer look was taken and the tracker does not agree with it yet
        self._thumbnail: np.ndarray | None = None  # the last video frame's (shot changes)
        self._warned_faces = False
        self._warned_cut = False  # a ShotChangeWarning was given for this video
        self._still = False  # detect() takes single photos with the still-image graph
        self._track: FaceTrack | None = None  # the face detect() gives while following()
        self._describer: tuple[int, ThreadPoolExecutor] | None = None  # (process id, appearance descriptor thread)

    @property
    def topology(self) -> FaceTopology:
        return self._topology

    def reset(self) -> None:
        """Forget the tracked face: the next frame starts a new tracking graph. The still-image graphs
        (photos, the upside-down check) and the face detector hold no state between frames and are kept."""
        self._new_shot()
        self._frame = self.shot = 0
        self._since_search = DETECT_EVERY
        self._warned_faces = self._warned_cut = False
        self._thumbnail = None

    def _face_mesh(self, mode: GraphMode, faces: int = 1):
        """A Face Mesh graph for ``mode`` that finds up to ``faces`` faces (tracked from frame to frame with ``track``)."""
        return require_face_mesh().FaceMesh(
            static_image_mode=mode != "track",
            max_num_faces=faces,
            refine_landmarks=False,
            min_detection_confidence=self.min_detection_confidence,
            min_tracking_confidence=self.min_tracking_confidence,
        )

    def close(self) -> None:
        """Free the Face Mesh graphs and the appearance descriptors' thread."""
        for name in _GRAPHS:
            mesh = getattr(self, name)
            if mesh is not None:
                mesh.close()
                setattr(self, name, None)
        if self._describer is not None:
            self._describer[1].shutdown(wait=False)
            self._describer = None

    def _describe(self, rgb: np.ndarray, points: np.ndarray) -> Future:
        """The frame's appearance descriptor, computed on a thread of its own while the next frames are tracked
        (OpenCV releases the interpreter's lock); one thread per process (a forked copy starts its own)."""
        if self._describer is None or self._describer[0] != os.getpid():
            self._describer = (os.getpid(), ThreadPoolExecutor(1, thread_name_prefix="appearance-descriptors"))
        return self._describer[1].submit(appearance_descriptor, rgb, points)

    def __getstate__(self) -> dict:
        # the graphs cannot be pickled; a copy starts untracked
        unpicklable = dict.fromkeys((*_GRAPHS, "_describer"))
        return {**self.__dict__, **unpicklable, "_mesh_faces": 0, "_frame": 0}

    def detect(self, rgb: np.ndarray, timestamp: float | None = None) -> np.ndarray | None:
        """Track one frame: ``[468,3]`` pixel points of the chosen face, or None without a face.

        ``timestamp`` (seconds in the video) is for graphs that need one; Face Mesh ignores it. While
        :meth:`following` a track, its face is taken (None where it is not found)."""
        faces, small = self._frame_faces(rgb, timestamp)
        points = None
        if faces:
            points = (
                self.choose_face(faces, rgb.shape[:2])
                if self._track is None
                else self._track.pick(self._frame - 1, faces)
            )
        if points is None:
            self._followed = self._small_box = None
            return None
        first_sight = self._still or self._followed is None  # placed from a detector's box, not from tracking
        if (first_sight or self._settling) and face_width(points) < CLOSE_LOOK_SHARE * max(rgb.shape[:2]):
            closer = self._closer_look(rgb, points)
            # the tracker goes on from its own first points: until it agrees, the closer look's are kept
            self._settling = not self._still and not _agree(points, closer)
            points = closer
        else:
            self._settling = False
        self._small_box = _box_around(points) if small else None
        if len(faces) > 1 and not self._warned_faces and self._track is None:
            self._warned_faces = True
            x, y = points[:, :2].mean(axis=0)
            warnings.warn(
                f"{len(faces)} faces in view; using the largest (most central of equals), centred at "
                f"x={x:.0f}, y={y:.0f} px, and following it; the others are ignored (in photos, --all-faces "
                "keeps every face)",
                MultipleFacesWarning,
                stacklevel=2,
            )
        self._followed = points[:, :2].mean(axis=0)
        return points

    def faces_in_frame(self, rgb: np.ndarray, timestamp: float | None = None) -> list[np.ndarray]:
        """Track one frame as :meth:`detect` does, without choosing: ``[468,3]`` pixel points of every
        face found (small ones looked for as there; a small one found is looked for around its place next)."""
        faces, small = self._frame_faces(rgb, timestamp)
        self._small_box = _box_around(faces[0]) if small and faces else None
        return faces

    @contextmanager
    def every_face(self) -> Iterator[None]:
        """Meanwhile up to :data:`EVERY_FACE` faces are tracked (``max_faces``), looked for every
        :data:`DETECT_EVERY_FACE` frames."""
        limit, self.max_faces = self.max_faces, EVERY_FACE
        self._every_face = True
        try:
            yield
        finally:
            self.max_faces, self._every_face = limit, False

    @contextmanager
    def following(self, track: FaceTrack) -> Iterator[None]:
        """Meanwhile :meth:`detect` gives the face of ``track`` (found by :meth:`faces_in_frame` over the
        same frames) on each frame, not the largest: one face of a video with several."""
        self._track = track
        try:
            yield
        finally:
            self._track = None

    def _frame_faces(self, rgb: np.ndarray, timestamp: float | None) -> tuple[list[np.ndarray], bool]:
        """Every face found in a frame (tracked in video, with a still-image graph in photos) and whether
        they are small ones found only in squares (:meth:`_find_small_faces`)."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise FrameFormatError(f"frames must be RGB uint8 [H,W,3], got {rgb.dtype} {rgb.shape}")
        if self._still:
            graph = self._still_graph()
        else:
            picture = thumbnail(rgb)
            if self._thumbnail is not None and shot_change(self._thumbnail, picture):
                self._new_shot()
                self.shot += 1
                if not self._warned_cut and not self._every_face:  # (every face is read shot by shot)
                    self._warned_cut = True
                    warnings.warn(
                        f"the video cuts to another shot at {timestamp or 0.0:.2f} s; tracking and smoothing start "
                        "again there, but the face followed after a cut may be another person, and S̄ is fitted over "
                        "all of them (--all-faces reads each shot's faces apart)",
                        ShotChangeWarning,
                        stacklevel=2,
                    )
            self._thumbnail = picture
            detect_every = DETECT_EVERY_FACE if self._every_face else DETECT_EVERY
            if self._mesh is None or (self.max_faces > 1 and self._frame % detect_every == 0):
                self._track_faces(self.count_faces(rgb) if self.max_faces > 1 else 1)
            self._frame += 1
            self._since_search += 1
            graph = self._mesh
        faces = self._find_faces(graph, rgb, timestamp)
        self._last_found = len(faces)
        if faces:
            return faces, False
        return self._find_small_faces(rgb), True

    def _new_shot(self) -> None:
        """Start tracking again, as on a video's first frame (but counting frames on, and searching the
        tiles no more often): after a cut Face Mesh's tracker goes on from the last shot's points and
        gives a wrong mesh for up to a second."""
        if self._mesh is not None:
            self._mesh.close()
            self._mesh = None
        self._mesh_faces = self._last_found = 0
        self._followed = self._small_box = None
        self._settling = False

    def _still_graph(self):
        if self._still_mesh is None:
            self._still_mesh = self._face_mesh("still", self.max_faces)
        return self._still_mesh

    def _find_small_faces(self, rgb: np.ndarray) -> list[np.ndarray]:
        """Faces Face Mesh missed in the whole frame: looked for where a small face was followed, else
        in the frame's :func:`tiles` (photos: always; video: see the class docstring)."""
        graph = self._still_graph()
        if self._small_box is not None:
            faces = self._find_faces_in(graph, rgb, self._small_box)
            if faces:
                return faces
        if not self._still and self._since_search < DETECT_EVERY:
            return []
        self._since_search = 0
        return self._tile_faces(graph, rgb, [])

    def _tile_faces(self, graph, rgb: np.ndarray, known: list[np.ndarray]) -> list[np.ndarray]:
        """The faces ``graph`` finds in the frame's :func:`tiles` besides ``known`` ones, each kept only
        where Face Mesh finds it again in a square around it: in a tile its detector also takes parts
        of a body or of clothing for a face, which then is not found again."""
        found: list[np.ndarray] = []
        for box in tiles(*rgb.shape[:2]):
            found += [face for face in self._find_faces_in(graph, rgb, box) if not same_face(face, known + found)]
        return [face for face in found if self._found_again(rgb, face)]

    def _found_again(self, rgb: np.ndarray, points: np.ndarray) -> bool:
        """Whether Face Mesh finds the face at ``points`` again in a square around it."""
        return bool(self._faces_around(rgb, points))

    def _closer_look(self, rgb: np.ndarray, points: np.ndarray) -> np.ndarray:
        """The face at ``points`` as Face Mesh finds it in a square around it (``points`` if it does not)."""
        centre = points[:, :2].mean(axis=0)
        found = self._faces_around(rgb, points)
        return min(found, key=lambda face: float(np.linalg.norm(face[:, :2].mean(axis=0) - centre)), default=points)

    def _faces_around(self, rgb: np.ndarray, points: np.ndarray) -> list[np.ndarray]:
        """The faces Face Mesh finds in the square :data:`SMALL_FACE_MARGIN` times the size of the face at
        ``points`` around it that are that face (:func:`~au_face.coarse.tracks.same_face`)."""
        return [
            face
            for face in self._find_faces_in(self._still_graph(), rgb, _box_around(points))
            if same_face(face, [points])
        ]

    def _find_faces_in(self, graph, rgb: np.ndarray, box: tuple[int, int, int]) -> list[np.ndarray]:
        """The faces ``graph`` finds in the square ``box`` (x, y, side; parts outside the frame black),
        in the frame's pixels (the arrays are moved in place)."""
        x, y, side = box
        shift = np.array([[1.0, 0.0, -x], [0.0, 1.0, -y]])
        square = cv2.warpAffine(rgb, shift, (side, side), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT)
        faces = self._find_faces(graph, square)
        for points in faces:
            points[:, 0] += x
            points[:, 1] += y
        return faces

    def count_faces(self, rgb: np.ndarray) -> int:
        """Faces MediaPipe's (short-range) face detector finds in a frame, at most ``max_faces``."""
        if self._detector is None:
            self._detector = _face_detection().FaceDetection(
                model_selection=0, min_detection_confidence=self.min_detection_confidence
            )
        result = self._detector.process(np.ascontiguousarray(rgb))
        return min(len(result.detections or []), self.max_faces)

    def _track_faces(self, found: int) -> None:
        """Have the tracking graph follow as many faces as the detector ``found`` (at least one).

        A new graph is started when more faces are in view than it follows, or when it follows
        more than are left (it lost one on the last frame and the detector agrees): a graph that
        follows fewer faces than it may would run its detector on every frame. The face followed
        so far stays the chosen one (:meth:`choose_face`)."""
        wanted = max(found, 1)
        if self._mesh is not None and (
            wanted == self._mesh_faces or (wanted < self._mesh_faces and self._last_found >= self._mesh_faces)
        ):
            return
        if wanted < self._mesh_faces:
            wanted = max(wanted, self._last_found)
        if self._mesh is not None:
            self._mesh.close()
        self._mesh, self._mesh_faces = self._face_mesh("track", wanted), wanted

    def _find_faces(self, graph, rgb: np.ndarray, timestamp: float | None = None) -> list[np.ndarray]:
        """Every face ``graph`` (from :meth:`_face_mesh`) finds in a frame: ``[468,3]`` points in pixels."""
        return _faces(graph, rgb)

    def choose_face(self, faces: list[np.ndarray], size: tuple[int, int]) -> np.ndarray:
        """The face followed so far if it is still there, else the largest (of faces within
        :data:`SIZE_TIE` of the largest area, the one nearest the image centre)."""
        centres = [f[:, :2].mean(axis=0) for f in faces]
        if self._followed is not None:
            i = int(np.argmin([np.linalg.norm(c - self._followed) for c in centres]))
            if np.linalg.norm(centres[i] - self._followed) < face_width(faces[i]) / 2:
                return faces[i]
        areas = np.array([_area(f) for f in faces])
        middle = np.array([size[1], size[0]]) / 2.0
        large = [i for i in range(len(faces)) if areas[i] >= SIZE_TIE * areas.max()]
        return faces[min(large, key=lambda i: (np.linalg.norm(centres[i] - middle), centres[i][0]))]

    def _upside_down(self, frames: Sequence[np.ndarray], points: np.ndarray, valid: np.ndarray) -> bool:
        """Whether the chunk's median-fit frame fits clearly better turned by 180° (not tried when it
        fits well: :data:`UPRIGHT_RESIDUAL`)."""
        found = np.flatnonzero(valid)
        if not len(found):
            return False
        residuals = self.fit_residual(points[found])
        middle = int(np.argsort(residuals)[len(found) // 2])
        if residuals[middle] < UPRIGHT_RESIDUAL:
            return False
        if self._turned_mesh is None:
            self._turned_mesh = self._face_mesh("turned")
        rgb = frames[found[middle]]
        turned = self._find_faces(self._turned_mesh, np.ascontiguousarray(rgb[::-1, ::-1]))
        return bool(turned) and self.fit_residual(turned[0][None])[0] < UPSIDE_DOWN_RATIO * residuals[middle]

    def fit_residual(self, points: np.ndarray) -> np.ndarray:
        """RMS distance (template units) between the stable points of ``points [B,468,3]`` and the
        similarity-fitted template: how well the mesh is a face."""
        stable = points[:, STABLE_VERTICES]
        s, r, t = similarity_fit(self._stable_template, stable)
        fitted = s[:, None, None] * np.einsum("nj,bij->bni", self._stable_template, r) + t[:, None]
        return np.sqrt(((fitted - stable) ** 2).sum(axis=-1).mean(axis=-1)) / s

    def reconstruct(self, frames: Sequence[np.ndarray], timestamps: Sequence[float], fps: float) -> CoarseFrames:
        return CoarseFrames.from_numpy(self.reconstruct_arrays(frames, timestamps, fps))

    def reconstruct_still(self, rgb: np.ndarray, fps: float) -> dict[str, np.ndarray]:
        """One photo on its own, with a still-image graph kept from photo to photo: the points a fresh
        tracking graph gives on that frame (the face choice and its warning included), without
        starting a graph or counting faces first."""
        self.reset()
        self._still = True
        try:
            return self.reconstruct_arrays([rgb], [0.0], fps)
        finally:
            self._still = False

    def reconstruct_arrays(
        self, frames: Sequence[np.ndarray], timestamps: Sequence[float], fps: float
    ) -> dict[str, np.ndarray]:
        """The chunk's :class:`CoarseFrames` fields as numpy arrays (no torch needed)."""
        n = len(frames)
        if len(timestamps) != n:
            raise FrameFormatError(f"{n} frames but {len(timestamps)} timestamps")
        points = np.zeros((n, NUM_VERTICES, 3))
        valid = np.zeros(n, dtype=bool)
        shots = np.zeros(n, dtype=np.int32)
        descriptors: dict[int, Future] = {}
        for i, (rgb, timestamp) in enumerate(zip(frames, timestamps)):
            detected = self.detect(rgb, float(timestamp))
            shots[i] = self.shot
            if detected is not None:
                points[i], valid[i] = detected, True
                if self.appearance:
                    descriptors[i] = self._describe(rgb, points[i])  # ours: never written again
        if self._upside_down(frames, points, valid):
            warnings.warn(
                f"{int(valid.sum())} of {n} frames from {timestamps[0]:.2f} s marked not valid: the face looks upside "
                f"down ({self.engine} fits it far better turned by 180°)",
                ImplausibleFitWarning,
                stacklevel=2,
            )
            valid[:] = False
        arrays = self._arrays(frames, points, valid, timestamps, fps, descriptors)
        return arrays if self._still else {**arrays, SHOT_FIELD: shots}

    def reconstruct_faces(self, rgb: np.ndarray, fps: float) -> dict[str, np.ndarray]:
        """Every face of one photo (at most :data:`EVERY_FACE`), one row each, left to right: those Face Mesh
        finds in the whole photo and in its :func:`tiles` (so small faces beside large ones too), small
        ones looked at again up close as in :meth:`reconstruct_still`. With one face or none, exactly
        what :meth:`reconstruct_still` gives (the upside-down check included; with several it is not made)."""
        self.reset()
        if self._every_mesh is None:
            self._every_mesh = self._face_mesh("still", EVERY_FACE)
        faces = self._find_faces(self._every_mesh, rgb)
        faces += self._tile_faces(self._every_mesh, rgb, faces)
        if not faces:  # (the row reconstruct_still gives, without searching again)
            return self._arrays([rgb], np.zeros((1, NUM_VERTICES, 3)), np.zeros(1, dtype=bool), [0.0], fps, {})
        if len(faces) == 1:
            return self.reconstruct_still(rgb, fps)
        if len(faces) > EVERY_FACE:
            warnings.warn(
                f"{len(faces)} faces found; the {EVERY_FACE} largest are kept", MultipleFacesWarning, stacklevel=2
            )
            faces = sorted(faces, key=_area, reverse=True)[:EVERY_FACE]
        limit = CLOSE_LOOK_SHARE * max(rgb.shape[:2])
        placed: list[np.ndarray] = []
        for face in faces:
            # Face Mesh's points on a face in a large photo can sit a third of a face low (on the chin), so
            # the same face found in a square as well is only seen to be one after the closer look
            closer = self._closer_look(rgb, face) if face_width(face) < limit else face
            if not same_face(closer, placed):
                placed.append(closer)
        if len(placed) == 1:
            return self.reconstruct_still(rgb, fps)
        points = np.stack(sorted(placed, key=lambda face: float(face[:, 0].mean())))
        n = len(points)
        descriptors = {i: self._describe(rgb, points[i]) for i in range(n)} if self.appearance else {}
        return self._arrays([rgb] * n, points, np.ones(n, dtype=bool), [0.0] * n, fps, descriptors)

    def _arrays(
        self,
        frames: Sequence[np.ndarray],
        points: np.ndarray,
        valid: np.ndarray,
        timestamps: Sequence[float],
        fps: float,
        descriptors: dict[int, Future],
    ) -> dict[str, np.ndarray]:
        """The coarse fields of rows whose pixel ``points [N,468,3]`` were found (``valid``) in ``frames``."""
        n = len(frames)
        vertices = np.zeros((n, NUM_VERTICES, 3))
        rotation = np.zeros((n, 3, 3))
        translation = np.zeros((n, 3))
        scale = np.zeros(n)
        confidence = np.zeros(n)
        if valid.any():
            stable = points[valid][:, STABLE_VERTICES]
            s, r, t = similarity_fit(self._stable_template, stable)
            scale[valid], rotation[valid], translation[valid] = s, r, t
            confidence[valid] = fit_confidence(similarity_residual(self._stable_template, stable, s, r, t))
            # inverse pose: v = R^T (x - t) / s, written for row vectors
            vertices[valid] = np.einsum("bnj,bji->bni", points[valid] - t[:, None], r) / s[:, None, None]
        landmarks = points[:, self._topology.landmarks68, :2]
        crops = None
        if self.crop_size > 0:
            crops = np.zeros((n, self.crop_size, self.crop_size, 3), dtype=np.uint8)
            for i in np.flatnonzero(valid):
                crops[i] = self.crop(frames[i], scale[i], rotation[i], translation[i])
        arrays = {
            "vertices": vertices.astype(np.float32),
            "valid": valid,
            "rotation": rotation.astype(np.float32),
            "translation": translation.astype(np.float32),
            "scale": scale.astype(np.float32),
            "landmarks2d": landmarks.astype(np.float32),
            "timestamps": np.asarray(timestamps, dtype=np.float64),
            "fps": np.asarray(float(fps)),
            "topology": np.asarray(self._topology.name),
            "confidence": confidence.astype(np.float32),
        }
        if crops is not None:
            arrays["crops"] = crops
        if self.appearance:
            arrays["appearance"] = np.zeros((n, DESCRIPTOR_SIZE), dtype=np.float32)
            for i, descriptor in descriptors.items():
                if valid[i]:  # (not a face turned upside down)
                    arrays["appearance"][i] = descriptor.result()
        return arrays

    def crop_transform(self, scale: float, rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
        """``[2,3]`` affine image -> crop: in-plane roll removed, template box filling the crop."""
        centre = scale * rotation @ self._crop_centre + translation
        axis = rotation[:2, 0]  # the template's x axis (eye line) in the image
        angle = np.arctan2(axis[1], axis[0])
        zoom = self.crop_size / (self._crop_extent * scale)
        c, s = zoom * np.cos(angle), zoom * np.sin(angle)
        linear = np.array([[c, s], [-s, c]])
        offset = np.full(2, (self.crop_size - 1) / 2.0) - linear @ centre[:2]
        return np.hstack([linear, offset[:, None]])

    def crop(self, rgb: np.ndarray, scale: float, rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
        """Aligned ``[crop_size, crop_size, 3]`` face crop of one frame given its pose."""
        return cv2.warpAffine(
            rgb,
            self.crop_transform(scale, rotation, translation),
            (self.crop_size, self.crop_size),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
        )


def _face_detection():
    """MediaPipe's legacy face-detection solution (the short-range detector Face Mesh runs)."""
    require_face_mesh()  # the install hint
    from mediapipe.python.solutions import face_detection

    return face_detection


def tiles(height: int, width: int, side: int = SMALL_FACE_TILE) -> list[tuple[int, int, int]]:
    """Squares ``(x, y, side)`` that cover a ``height`` × ``width`` frame, half a side apart (so a face up
    to half a side wide lies whole in one); none for a frame less than 1.5 sides long (Face Mesh's view
    of it whole is as good). ``side`` shrinks to the frame's shorter side, but not below
    :data:`MIN_TILE` (a strip narrower than that is not tiled)."""
    side = min(side, height, width)
    if side < MIN_TILE or max(height, width) < 1.5 * side:
        return []

    def starts(length: int) -> np.ndarray:
        count = int(np.ceil((length - side) / (side / 2))) + 1
        return np.linspace(0, length - side, count).round().astype(int)

    return [(int(x), int(y), side) for y in starts(height) for x in starts(width)]


def _box_around(points: np.ndarray) -> tuple[int, int, int]:
    """The square (x, y, side) :data:`SMALL_FACE_MARGIN` times a face's size, centred on it."""
    low, high = points[:, :2].min(axis=0), points[:, :2].max(axis=0)
    side = int(np.ceil(SMALL_FACE_MARGIN * float((high - low).max())))
    x, y = ((low + high) / 2 - side / 2).round().astype(int)
    return int(x), int(y), side


def _agree(points: np.ndarray, other: np.ndarray) -> bool:
    """Whether two placements of a face agree: mean 2D distance under :data:`AGREEMENT` of its width."""
    return float(np.linalg.norm(points[:, :2] - other[:, :2], axis=-1).mean()) < AGREEMENT * face_width(points)


def _faces(mesh, rgb: np.ndarray) -> list[np.ndarray]:
    """Every face Face Mesh finds in a frame: ``[468,3]`` points in pixels (depth in x's units)."""
    result = mesh.process(np.ascontiguousarray(rgb))
    h, w = rgb.shape[:2]
    return [landmark_points(face)[:NUM_VERTICES] * np.array([w, h, w]) for face in result.multi_face_landmarks or []]


def _area(points: np.ndarray) -> float:
    """Area of a face's 2D bounding box in pixels²."""
    extent = points[:, :2].max(axis=0) - points[:, :2].min(axis=0)
    return float(extent[0] * extent[1])
