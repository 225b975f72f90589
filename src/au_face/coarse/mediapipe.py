"""MediaPipe Face Mesh as a coarse reconstructor: 468 tracked points, rigid pose, aligned crops."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from au_face.coarse.base import CoarseFrames, CoarseReconstructor
from au_face.errors import AUFaceError
from au_face.faces.align import similarity_fit, similarity_residual
from au_face.faces.mediapipe import (
    NUM_VERTICES,
    STABLE_VERTICES,
    mediapipe_topology,
    require_face_mesh,
)
from au_face.faces.topology import FaceTopology

#: Crop side = this many times the template's larger extent (face width or height).
CROP_MARGIN = 1.3
#: RMS residual of the pose fit over the stable vertices (template units, about cm) that gives
#: confidence 0.5. A well-tracked face has 0.3-0.55 (the template is not the subject's face).
HALF_CONFIDENCE_RESIDUAL = 1.0


def fit_confidence(residual: np.ndarray) -> np.ndarray:
    """Confidence in [0, 1] from the pose-fit residual: ``1 / (1 + (residual / HALF_CONFIDENCE_RESIDUAL)^4)``."""
    return 1.0 / (1.0 + (np.asarray(residual) / HALF_CONFIDENCE_RESIDUAL) ** 4)


class FrameFormatError(AUFaceError, ValueError):
    """A frame that is not an RGB uint8 image ``[H,W,3]``."""


class MediaPipeReconstructor(CoarseReconstructor):
    """MediaPipe Face Mesh (legacy solution, tracking mode, one face) on each frame.

    Per frame: the 468 points in pixels (x, y, and depth in x's pixel units); a similarity pose
    fitted to the template over :data:`~au_face.faces.mediapipe.STABLE_VERTICES`; canonical
    ``vertices`` = the points with that pose removed (so ``posed_vertices()`` gives the points
    back); iBUG-68 ``landmarks2d``; an aligned ``crop_size`` square RGB crop (eyes level,
    face centred); and ``confidence`` from the fit residual (:func:`fit_confidence`). Frames
    without a face are ``valid=False`` with zeros.

    Args:
        crop_size: side of the aligned crops in pixels (0 for none).
        min_detection_confidence, min_tracking_confidence: Face Mesh thresholds.
    """

    name = "mediapipe"
    version = "2"  # 2: pose fitted without the forehead (brows keep their motion)

    def __init__(
        self, crop_size: int = 112, min_detection_confidence: float = 0.5, min_tracking_confidence: float = 0.5
    ) -> None:
        require_face_mesh()  # fail early with an install hint
        self.crop_size = int(crop_size)
        self.min_detection_confidence = min_detection_confidence
        self.min_tracking_confidence = min_tracking_confidence
        self._topology = mediapipe_topology()
        template = self._topology.template.astype(np.float64)
        self._stable_template = template[STABLE_VERTICES]
        low, high = template[:, :2].min(axis=0), template[:, :2].max(axis=0)
        self._crop_centre = np.array([(low[0] + high[0]) / 2, (low[1] + high[1]) / 2, 0.0])
        self._crop_extent = CROP_MARGIN * float((high - low).max())
        self._mesh = None

    @property
    def topology(self) -> FaceTopology:
        return self._topology

    def reset(self) -> None:
        """Start a new Face Mesh graph (forgets the tracked face)."""
        self.close()
        self._mesh = require_face_mesh().FaceMesh(
            static_image_mode=False,
            max_num_faces=1,
            refine_landmarks=False,
            min_detection_confidence=self.min_detection_confidence,
            min_tracking_confidence=self.min_tracking_confidence,
        )

    def close(self) -> None:
        """Free the Face Mesh graph."""
        if self._mesh is not None:
            self._mesh.close()
            self._mesh = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_mesh": None}  # the graph cannot be pickled; a copy starts untracked

    def detect(self, rgb: np.ndarray) -> np.ndarray | None:
        """Track one frame: ``[468,3]`` pixel points, or None without a face."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise FrameFormatError(f"frames must be RGB uint8 [H,W,3], got {rgb.dtype} {rgb.shape}")
        if self._mesh is None:
            self.reset()
        result = self._mesh.process(np.ascontiguousarray(rgb))
        if not result.multi_face_landmarks:
            return None
        h, w = rgb.shape[:2]
        landmarks = result.multi_face_landmarks[0].landmark
        points = np.array([(p.x, p.y, p.z) for p in landmarks], dtype=np.float64)[:NUM_VERTICES]
        return points * np.array([w, h, w])

    def reconstruct(self, frames: Sequence[np.ndarray], timestamps: Sequence[float], fps: float) -> CoarseFrames:
        n = len(frames)
        if len(timestamps) != n:
            raise FrameFormatError(f"{n} frames but {len(timestamps)} timestamps")
        points = np.zeros((n, NUM_VERTICES, 3))
        valid = np.zeros(n, dtype=bool)
        for i, rgb in enumerate(frames):
            detected = self.detect(rgb)
            if detected is not None:
                points[i], valid[i] = detected, True
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
        return CoarseFrames(
            vertices=torch.from_numpy(vertices.astype(np.float32)),
            valid=torch.from_numpy(valid),
            rotation=torch.from_numpy(rotation.astype(np.float32)),
            translation=torch.from_numpy(translation.astype(np.float32)),
            scale=torch.from_numpy(scale.astype(np.float32)),
            landmarks2d=torch.from_numpy(landmarks.astype(np.float32)),
            timestamps=torch.as_tensor(np.asarray(timestamps, dtype=np.float64)),
            fps=float(fps),
            topology=self._topology.name,
            crops=None if crops is None else torch.from_numpy(crops),
            confidence=torch.from_numpy(confidence.astype(np.float32)),
        )

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
