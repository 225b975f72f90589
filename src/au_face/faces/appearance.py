"""The brow appearance descriptor: HOG of an aligned brow-and-glabella patch of the image.

MediaPipe's mesh keeps a fraction of the brows' motion, and none of the furrows that AU4 (brow
lowerer) draws between them, so the mesh alone scores AU4 weakly on real faces (issue 15). The
image does show them. Per frame, the patch is cut with the eye centres of the 468 MediaPipe points
put at fixed places (eyes level, a fixed inter-ocular distance), histogram-equalised, and described
by a histogram of oriented gradients (Dalal & Triggs, 2005; OpenCV's ``HOGDescriptor``).

A larger face is area-averaged down to the patch's scale first (as a camera further away would see
it), so faces of any size above :data:`MIN_EYE_DISTANCE` give comparable descriptors. There is no
descriptor (NaN: the model's head leaves the frame alone) for a smaller face, which would be
enlarged more than twice, or for one whose patch lies more than :data:`MAX_OUTSIDE` outside the
image (a tight face crop): the border, repeated outward, reads as strong edges.
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
#: Faces whose eye centres are closer than this in the image (pixels) get no descriptor.
MIN_EYE_DISTANCE = 24.0
#: Faces whose patch lies more than this share outside the image get no descriptor.
MAX_OUTSIDE = 0.2
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


def eye_distance(points: np.ndarray) -> float:
    """Distance in pixels between the eye centres of the 468 points (``ValueError`` as :func:`patch_transform`)."""
    return EYE_DISTANCE / _zoom(patch_transform(points))


def outside_share(image_shape: tuple[int, ...], points: np.ndarray) -> float:
    """The share of the brow patch's pixels whose nearest image pixel lies outside an image of
    ``image_shape`` (rows, columns, ...)."""
    return _outside(image_shape, patch_transform(points))


def brow_patch(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The aligned, histogram-equalised ``[64,128]`` uint8 grey brow patch of an RGB or grey ``image``
    (warped first, so only the patch's pixels are turned grey; a face larger than the patch's scale
    is area-averaged down to it first)."""
    return _patch(image, patch_transform(points))


def brow_descriptor(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The ``[DESCRIPTOR_SIZE]`` float32 HOG descriptor of :func:`brow_patch`; NaN for a face whose eye
    centres are closer than :data:`MIN_EYE_DISTANCE` pixels or whose patch lies more than
    :data:`MAX_OUTSIDE` outside the image."""
    transform = patch_transform(points)
    if EYE_DISTANCE / _zoom(transform) < MIN_EYE_DISTANCE or _outside(image.shape, transform) > MAX_OUTSIDE:
        return np.full(DESCRIPTOR_SIZE, np.nan, dtype=np.float32)
    return np.asarray(_hog().compute(_patch(image, transform)), dtype=np.float32).reshape(-1)


#: The patch's pixels (x, y), whose places in the image say how much of the patch is outside it.
_PIXELS = np.stack(np.meshgrid(np.arange(PATCH_SIZE[0]), np.arange(PATCH_SIZE[1])), axis=-1).reshape(-1, 2)
_CORNERS = np.array([[0, 0], [PATCH_SIZE[0] - 1, 0], [0, PATCH_SIZE[1] - 1], [PATCH_SIZE[0] - 1, PATCH_SIZE[1] - 1]])


def _zoom(transform: np.ndarray) -> float:
    return float(np.hypot(transform[0, 0], transform[0, 1]))


def _outside(image_shape: tuple[int, ...], transform: np.ndarray) -> float:
    inverse = cv2.invertAffineTransform(transform)

    def inside(places: np.ndarray) -> np.ndarray:
        return (
            (places >= -0.5).all(axis=1) & (places[:, 0] < image_shape[1] - 0.5) & (places[:, 1] < image_shape[0] - 0.5)
        )

    if inside(_CORNERS @ inverse[:, :2].T + inverse[:, 2]).all():
        return 0.0  # the patch is convex: its corner pixels inside, all of it inside
    return 1.0 - float(inside(_PIXELS @ inverse[:, :2].T + inverse[:, 2]).mean())


def _patch(image: np.ndarray, transform: np.ndarray) -> np.ndarray:
    if image.dtype != np.uint8:
        raise ValueError(f"the image must be uint8 (as decoded), got {image.dtype}")
    zoom = _zoom(transform)
    if zoom < 1.0:  # shrink the patch's region with area averaging, then warp at unit scale
        corners = (
            cv2.invertAffineTransform(transform)
            @ np.array(
                [[0, 0, 1], [PATCH_SIZE[0], 0, 1], [0, PATCH_SIZE[1], 1], [PATCH_SIZE[0], PATCH_SIZE[1], 1]], float
            ).T
        )
        low = np.maximum(np.floor(corners.min(axis=1)) - 2, 0).astype(int)
        high = np.minimum(np.ceil(corners.max(axis=1)) + 2, image.shape[1::-1]).astype(int)
        if (high > low).all():
            region = image[low[1] : high[1], low[0] : high[0]]
            size = (max(1, round(region.shape[1] * zoom)), max(1, round(region.shape[0] * zoom)))
            image = cv2.resize(region, size, interpolation=cv2.INTER_AREA)
            scale = np.array([region.shape[1] / size[0], region.shape[0] / size[1]])
            transform = np.hstack([transform[:, :2] * scale, (transform[:, :2] @ low + transform[:, 2])[:, None]])
    patch = cv2.warpAffine(
        np.ascontiguousarray(image), transform, PATCH_SIZE, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return cv2.equalizeHist(cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY) if patch.ndim == 3 else patch)
