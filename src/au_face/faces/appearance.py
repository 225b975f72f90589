"""The appearance descriptor: HOGs of aligned brow and mouth patches of the image.

MediaPipe's mesh keeps a fraction of the brows' motion, and none of the furrows that AU4 (brow
lowerer) draws between them, so the mesh alone scores AU4 weakly on real faces (issue 15). Around
the mouth it keeps the corners' motion but not the folds and creases that AU6, AU9, AU10, AU12 and
AU15 draw in the cheeks, the nasolabial furrows and the skin below the corners. The image does show
them, and the eyelids too, of which the mesh keeps 9–25 % of the motion (AU5, AU7; the brow patch
holds the eyes at its bottom edge). Per frame, two patches (:data:`REGIONS`) are cut with the eye
centres of the 468 MediaPipe points put at fixed places (eyes level, a fixed inter-ocular distance),
histogram-equalised, and described by a histogram of oriented gradients (Dalal & Triggs, 2005;
OpenCV's ``HOGDescriptor``); the descriptor is the brow part, then the mouth part.

A larger face is area-averaged down to the patches' scale first (as a camera further away would see
it), so faces of any size above :data:`MIN_EYE_DISTANCE` give comparable descriptors. A part is
absent (NaN: a model's head leaves the AUs it reads alone) for a smaller face, which would be
enlarged more than twice, or where its patch lies more than :data:`MAX_OUTSIDE` outside the image (a
tight face crop): the border, repeated outward, reads as strong edges.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

#: MediaPipe Face Mesh points around each eye (the subject's right eye, then the left).
RIGHT_EYE = (33, 133, 160, 159, 158, 144, 145, 153)
LEFT_EYE = (362, 263, 387, 386, 385, 373, 374, 380)
#: Inter-ocular distance in every patch (pixels).
EYE_DISTANCE = 48.0
#: Faces whose eye centres are closer than this in the image (pixels) get no descriptor.
MIN_EYE_DISTANCE = 24.0
#: A part whose patch lies more than this share outside the image is absent.
MAX_OUTSIDE = 0.2
#: HOG layout: 16 px blocks moved by 8 px, 8 px cells, 9 orientation bins.
_BLOCK, _STRIDE, _CELL, _BINS = 16, 8, 8, 9


@dataclass(frozen=True)
class Region:
    """An aligned patch: ``size`` (width, height) in pixels, the eye centres' midpoint at ``eyes`` (x, y;
    negative y: above the patch), and the AUs whose appearance it shows (what a head may read from it)."""

    name: str
    size: tuple[int, int]
    eyes: tuple[float, float]
    aus: tuple[int, ...]

    @property
    def descriptor_size(self) -> int:
        """Length of the region's HOG."""
        blocks = ((self.size[0] - _BLOCK) // _STRIDE + 1) * ((self.size[1] - _BLOCK) // _STRIDE + 1)
        return blocks * (_BLOCK // _CELL) ** 2 * _BINS


#: Patch width and height, and how far above the bottom edge the eyes sit, of the brow patch.
PATCH_SIZE = (128, 64)
EYE_MARGIN = 14.0
#: The brows and the glabella, the eyes near the bottom edge: AU1, AU2 and AU4, and on its eye rows
#: (:data:`EYELID_TOP`) the eyelids' AU5 and AU7.
BROW = Region("brow", PATCH_SIZE, (PATCH_SIZE[0] / 2, PATCH_SIZE[1] - EYE_MARGIN), (1, 2, 4, 5, 7))
#: The eyelid AUs (upper lid raiser, lid tightener) read only the brow patch's rows from here down (10 px
#: above the eye centres to the bottom edge, 14 px below them): the lids and the eye opening, not the
#: brows, whose lowering in anger (AU7's only positive expression) would stand in for the lids.
EYELID_AUS = (5, 7)
EYELID_TOP = 40
#: From just below the eyes to the lower lip, cheek to cheek: the nasolabial furrows, the mouth corners
#: and the skin around them (rows 8-72 px below the eyes; the chin is left out, since tight face crops
#: cut it).
MOUTH = Region("mouth", (112, 64), (56.0, -8.0), (6, 9, 10, 12, 15))
#: The descriptor's parts, in order.
REGIONS = (BROW, MOUTH)
#: Length of the descriptor.
DESCRIPTOR_SIZE = sum(region.descriptor_size for region in REGIONS)


def region_part(region: Region) -> slice:
    """Where ``region``'s HOG sits in the descriptor."""
    start = 0
    for other in REGIONS:
        if other == region:
            return slice(start, start + region.descriptor_size)
        start += other.descriptor_size
    raise ValueError(f"{region.name!r} is not one of the descriptor's regions")


def region_of(au: int) -> Region | None:
    """The region whose appearance shows ``au`` (None: neither)."""
    return next((region for region in REGIONS if au in region.aus), None)


def au_columns(au: int) -> np.ndarray:
    """The descriptor entries a head's row for ``au`` reads: its region's whole part, or for the eyelid
    AUs (:data:`EYELID_AUS`) the part's HOG blocks that lie at or below :data:`EYELID_TOP` in the
    patch (OpenCV orders blocks column by column, each block's 36 values together). Empty for an AU no
    region shows."""
    region = region_of(au)
    if region is None:
        return np.zeros(0, dtype=np.int64)
    part = region_part(region)
    if au not in EYELID_AUS:
        return np.arange(part.start, part.stop)
    rows = (region.size[1] - _BLOCK) // _STRIDE + 1
    per_block = (_BLOCK // _CELL) ** 2 * _BINS
    blocks = [b for b in range(region.descriptor_size // per_block) if (b % rows) * _STRIDE >= EYELID_TOP]
    return part.start + np.array([b * per_block + i for b in blocks for i in range(per_block)], dtype=np.int64)


@lru_cache(maxsize=len(REGIONS))
def _hog(size: tuple[int, int]) -> cv2.HOGDescriptor:
    return cv2.HOGDescriptor(size, (_BLOCK, _BLOCK), (_STRIDE, _STRIDE), (_CELL, _CELL), _BINS)


def patch_transform(points: np.ndarray, region: Region = BROW) -> np.ndarray:
    """``[2,3]`` affine map from the image to ``region``'s patch, given the 468 points ``[468,2+]`` in pixels."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[0] < 468 or points.shape[1] < 2:
        raise ValueError(f"points must be MediaPipe's [468,2] in pixels, got {list(points.shape)}")
    if not np.isfinite(points[list(RIGHT_EYE + LEFT_EYE), :2]).all():
        raise ValueError("the eye points are not finite: no face patch")
    right, left = points[list(RIGHT_EYE), :2].mean(0), points[list(LEFT_EYE), :2].mean(0)
    axis = left - right
    distance = float(np.hypot(*axis))
    if not distance > 0:
        raise ValueError("the eye centres coincide: no face patch")
    zoom = EYE_DISTANCE / distance
    c, s = zoom * axis / distance
    linear = np.array([[c, s], [-s, c]])
    return np.hstack([linear, (np.asarray(region.eyes) - linear @ ((right + left) / 2))[:, None]])


def eye_distance(points: np.ndarray) -> float:
    """Distance in pixels between the eye centres of the 468 points (``ValueError`` as :func:`patch_transform`)."""
    return EYE_DISTANCE / _zoom(patch_transform(points))


def outside_share(image_shape: tuple[int, ...], points: np.ndarray, region: Region = BROW) -> float:
    """The share of ``region``'s patch pixels whose nearest image pixel lies outside an image of
    ``image_shape`` (rows, columns, ...)."""
    return _outside(image_shape, patch_transform(points, region), region.size)


def face_patch(image: np.ndarray, points: np.ndarray, region: Region = BROW) -> np.ndarray:
    """The aligned, histogram-equalised ``[height,width]`` uint8 grey patch of ``region`` in an RGB or grey
    ``image`` (warped first, so only the patch's pixels are turned grey; a face larger than the patch's
    scale is area-averaged down to it first)."""
    return _patch(image, patch_transform(points, region), region.size)


def appearance_descriptor(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The ``[DESCRIPTOR_SIZE]`` float32 descriptor: the HOG of each region's :func:`face_patch`, in
    :data:`REGIONS` order. All NaN for a face whose eye centres are closer than :data:`MIN_EYE_DISTANCE`
    pixels; a region's part NaN where its patch lies more than :data:`MAX_OUTSIDE` outside the image."""
    descriptor = np.full(DESCRIPTOR_SIZE, np.nan, dtype=np.float32)
    transforms = [patch_transform(points, region) for region in REGIONS]  # one zoom: the eyes' distance
    if EYE_DISTANCE / _zoom(transforms[0]) < MIN_EYE_DISTANCE:
        return descriptor
    for region, transform in zip(REGIONS, transforms):
        if _outside(image.shape, transform, region.size) <= MAX_OUTSIDE:
            patch = _patch(image, transform, region.size)
            descriptor[region_part(region)] = np.asarray(_hog(region.size).compute(patch)).reshape(-1)
    return descriptor


def _zoom(transform: np.ndarray) -> float:
    return float(np.hypot(transform[0, 0], transform[0, 1]))


def _corners(size: tuple[int, int]) -> np.ndarray:
    return np.array([[0, 0], [size[0] - 1, 0], [0, size[1] - 1], [size[0] - 1, size[1] - 1]], dtype=float)


@lru_cache(maxsize=len(REGIONS))
def _pixels(size: tuple[int, int]) -> np.ndarray:
    """The patch's pixels (x, y), whose places in the image say how much of the patch is outside it."""
    return np.stack(np.meshgrid(np.arange(size[0]), np.arange(size[1])), axis=-1).reshape(-1, 2)


def _outside(image_shape: tuple[int, ...], transform: np.ndarray, size: tuple[int, int]) -> float:
    inverse = cv2.invertAffineTransform(transform)

    def inside(places: np.ndarray) -> np.ndarray:
        return (
            (places >= -0.5).all(axis=1) & (places[:, 0] < image_shape[1] - 0.5) & (places[:, 1] < image_shape[0] - 0.5)
        )

    if inside(_corners(size) @ inverse[:, :2].T + inverse[:, 2]).all():
        return 0.0  # the patch is convex: its corner pixels inside, all of it inside
    return 1.0 - float(inside(_pixels(size) @ inverse[:, :2].T + inverse[:, 2]).mean())


def _patch(image: np.ndarray, transform: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if image.dtype != np.uint8:
        raise ValueError(f"the image must be uint8 (as decoded), got {image.dtype}")
    zoom = _zoom(transform)
    if zoom < 1.0:  # shrink the patch's region with area averaging, then warp at unit scale
        corners = (
            cv2.invertAffineTransform(transform)
            @ np.array([[0, 0, 1], [size[0], 0, 1], [0, size[1], 1], [size[0], size[1], 1]], float).T
        )
        low = np.maximum(np.floor(corners.min(axis=1)) - 2, 0).astype(int)
        high = np.minimum(np.ceil(corners.max(axis=1)) + 2, image.shape[1::-1]).astype(int)
        if (high > low).all():
            region = image[low[1] : high[1], low[0] : high[0]]
            shrunk = (max(1, round(region.shape[1] * zoom)), max(1, round(region.shape[0] * zoom)))
            image = cv2.resize(region, shrunk, interpolation=cv2.INTER_AREA)
            scale = np.array([region.shape[1] / shrunk[0], region.shape[0] / shrunk[1]])
            transform = np.hstack([transform[:, :2] * scale, (transform[:, :2] @ low + transform[:, 2])[:, None]])
    patch = cv2.warpAffine(
        np.ascontiguousarray(image), transform, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return cv2.equalizeHist(cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY) if patch.ndim == 3 else patch)
