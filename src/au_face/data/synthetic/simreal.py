"""Sim-to-real frames: painted ICT renders in varied views, for the real coarse reconstructor.

The synthetic generator (:mod:`au_face.data.synthetic.generate`) with ``coarse_source="mediapipe"`` renders
every frame of the whole ICT face region (forehead, ears and jaw line included) with painted
brows, lips, eyes (sclera, iris, pupil) and teeth, in a random view, scale and position, under
random light over a random background, then blurs, adds noise and JPEG-compresses it. The real
MediaPipe reconstructor then runs on these images, so the coarse input the model trains on has
MediaPipe's own errors, exactly as at inference.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

#: ICT region rendered for the reconstructor (the narrow face is the ground truth's region).
RENDER_REGION = "face"

_HAIR_DARK = np.array([0.06, 0.04, 0.03])
_HAIR_LIGHT = np.array([0.55, 0.42, 0.28])
_IRIS_COLOURS = np.array([[0.25, 0.15, 0.08], [0.35, 0.25, 0.12], [0.25, 0.35, 0.45], [0.3, 0.38, 0.25]])
_LIP_TINT = np.array([1.0, 0.62, 0.62])
_SCLERA = np.array([0.86, 0.84, 0.80])
_TEETH = np.array([0.88, 0.85, 0.76])
_MOUTH = np.array([0.28, 0.09, 0.09])

#: iBUG-68 landmark groups.
_RIGHT_BROW, _LEFT_BROW = list(range(17, 22)), list(range(22, 27))
_RIGHT_EYE, _LEFT_EYE = list(range(36, 42)), list(range(42, 48))
_OUTER_LIPS, _INNER_LIPS = list(range(48, 60)), list(range(60, 68))
_UPPER_INNER_LIP, _LOWER_INNER_LIP = [60, 61, 62, 63, 64], [64, 65, 66, 67, 60]


@dataclass(frozen=True)
class Appearance:
    """One identity's colours (linear RGB in [0,1])."""

    skin: np.ndarray
    hair: np.ndarray
    iris: np.ndarray

    @classmethod
    def random(cls, rng: np.random.Generator, skin: np.ndarray) -> Appearance:
        hair = _HAIR_DARK + rng.uniform(0, 1) ** 2 * (_HAIR_LIGHT - _HAIR_DARK)
        return cls(skin=skin, hair=hair, iris=_IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))] * rng.uniform(0.7, 1.2))


def face_albedo(neutral: np.ndarray, landmarks68: np.ndarray, appearance: Appearance) -> np.ndarray:
    """``[V,3]`` vertex colours: skin, darker brows along the brow landmarks, tinted lips.

    ``neutral`` ``[V,3]`` is the identity's neutral ICT mesh (model frame: x right, y up, z
    towards the viewer); regions are found in its frontal (x, y) projection, front surface only.
    """
    xy, z = neutral[:, :2], neutral[:, 2]
    lm = neutral[landmarks68]
    eye_width = float(np.linalg.norm(lm[36] - lm[45]))
    front = z > np.percentile(z, 30)
    colour = np.tile(appearance.skin, (len(neutral), 1))
    brow = np.zeros(len(neutral))
    for group in (_RIGHT_BROW, _LEFT_BROW):
        distance = _polyline_distance(xy, lm[group, :2])
        brow = np.maximum(brow, np.clip(1.0 - distance / (0.045 * eye_width), 0.0, 1.0))
    brow *= front
    lips = _inside(xy, lm[_OUTER_LIPS, :2]) & front
    colour = colour * (1 - 0.85 * brow[:, None]) + 0.85 * brow[:, None] * appearance.hair
    colour[lips] *= _LIP_TINT
    return np.clip(colour, 0.0, 1.0)


def _polyline_distance(points: np.ndarray, polyline: np.ndarray) -> np.ndarray:
    """Distance of each 2D point to a polyline ``[N,2]``."""
    best = np.full(len(points), np.inf)
    for a, b in zip(polyline[:-1], polyline[1:]):
        ab = b - a
        t = np.clip(((points - a) @ ab) / max(float(ab @ ab), 1e-12), 0.0, 1.0)
        best = np.minimum(best, np.linalg.norm(points - (a + t[:, None] * ab), axis=1))
    return best


def _inside(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Points strictly inside a 2D polygon (even-odd rule)."""
    x, y = points[:, 0], points[:, 1]
    inside = np.zeros(len(points), dtype=bool)
    for (x1, y1), (x2, y2) in zip(polygon, np.roll(polygon, -1, axis=0)):
        crosses = (y1 > y) != (y2 > y)
        x_cross = x1 + (y - y1) * (x2 - x1) / np.where(y2 == y1, 1e-12, y2 - y1)
        inside ^= crosses & (x < x_cross)
    return inside


def paint_openings(
    image: np.ndarray, hit: np.ndarray, landmarks2d: np.ndarray, appearance: Appearance, light: float
) -> np.ndarray:
    """Fill the eye and mouth openings (pixels no ray hit inside their landmark polygons).

    Eyes get sclera with an iris and pupil at the opening's centre; the mouth gets a dark cavity
    with upper and lower teeth along the inner lips. ``light`` scales the colours.
    """
    out = image.copy()
    size = (image.shape[0], image.shape[1])
    holes = ~hit
    eye_width = float(np.linalg.norm(landmarks2d[36] - landmarks2d[45]))
    for group in (_RIGHT_EYE, _LEFT_EYE):
        opening = _polygon_mask(size, landmarks2d[group]) & holes
        if not opening.any():
            continue
        centre = landmarks2d[group].mean(axis=0)
        iris_radius = 0.085 * eye_width
        iris = _disc_mask(size, centre, iris_radius)
        pupil = _disc_mask(size, centre, 0.4 * iris_radius)
        out[opening] = _to_uint8(_SCLERA * light)
        out[opening & iris] = _to_uint8(appearance.iris * light)
        out[opening & pupil] = _to_uint8(np.full(3, 0.03))
    mouth = _polygon_mask(size, landmarks2d[_INNER_LIPS]) & holes
    if mouth.any():
        width = float(np.linalg.norm(landmarks2d[60] - landmarks2d[64]))
        out[mouth] = _to_uint8(_MOUTH * light)
        for lip, share in ((_UPPER_INNER_LIP, 0.22), (_LOWER_INNER_LIP, 0.12)):
            band = np.zeros(size, dtype=np.uint8)
            cv2.polylines(
                band, [np.round(landmarks2d[lip]).astype(np.int32)], False, (1,), max(1, int(round(share * width)))
            )
            out[mouth & (band > 0)] = _to_uint8(_TEETH * light)
    return out


def _polygon_mask(size: tuple[int, int], polygon: np.ndarray) -> np.ndarray:
    mask = np.zeros(size, dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], (1,))
    return mask > 0


def _disc_mask(size: tuple[int, int], centre: np.ndarray, radius: float) -> np.ndarray:
    rows, cols = np.ogrid[: size[0], : size[1]]
    return (cols + 0.5 - centre[0]) ** 2 + (rows + 0.5 - centre[1]) ** 2 <= radius**2


def _to_uint8(rgb: np.ndarray) -> np.ndarray:
    return np.round(255 * np.clip(rgb, 0.0, 1.0)).astype(np.uint8)


@dataclass(frozen=True)
class Degradation:
    """Camera-like degradation of one sequence: blur, sensor noise, JPEG compression."""

    blur_sigma: float
    noise_sigma: float
    jpeg_quality: int

    @classmethod
    def random(cls, rng: np.random.Generator) -> Degradation:
        return cls(float(rng.uniform(0.0, 1.2)), float(rng.uniform(0.0, 5.0)), int(rng.integers(35, 96)))

    def apply(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = image
        if self.blur_sigma > 0.2:
            out = cv2.GaussianBlur(out, (0, 0), self.blur_sigma)
        if self.noise_sigma > 0:
            out = np.clip(out + rng.normal(0.0, self.noise_sigma, size=out.shape), 0, 255).astype(np.uint8)
        ok, encoded = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        return cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED) if ok else out


def sample_view(rng: np.random.Generator, view_range_deg: tuple[float, float, float]) -> np.ndarray:
    """Per-sequence base view ``(pitch, yaw, roll)`` in radians: normal with std half the range,
    clipped to the range (``view_range_deg`` is yaw, pitch, roll in degrees)."""
    yaw, pitch, roll = (np.radians(r) * float(np.clip(rng.normal(0.0, 0.5), -1.0, 1.0)) for r in view_range_deg)
    return np.array([pitch, yaw, roll])


def view_rotation(base: np.ndarray, wobble: np.ndarray) -> np.ndarray:
    """``[T,3,3]`` model-frame rotations: the base view ``(pitch, yaw, roll)`` plus per-frame wobble ``[T,3]``."""
    return Rotation.from_euler("xyz", base[None] + wobble).as_matrix()


__all__ = [
    "Appearance",
    "Degradation",
    "RENDER_REGION",
    "face_albedo",
    "paint_openings",
    "sample_view",
    "view_rotation",
]
