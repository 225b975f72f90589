"""The built-in demo clip: a still face photo under a smooth synthetic camera motion.

The clip is made from scikit-image's public-domain ``astronaut()`` portrait (NASA photo of
Eileen Collins) by warping it with slowly varying rotation, zoom and translation. It exercises
face tracking, pose, mesh output and the overlay video without any user file. It does NOT show
facial expressions or AU activity: the face itself never moves, only the virtual camera.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from au_face.errors import AUFaceError
from au_face.utils.files import atomic_path, user_cache_dir

DEMO_FRAMES = 48
DEMO_FPS = 25.0
DEMO_SIZE = 360
#: Face centre (x, y) in the 512x512 astronaut photo, and the zoom that makes the face ~120 px wide.
_FACE_CENTRE = (224.0, 128.0)
_BASE_ZOOM = 1.35
#: Bump when the clip's content changes, so stale cached copies are not reused.
_VERSION = 1


class DemoUnavailableError(AUFaceError, ImportError):
    """scikit-image (which ships the demo photo) is not installed."""


def _photo() -> np.ndarray:
    try:
        from skimage import data
    except ImportError as err:
        raise DemoUnavailableError(
            "the demo clip is made from scikit-image's astronaut photo: pip install 'au_face[demo]'"
        ) from err
    return data.astronaut()


def camera_motion(num_frames: int) -> np.ndarray:
    """``[T,4]`` per-frame camera: roll angle (degrees), zoom factor, shift x and y (pixels).

    One smooth, looping period: up to 8 degrees of roll, 12 % zoom and 20 px of drift.
    """
    phase = 2.0 * np.pi * np.arange(num_frames) / num_frames
    angle = 8.0 * np.sin(phase)
    zoom = _BASE_ZOOM * (1.0 + 0.06 * (1.0 - np.cos(phase)))
    dx = 20.0 * np.sin(phase + 0.7)
    dy = 10.0 * np.sin(2.0 * phase)
    return np.stack([angle, zoom, dx, dy], axis=1)


def render_demo_frames(num_frames: int = DEMO_FRAMES, size: int = DEMO_SIZE) -> list[np.ndarray]:
    """The demo frames as RGB uint8 ``[size,size,3]`` arrays."""
    photo = _photo()
    frames = []
    for angle, zoom, dx, dy in camera_motion(num_frames):
        warp = np.asarray(cv2.getRotationMatrix2D(_FACE_CENTRE, float(angle), float(zoom)), dtype=np.float64)
        warp[:, 2] += np.array([size / 2 - _FACE_CENTRE[0] + dx, size / 2 - _FACE_CENTRE[1] + dy])
        frames.append(cv2.warpAffine(photo, warp, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
    return frames


def demo_video(cache_dir: str | Path | None = None, num_frames: int = DEMO_FRAMES, fps: float = DEMO_FPS) -> Path:
    """Path of the demo MP4, written to ``cache_dir`` (default the au_face cache) on first use."""
    folder = Path(cache_dir) if cache_dir is not None else user_cache_dir()
    path = folder / f"demo_astronaut_v{_VERSION}_{num_frames}f_{fps:g}fps.mp4"
    if path.is_file():
        return path
    frames = render_demo_frames(num_frames)
    with atomic_path(path) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter.fourcc(*"mp4v"), fps, (DEMO_SIZE, DEMO_SIZE))
        if not writer.isOpened():
            raise AUFaceError(f"OpenCV cannot write the demo clip to {path}")
        for rgb in frames:
            writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        writer.release()
    return path
