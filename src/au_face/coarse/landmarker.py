"""MediaPipe Face Landmarker (Tasks API) as a coarse reconstructor, from a user-supplied ``.task`` file.

The Face Landmarker gives 478 points per face: the 468 of the Face Mesh topology followed by 10
iris points (468-477). The first 468 are used as they are, so the output has the ``mediapipe``
topology (template, triangles, iBUG-68 table, AU masks, models and caches all carry over) and
everything else (pose fit, face choice, upside-down check, crops, confidence) is
:class:`~au_face.coarse.mediapipe.MediaPipeReconstructor`'s. When the bundle has a blendshape
model, the 52 blendshape scores of each frame go into :attr:`CoarseFrames.expression
<au_face.coarse.base.CoarseFrames.expression>` (columns in :data:`BLENDSHAPE_NAMES` order).

The model file is not shipped or downloaded: Google's ``face_landmarker.task`` is on the
MediaPipe Face Landmarker page (:data:`MODEL_SOURCE`). Give its path as ``model_path``,
``--landmarker-model PATH`` or ``$AU_FACE_LANDMARKER``.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from au_face.coarse.mediapipe import MAX_FACES, GraphMode, MediaPipeReconstructor
from au_face.errors import AUFaceError
from au_face.faces.mediapipe import NUM_VERTICES, MediaPipeUnavailableError, import_mediapipe
from au_face.utils.assets import MissingAssetError

#: Environment variable with the path of the ``.task`` file (when none is passed).
MODEL_ENV = "AU_FACE_LANDMARKER"
#: Where the model comes from (au_face downloads nothing).
MODEL_SOURCE = (
    "Google's MediaPipe Face Landmarker page, 'face_landmarker.task' under Models "
    "(https://ai.google.dev/edge/mediapipe/solutions/vision/face_landmarker#models)"
)
#: Files of a Face Landmarker bundle (a zip); the blendshape model is optional.
DETECTOR_FILE = "face_detector.tflite"
LANDMARKS_FILE = "face_landmarks_detector.tflite"
BLENDSHAPES_FILE = "face_blendshapes.tflite"
#: Points per face of the Face Landmarker: the Face Mesh's 468 and 5 per iris.
NUM_LANDMARKS = 478
#: MediaPipe's 52 blendshape categories in model output order (index 0 is ``_neutral``).
BLENDSHAPE_NAMES = (
    "_neutral",
    "browDownLeft",
    "browDownRight",
    "browInnerUp",
    "browOuterUpLeft",
    "browOuterUpRight",
    "cheekPuff",
    "cheekSquintLeft",
    "cheekSquintRight",
    "eyeBlinkLeft",
    "eyeBlinkRight",
    "eyeLookDownLeft",
    "eyeLookDownRight",
    "eyeLookInLeft",
    "eyeLookInRight",
    "eyeLookOutLeft",
    "eyeLookOutRight",
    "eyeLookUpLeft",
    "eyeLookUpRight",
    "eyeSquintLeft",
    "eyeSquintRight",
    "eyeWideLeft",
    "eyeWideRight",
    "jawForward",
    "jawLeft",
    "jawOpen",
    "jawRight",
    "mouthClose",
    "mouthDimpleLeft",
    "mouthDimpleRight",
    "mouthFrownLeft",
    "mouthFrownRight",
    "mouthFunnel",
    "mouthLeft",
    "mouthLowerDownLeft",
    "mouthLowerDownRight",
    "mouthPressLeft",
    "mouthPressRight",
    "mouthPucker",
    "mouthRight",
    "mouthRollLower",
    "mouthRollUpper",
    "mouthShrugLower",
    "mouthShrugUpper",
    "mouthSmileLeft",
    "mouthSmileRight",
    "mouthStretchLeft",
    "mouthStretchRight",
    "mouthUpperUpLeft",
    "mouthUpperUpRight",
    "noseSneerLeft",
    "noseSneerRight",
)


class LandmarkerModelError(AUFaceError, ValueError):
    """A Face Landmarker ``.task`` file that is not a usable bundle."""


def _describe(path: Path) -> str:
    return f"{path} is not a MediaPipe Face Landmarker model"


def _landmark_values(model: bytes) -> int:
    """Number of values of the landmark model's first output (``478*3`` for a Face Landmarker)."""
    from mediapipe.tasks.metadata import schema_py_generated as schema

    graph = schema.Model.GetRootAsModel(model, 0).Subgraphs(0)
    tensor = graph.Tensors(graph.Outputs(0))
    return int(np.prod(tensor.ShapeAsNumpy()))


def resolve_model(path: str | Path | None = None) -> Path:
    """The ``.task`` file: ``path``, else ``$AU_FACE_LANDMARKER``, checked to be a Face Landmarker bundle.

    Raises :class:`~au_face.utils.assets.MissingAssetError` when none is given or the file does not
    exist, and :class:`LandmarkerModelError` for a file that is not a readable bundle (not a
    zip, damaged, model files missing, or a landmark model without 478 3D points).
    """
    candidate = path if path is not None else os.environ.get(MODEL_ENV)
    if candidate is None or str(candidate) == "":
        raise MissingAssetError(
            "the landmarker reconstructor needs a MediaPipe Face Landmarker model (face_landmarker.task): pass "
            f"--landmarker-model PATH (model_path= in Python) or set {MODEL_ENV}. Obtain it from {MODEL_SOURCE}; "
            "au_face downloads nothing"
        )
    resolved = Path(candidate).expanduser()
    if not resolved.is_file():
        what = "is a folder, not a file" if resolved.is_dir() else "not found"
        raise MissingAssetError(
            f"Face Landmarker model {resolved} {what}. Obtain face_landmarker.task from {MODEL_SOURCE}"
        )
    try:
        with zipfile.ZipFile(resolved) as bundle:
            names = bundle.namelist()
            damaged = bundle.testzip()
            if damaged is not None:
                raise LandmarkerModelError(f"{_describe(resolved)}: {damaged} in the bundle is damaged (CRC mismatch)")
            missing = [name for name in (DETECTOR_FILE, LANDMARKS_FILE) if name not in names]
            if missing:
                raise LandmarkerModelError(
                    f"{_describe(resolved)}: the bundle lacks {' and '.join(missing)} (it has {', '.join(names) or 'nothing'}). "
                    f"Obtain face_landmarker.task from {MODEL_SOURCE}"
                )
            landmarks = bundle.read(LANDMARKS_FILE)
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        raise LandmarkerModelError(
            f"{_describe(resolved)} (a .task bundle is a zip archive; this one cannot be read: {err}). "
            f"Obtain face_landmarker.task from {MODEL_SOURCE}"
        ) from err
    try:
        values = _landmark_values(landmarks)
    except Exception as err:  # flatbuffers raises assorted errors for bytes that are no TFLite model
        raise LandmarkerModelError(f"{_describe(resolved)}: {LANDMARKS_FILE} is not a readable TFLite model") from err
    if values != 3 * NUM_LANDMARKS:
        raise LandmarkerModelError(
            f"{_describe(resolved)}: {LANDMARKS_FILE} outputs {values} values, not {NUM_LANDMARKS} points x 3 "
            "(the legacy 468-point face_landmark.tflite does not fit the Tasks graph)"
        )
    return resolved


def has_blendshapes(path: str | Path) -> bool:
    """Whether a bundle (already checked by :func:`resolve_model`) holds the blendshape model."""
    with zipfile.ZipFile(path) as bundle:
        return BLENDSHAPES_FILE in bundle.namelist()


def _require_tasks():
    try:
        mp = import_mediapipe()
        from mediapipe.tasks.python import BaseOptions, vision
    except ImportError as err:
        raise MediaPipeUnavailableError(
            "the landmarker reconstructor needs mediapipe with the Tasks API: pip install 'au_face[mediapipe]' "
            "(mediapipe==0.10.21)"
        ) from err
    return mp, BaseOptions, vision


class FaceLandmarkerReconstructor(MediaPipeReconstructor):
    """MediaPipe Face Landmarker (Tasks API, video mode) on each frame, from a ``.task`` file.

    Output as :class:`~au_face.coarse.mediapipe.MediaPipeReconstructor` (same 468-vertex
    topology; the 10 iris points are dropped), plus ``expression``: ``[T,52]`` blendshape scores
    (:data:`BLENDSHAPE_NAMES`; zeros where no face) when the bundle has a blendshape model.
    Frames of one video go to the graph with their timestamps in milliseconds (kept strictly
    increasing); :meth:`reset` starts a new graph.

    Args:
        model_path: the ``face_landmarker.task`` bundle (default ``$AU_FACE_LANDMARKER``);
            checked at once (:func:`resolve_model`).
        crop_size, max_faces: as for the Face Mesh reconstructor.
        min_detection_confidence: face detector threshold.
        min_tracking_confidence: face presence and tracking threshold of the landmark model.
        blendshapes: compute the blendshape scores when the bundle has the model.
    """

    name = "landmarker"
    version = "2"  # 2: small faces looked for in tiles and looked at again up close
    engine = "the Face Landmarker"
    # MediaPipe Tasks ``FaceLandmarker`` graphs (untyped), None until first built
    _mesh: Any
    _turned_mesh: Any

    def __init__(
        self,
        model_path: str | Path | None = None,
        crop_size: int = 112,
        min_detection_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
        max_faces: int = MAX_FACES,
        blendshapes: bool = True,
    ) -> None:
        _require_tasks()
        self.model_path = resolve_model(model_path)
        self.blendshapes = bool(blendshapes) and has_blendshapes(self.model_path)
        super().__init__(crop_size, min_detection_confidence, min_tracking_confidence, max_faces)
        self._last_ms = -1
        self._found: list[tuple[np.ndarray, np.ndarray | None]] = []  # faces of the last frame, with scores
        self._chunk_scores: list[np.ndarray | None] | None = None

    @classmethod
    def create(cls, device: str = "cpu", model_path: str | Path | None = None) -> FaceLandmarkerReconstructor:
        """The default instance (CPU; ``device`` is ignored) on ``model_path`` or ``$AU_FACE_LANDMARKER``."""
        return cls(model_path)

    def reset(self) -> None:
        super().reset()
        self._last_ms = -1

    def _face_mesh(self, mode: GraphMode, faces: int = 1):
        mp, BaseOptions, vision = _require_tasks()
        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(self.model_path)),
            running_mode=vision.RunningMode.VIDEO if mode == "track" else vision.RunningMode.IMAGE,
            num_faces=faces,
            min_face_detection_confidence=self.min_detection_confidence,
            min_face_presence_confidence=self.min_tracking_confidence,
            min_tracking_confidence=self.min_tracking_confidence,
            output_face_blendshapes=self.blendshapes and mode != "turned",
        )
        try:
            return vision.FaceLandmarker.create_from_options(options)
        except (RuntimeError, ValueError) as err:
            raise LandmarkerModelError(
                f"MediaPipe cannot load the Face Landmarker model {self.model_path}: {err}"
            ) from err

    def _find_faces(self, graph, rgb: np.ndarray, timestamp: float | None = None) -> list[np.ndarray]:
        mp, _, _ = _require_tasks()
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
        if graph is not self._mesh:  # a still-image graph
            result = graph.detect(image)
        else:
            # VIDEO mode wants strictly increasing integer milliseconds
            ms = self._last_ms + 1 if timestamp is None else max(int(round(1000.0 * timestamp)), self._last_ms + 1)
            self._last_ms = ms
            result = graph.detect_for_video(image, ms)
        h, w = rgb.shape[:2]
        found = []
        for i, face in enumerate(result.face_landmarks or []):
            if len(face) < NUM_VERTICES:
                raise LandmarkerModelError(
                    f"{self.model_path}: the model gave {len(face)} points per face, not {NUM_LANDMARKS}"
                )
            points = np.array([(p.x, p.y, p.z) for p in face[:NUM_VERTICES]], dtype=np.float64) * np.array([w, h, w])
            scores = None
            if result.face_blendshapes and i < len(result.face_blendshapes):
                scores = np.zeros(len(BLENDSHAPE_NAMES), dtype=np.float32)
                for category in result.face_blendshapes[i]:
                    if 0 <= category.index < len(scores):
                        scores[category.index] = category.score
            found.append((points, scores))
        if graph is not self._turned_mesh:  # every face looked at for this frame (the whole frame, then tiles)
            self._found += found
        return [points for points, _ in found]

    def detect(self, rgb: np.ndarray, timestamp: float | None = None) -> np.ndarray | None:
        """Track one frame: ``[468,3]`` pixel points of the chosen face (iris points dropped), or None."""
        self._found = []
        points = super().detect(rgb, timestamp)
        if self._chunk_scores is not None:
            scores = next((s for p, s in self._found if p is points), None) if points is not None else None
            self._chunk_scores.append(scores)
        return points

    def reconstruct_arrays(self, frames, timestamps, fps: float) -> dict[str, np.ndarray]:
        self._chunk_scores = []
        try:
            out = super().reconstruct_arrays(frames, timestamps, fps)
            scores = self._chunk_scores
        finally:
            self._chunk_scores = None
        if not self.blendshapes:
            return out
        expression = np.zeros((len(out["valid"]), len(BLENDSHAPE_NAMES)), dtype=np.float32)
        for i, row in enumerate(scores):
            if row is not None and out["valid"][i]:
                expression[i] = row
        return {**out, "expression": expression}

    def faces_in_frame(self, rgb: np.ndarray, timestamp: float | None = None) -> list[np.ndarray]:
        self._found = []
        return super().faces_in_frame(rgb, timestamp)

    def reconstruct_faces(self, rgb: np.ndarray, fps: float) -> dict[str, np.ndarray]:
        self._found = []
        out = super().reconstruct_faces(rgb, fps)
        if not self.blendshapes or "expression" in out:  # (one face or none: reconstruct_still's rows)
            return out
        return {**out, "expression": np.stack([self._scores_at(marks) for marks in out["landmarks2d"]])}

    def _scores_at(self, landmarks2d: np.ndarray) -> np.ndarray:
        """The blendshape scores of the face found with these iBUG-68 points (zeros if it had none)."""
        marks = self._topology.landmarks68
        found = (s for p, s in self._found if np.allclose(p[marks, :2], landmarks2d, atol=1e-2))
        scores = next(found, None)
        return np.zeros(len(BLENDSHAPE_NAMES), dtype=np.float32) if scores is None else scores

    def __getstate__(self) -> dict:
        return {**super().__getstate__(), "_found": [], "_chunk_scores": None}
