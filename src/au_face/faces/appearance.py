"""The brow appearance descriptor: HOG of an aligned brow-and-glabella patch of the image.

MediaPipe's mesh keeps a fraction of the brows' motion, and none of the furrows that AU4 (brow
lowerer) draws between them, so the mesh alone scores AU4 weakly on real faces (issue 15). The
image does show them. Per frame, the patch is cut with the eye centres of the 468 MediaPipe points
put at fixed places (eyes level, a fixed inter-ocular distance), histogram-equalised, and described
by a histogram of oriented gradients (Dalal & Triggs, 2005; OpenCV's ``HOGDescriptor``).
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

#: MediaPipe Face Mesh points around each eye (the subject's right eye, then the left).
RIGHT_EYE = (33, 133, 160, 159, 158, 144, 145, 153)
LEFT_EYE = (362, 263, 387, 386, 385, 373, 374, 380)
#: Patch width and height in pixels: the brows and the glabella, the eyes near the bottom edge.
PATCH_SIZE = (128, 64)
#: Inter-ocular distance in the patch, and how far above the bottom edge the eyes sit.
EYE_DISTANCE = 48.0
EYE_MARGIN = 14.0
#: HOG layout: 16 px blocks moved by 8 px, 8 px cells, 9 orientation bins.
_BLOCK, _STRIDE, _CELL, _BINS = 16, 8, 8, 9
#: Length of the descriptor.
DESCRIPTOR_SIZE = (
    ((PATCH_SIZE[0] - _BLOCK) // _STRIDE + 1)
    * ((PATCH_SIZE[1] - _BLOCK) // _STRIDE + 1)
    * (_BLOCK // _CELL) ** 2
    * _BINS
)


@lru_cache(maxsize=1)
def _hog() -> cv2.HOGDescriptor:
    return cv2.HOGDescriptor(PATCH_SIZE, (_BLOCK, _BLOCK), (_STRIDE, _STRIDE), (_CELL, _CELL), _BINS)


def patch_transform(points: np.ndarray) -> np.ndarray:
    """``[2,3]`` affine map from the image to the brow patch, given the 468 points ``[468,2+]`` in pixels."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[0] < 468 or points.shape[1] < 2:
        raise ValueError(f"points must be MediaPipe's [468,2] in pixels, got {list(points.shape)}")
    if not np.isfinite(points[list(RIGHT_EYE + LEFT_EYE), :2]).all():
        raise ValueError("the eye points are not finite: no brow patch")
    right, left = points[list(RIGHT_EYE), :2].mean(0), points[list(LEFT_EYE), :2].mean(0)
    axis = left - right
    distance = float(np.hypot(*axis))
    if not distance > 0:
        raise ValueError("the eye centres coincide: no brow patch")
    zoom = EYE_DISTANCE / distance
    c, s = zoom * axis / distance
    linear = np.array([[c, s], [-s, c]])
    target = np.array([PATCH_SIZE[0] / 2, PATCH_SIZE[1] - EYE_MARGIN])
    return np.hstack([linear, (target - linear @ ((right + left) / 2))[:, None]])


def brow_patch(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The aligned, histogram-equalised ``[64,128]`` uint8 grey brow patch of an RGB or grey ``image``
    (warped first, so only the patch's pixels are converted to grey)."""
    if image.dtype != np.uint8:
        raise ValueError(f"the image must be uint8 (as decoded), got {image.dtype}")
    patch = cv2.warpAffine(
        np.ascontiguousarray(image),
        patch_transform(points),
        PATCH_SIZE,
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return cv2.equalizeHist(cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY) if patch.ndim == 3 else patch)


def brow_descriptor(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The ``[DESCRIPTOR_SIZE]`` float32 HOG descriptor of :func:`brow_patch`."""
    return np.asarray(_hog().compute(brow_patch(image, points)), dtype=np.float32).reshape(-1)
