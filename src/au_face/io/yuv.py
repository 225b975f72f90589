"""Pictures as planar YUV 4:2:0 (I420, BT.601 as OpenCV and ffmpeg convert it), the form the overlay
keeps, draws on and hands to x264: a frame is converted once after decoding instead of three times
(to I420 to keep it, back to BGR to draw on, to I420 again to encode; about 1.5 ms a 640x360 frame).

An I420 picture of ``width x height`` (both even) is a ``uint8`` array ``[height * 3 // 2, width]``:
the luma plane, then the two chroma planes at half size, each stored contiguously.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True, slots=True)
class PackedFrame:
    """A frame kept as I420: ``index`` in the source, ``timestamp`` in seconds, ``i420`` ``[H*3/2, W]``."""

    index: int
    timestamp: float
    i420: np.ndarray


def even_size(size: tuple[int, int]) -> tuple[int, int]:
    """``(width, height)`` rounded up to even numbers (4:2:0 needs them)."""
    return size[0] + size[0] % 2, size[1] + size[1] % 2


def i420_size(i420: np.ndarray) -> tuple[int, int]:
    """``(width, height)`` of an I420 picture."""
    return i420.shape[1], i420.shape[0] * 2 // 3


def to_i420(image: np.ndarray, rgb: bool = False) -> np.ndarray:
    """A BGR (or, with ``rgb``, RGB) ``[H,W,3]`` image as I420, an odd width or height padded by one
    edge pixel."""
    pad_y, pad_x = image.shape[0] % 2, image.shape[1] % 2
    if pad_x or pad_y:
        image = cv2.copyMakeBorder(image, 0, pad_y, 0, pad_x, cv2.BORDER_REPLICATE)
    return cv2.cvtColor(image, cv2.COLOR_RGB2YUV_I420 if rgb else cv2.COLOR_BGR2YUV_I420)


def to_bgr(i420: np.ndarray) -> np.ndarray:
    """An I420 picture as BGR ``[H,W,3]``."""
    return cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420)


def planes(i420: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of the Y ``[H,W]``, U and V ``[H/2,W/2]`` planes of a contiguous I420 picture."""
    width, height = i420_size(i420)
    flat = i420.reshape(-1)
    luma, chroma = width * height, (width // 2) * (height // 2)
    u = flat[luma : luma + chroma].reshape(height // 2, width // 2)
    v = flat[luma + chroma : luma + 2 * chroma].reshape(height // 2, width // 2)
    return i420[:height], u, v


def paste(dst: np.ndarray, src: np.ndarray, x: int, y: int = 0) -> None:
    """Copy I420 picture ``src`` into I420 picture ``dst`` with its top left at even ``(x, y)``."""
    if x % 2 or y % 2:
        raise ValueError(f"an I420 picture is pasted at even coordinates, got ({x}, {y})")
    width, height = i420_size(src)
    for d, s, k in zip(planes(dst), planes(src), (1, 2, 2)):
        d[y // k : (y + height) // k, x // k : (x + width) // k] = s


def crop(i420: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """A copy of the region ``box = (x0, y0, x1, y1)`` (even coordinates) as its own I420 picture."""
    x0, y0, x1, y1 = box
    out = np.empty(((y1 - y0) * 3 // 2, x1 - x0), dtype=np.uint8)
    for d, s, k in zip(planes(out), planes(i420), (1, 2, 2)):
        d[:] = s[y0 // k : y1 // k, x0 // k : x1 // k]
    return out


def edit_as_bgr(
    i420: np.ndarray, box: tuple[int, int, int, int], draw: Callable[[np.ndarray, tuple[int, int]], object]
) -> None:
    """Let ``draw(image, origin)`` change the region ``box = (x0, y0, x1, y1)`` of an I420 picture (in
    place) as a BGR ``image`` whose top left is the picture's ``origin``: the box is widened to even
    coordinates and clipped to the picture, and only it is converted."""
    width, height = i420_size(i420)
    x0, y0 = max(box[0] - box[0] % 2, 0), max(box[1] - box[1] % 2, 0)
    x1, y1 = min(box[2] + box[2] % 2, width), min(box[3] + box[3] % 2, height)
    if x1 <= x0 or y1 <= y0:
        return
    bgr = to_bgr(crop(i420, (x0, y0, x1, y1)))
    draw(bgr, (x0, y0))
    paste(i420, to_i420(bgr), x0, y0)


__all__ = ["PackedFrame", "crop", "edit_as_bgr", "even_size", "i420_size", "paste", "planes", "to_bgr", "to_i420"]
