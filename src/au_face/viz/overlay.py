"""Pictures of the results: an overlay video (mesh on the frames + AU bars) and an AU track figure.

The overlay draws the posed mesh with OpenCV lines or polygons rather than rasterising it in 3D: it
is a quick visual check, streamed frame by frame. Two styles (:data:`MESH_STYLES`): ``wire`` (the
default), the edges of the triangles facing the camera, semi-transparent, about 1.5 ms a frame on
the two-core machine; ``shaded``, those triangles filled with Lambert shading under the same
wireframe, about 4 ms.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path

import cv2
import numpy as np

from au_face.aus import au_label
from au_face.errors import AUFaceError
from au_face.io.video_writer import Mp4Writer, VideoWriteError
from au_face.io.yuv import edit_as_bgr, even_size, i420_size, paste, planes, to_i420
from au_face.utils.files import AtomicStreamWriter, publish, temporary_sibling
from au_face.viz import MESH_STYLES, OVERLAY_MAX_SIDE

#: BGR colours of the overlay.
MESH_COLOUR = np.array([255, 230, 150], dtype=np.float32)
WIRE_COLOUR = (200, 140, 40)
ACTIVE_COLOUR = (60, 190, 90)
INACTIVE_COLOUR = (150, 150, 150)
PANEL_COLOUR = (32, 32, 32)
TEXT_COLOUR = (235, 235, 235)
NO_FACE_COLOUR = (60, 60, 230)
_SHADES = 8
#: Opacity of the mesh in each style (thin lines alone need more to be seen).
_STYLE_ALPHA = {"wire": 0.6, "shaded": 0.4}
_FONT = cv2.FONT_HERSHEY_SIMPLEX
#: Panel rows (one AU at one value) kept drawn: a few MiB at most.
_PANEL_ROWS_KEPT = 512


class RenderError(AUFaceError, RuntimeError):
    """Raised when a video or figure cannot be written."""


def overlay_size(size: tuple[int, int], max_side: int | None = OVERLAY_MAX_SIDE) -> tuple[int, int]:
    """The overlay's picture ``(width, height)`` for frames of ``size``: divided by the smallest whole
    number that brings its longer side to at most ``max_side`` (None or 0: the frames' own size).
    A whole divisor keeps the scaling cheap (area averaging over whole blocks: about 1 ms a 720p frame,
    against 10 ms for 3/4)."""
    if max_side is not None and max_side < 0:
        raise ValueError(f"max_side must be 0 or positive, got {max_side}")
    width, height = size
    if not max_side or max(width, height) <= max_side:
        return width, height
    divisor = math.ceil(max(width, height) / max_side)
    return max(1, round(width / divisor)), max(1, round(height / divisor))


def facing_triangles(posed: np.ndarray, triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Triangles facing the camera and their shading in [0,1].

    ``posed`` are image-space vertices ``[V,3]`` (x right, y down in pixels, z depth). A
    triangle's normal z is the signed area of its projection; the sign facing the camera is
    taken as that of the area-weighted majority (a tracked face always shows its front), so
    no winding convention is assumed. Shading is ``|n_z| / |n|`` (Lambert, light at the camera).
    """
    ids = _front(posed, triangles)
    p = posed[triangles[ids]]
    normals = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    shade = np.abs(normals[:, 2]) / np.maximum(np.linalg.norm(normals, axis=1), 1e-12)
    return ids, shade


def _front(posed: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Indices of the triangles facing the camera (see :func:`facing_triangles`), from the signed
    areas of their projections alone."""
    x, y = posed[:, 0], posed[:, 1]
    a, b, c = triangles.T
    nz = (x[b] - x[a]) * (y[c] - y[a]) - (y[b] - y[a]) * (x[c] - x[a])
    return np.flatnonzero(nz * np.sign(nz.sum()) > 0)


def draw_mesh(
    image: np.ndarray, posed: np.ndarray, triangles: np.ndarray, alpha: float | None = None, style: str = "shaded"
) -> np.ndarray:
    """Draw the mesh, semi-transparent, onto a BGR ``image`` (in place): the edges of the triangles
    facing the camera and, with ``style="shaded"``, those triangles filled and shaded. ``alpha`` is
    the mesh's opacity (default: the style's, :data:`_STYLE_ALPHA`).

    Only the mesh's bounding box is blended, and the edges are drawn as the facing triangles' outlines,
    without anti-aliasing: an edge two of them share is drawn twice in one colour before the blend, so
    the image is the same as with each edge once (830 closed polylines take about 2/3 of the time of
    1,300 segments)."""
    if style not in MESH_STYLES:
        raise ValueError(f"unknown mesh style {style!r}; choose from {', '.join(MESH_STYLES)}")
    alpha = _STYLE_ALPHA[style] if alpha is None else alpha
    ids, shade = facing_triangles(posed, triangles) if style == "shaded" else (_front(posed, triangles), None)
    if len(ids) == 0:
        return image
    points = np.round(posed[:, :2]).astype(np.int32)
    pts = points[triangles[ids]]
    x0, y0 = np.maximum(pts.reshape(-1, 2).min(axis=0) - 2, 0)
    x1, y1 = np.minimum(pts.reshape(-1, 2).max(axis=0) + 3, (image.shape[1], image.shape[0]))
    if x1 <= x0 or y1 <= y0:  # entirely outside the frame
        return image
    roi = image[y0:y1, x0:x1]
    layer = roi.copy()
    pts = pts - np.array([x0, y0], dtype=np.int32)
    if shade is not None:
        levels = np.minimum((shade * _SHADES).astype(int), _SHADES - 1)
        for level in range(_SHADES):
            polys = pts[levels == level]
            if len(polys):
                colour = MESH_COLOUR * (0.45 + 0.55 * (level + 0.5) / _SHADES)
                cv2.fillPoly(layer, list(polys), tuple(float(c) for c in colour))
    cv2.polylines(layer, list(pts), True, WIRE_COLOUR, 1, cv2.LINE_8)
    cv2.addWeighted(layer, alpha, roi, 1.0 - alpha, 0.0, dst=roi)
    return image


def _label(image: np.ndarray, text: str, org: tuple[int, int], colour: tuple[int, int, int], scale: float) -> None:
    """Text on a dark box, readable on any background."""
    x0, y0, x1, y1 = _label_box(text, org, scale)
    cv2.rectangle(image, (x0, y0), (x1 - 1, y1 - 1), (0, 0, 0), -1)
    cv2.putText(image, text, org, _FONT, scale, colour, 1, cv2.LINE_AA)


def _label_box(text: str, org: tuple[int, int], scale: float) -> tuple[int, int, int, int]:
    """The box ``(x0, y0, x1, y1)`` (end exclusive) :func:`_label` fills for ``text`` at ``org``."""
    (w, h), base = cv2.getTextSize(text, _FONT, scale, 1)
    x, y = org
    return x - 4, y - h - 4, x + w + 5, y + base + 3


def _label_i420(i420: np.ndarray, text: str, org: tuple[int, int], colour: tuple[int, int, int], scale: float) -> None:
    """:func:`_label` on an I420 picture (only the label's box is converted)."""
    edit_as_bgr(
        i420,
        _label_box(text, org, scale),
        lambda image, at: _label(image, text, (org[0] - at[0], org[1] - at[1]), colour, scale),
    )


class AUPanel:
    """Side panel with one horizontal probability bar per AU."""

    #: Pixels above the first AU's row (the title), below the last, and the least and most a row takes.
    TOP, BOTTOM, MIN_ROW, MAX_ROW = 36, 8, 12, 30

    @classmethod
    def least_height(cls, num_aus: int) -> int:
        """The height the panel needs for ``num_aus`` rows of the least height."""
        return cls.TOP + num_aus * cls.MIN_ROW + cls.BOTTOM

    def __init__(self, aus: Sequence[int], height: int, width: int = 200, threshold: float = 0.5) -> None:
        self.aus = list(aus)
        if height < self.least_height(len(self.aus)):
            raise ValueError(
                f"{len(self.aus)} AUs need a panel {self.least_height(len(self.aus))} px high, not {height}"
            )
        self.width = width
        self.threshold = threshold
        self.row = max(self.MIN_ROW, min(self.MAX_ROW, (height - self.TOP - self.BOTTOM) // max(len(self.aus), 1)))
        self.scale = min(0.5, self.row / 40)
        self.bar_x0, self.bar_x1 = 58, width - 52
        base = np.full((height, width, 3), PANEL_COLOUR, dtype=np.uint8)
        cv2.putText(base, "AU probability", (8, 22), _FONT, 0.5, TEXT_COLOUR, 1, cv2.LINE_AA)
        for k, au in enumerate(self.aus):
            cv2.putText(base, au_label(au), (8, self._baseline(k)), _FONT, self.scale, TEXT_COLOUR, 1, cv2.LINE_AA)
            y0, y1 = self._bar_span(k)
            cv2.rectangle(base, (self.bar_x0, y0), (self.bar_x1, y1), (70, 70, 70), -1)
            tick = self.bar_x0 + int(round(threshold * (self.bar_x1 - self.bar_x0)))
            cv2.line(base, (tick, y0 - 2), (tick, y1 + 2), (110, 110, 110), 1)
        self._base = base
        #: rows already drawn, by (AU index, percent, active); at most :data:`_PANEL_ROWS_KEPT` kept
        self._row = functools.lru_cache(maxsize=_PANEL_ROWS_KEPT)(self._draw_row)

    def _baseline(self, k: int) -> int:
        return self.TOP + k * self.row + int(self.row * 0.7)

    def _bar_span(self, k: int) -> tuple[int, int]:
        y = self.TOP + k * self.row
        pad = max(2, self.row // 5)
        return y + pad, y + self.row - pad

    def render(self, probs: np.ndarray | None, out: np.ndarray | None = None) -> np.ndarray:
        """The panel for one frame (``probs`` ``[K]``, or None when there is no face), drawn into ``out``
        (``[height, width, 3]``) or a new image. Bars and numbers are drawn to the hundredth shown;
        each AU's row is drawn once per value and reused."""
        panel = np.empty_like(self._base) if out is None else out
        panel[:] = self._base
        values = [None] * len(self.aus) if probs is None else [min(max(float(p), 0.0), 1.0) for p in probs]
        for k, p in enumerate(values):
            row = self._row(k, None, False) if p is None else self._row(k, int(round(p * 100)), p >= self.threshold)
            y = self.TOP + k * self.row
            panel[y : y + self.row] = row
        return panel

    def _draw_row(self, k: int, percent: int | None, active: bool) -> np.ndarray:
        """Row ``k`` of the panel for a probability of ``percent`` / 100 (None: no face)."""
        y = self.TOP + k * self.row
        row = self._base[y : y + self.row].copy()
        y0, y1 = (v - y for v in self._bar_span(k))
        colour = ACTIVE_COLOUR if active else INACTIVE_COLOUR
        if percent is None:
            text = "-"
        else:
            x = self.bar_x0 + int(round(percent / 100 * (self.bar_x1 - self.bar_x0)))
            cv2.rectangle(row, (self.bar_x0, y0), (x, y1), colour, -1)
            text = f"{percent / 100:.2f}"
        cv2.putText(row, text, (self.bar_x1 + 6, self._baseline(k) - y), _FONT, self.scale, colour, 1, cv2.LINE_AA)
        return row


class OverlayWriter(AtomicStreamWriter):
    """Stream an MP4 (H.264, see :class:`~au_face.io.video_writer.Mp4Writer`) of the video with the
    posed mesh drawn on it and, given AUs, a side panel.

    ``size`` is the video's ``(width, height)`` (an odd one gains an edge pixel: 4:2:0 needs even
    sizes); with ``aus`` the output is ``panel_width`` wider (rounded up to even), and at least as high as
    the panel needs (:meth:`AUPanel.least_height`: a picture less high has black below it). ``style`` is one of
    :data:`MESH_STYLES`; ``alpha`` the mesh's opacity (default per style). Frames are composed and
    encoded as I420 (:mod:`au_face.io.yuv`); only the mesh's and the labels' boxes are drawn in BGR.
    ``niceness`` lowers the encoder process's priority (:class:`~au_face.io.video_writer.Mp4Writer`).
    The file appears under ``path`` only at :meth:`close`.
    """

    def __init__(
        self,
        path: str | Path,
        fps: float,
        size: tuple[int, int],
        triangles: np.ndarray,
        aus: Sequence[int] | None = None,
        threshold: float = 0.5,
        alpha: float | None = None,
        panel_width: int = 200,
        style: str = "wire",
        niceness: int = 0,
    ) -> None:
        if style not in MESH_STYLES:
            raise ValueError(f"unknown mesh style {style!r}; choose from {', '.join(MESH_STYLES)}")
        self.path = Path(path)
        self.size = (int(size[0]), int(size[1]))
        self.picture_size = even_size(self.size)
        self.triangles = np.asarray(triangles, dtype=np.int64)
        self.style, self.alpha = style, alpha
        panel_width += panel_width % 2
        height = self.picture_size[1]
        if aus:
            height = max(height, even_size((0, AUPanel.least_height(len(aus))))[1])
        self.panel = AUPanel(aus, height, panel_width, threshold) if aus else None
        width = self.picture_size[0] + (panel_width if self.panel else 0)
        self.frame_size = (width, height)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = temporary_sibling(self.path)
        try:
            self._writer: Mp4Writer | None = Mp4Writer(self._tmp, fps, self.frame_size, niceness)
        except Exception:
            self._tmp.unlink(missing_ok=True)
            raise
        self.frames_written = 0

    def write(
        self,
        rgb: np.ndarray,
        posed: np.ndarray | None,
        probs: np.ndarray | None = None,
        timestamp: float | None = None,
    ) -> None:
        """Add one frame: RGB ``[H,W,3]``, image-space vertices ``[V,3]`` (None: no face), AU probabilities."""
        if rgb.shape[:2] != (self.size[1], self.size[0]):
            raise RenderError(f"frame is {rgb.shape[1]}x{rgb.shape[0]}, the overlay is {self.size[0]}x{self.size[1]}")
        self.write_composed(self.compose(to_i420(rgb, rgb=True), posed, probs, timestamp))

    def compose(
        self,
        i420: np.ndarray,
        posed: np.ndarray | None,
        probs: np.ndarray | None = None,
        timestamp: float | None = None,
    ) -> np.ndarray:
        """The I420 output frame for the video frame ``i420`` (:func:`~au_face.io.yuv.to_i420`; the
        other arguments as :meth:`write`'s), not written yet (safe to call from several threads at once)."""
        if i420_size(i420) != self.picture_size or i420.ndim != 2:
            raise RenderError(
                f"frame is {'x'.join(map(str, i420_size(i420)))} I420, the overlay is "
                f"{self.picture_size[0]}x{self.picture_size[1]}"
            )
        canvas = np.empty((self.frame_size[1] * 3 // 2, self.frame_size[0]), dtype=np.uint8)
        if self.frame_size[1] > self.picture_size[1]:  # black below the picture
            luma, *chroma = planes(canvas)
            luma[self.picture_size[1] :] = 16
            for plane in chroma:
                plane[self.picture_size[1] // 2 :] = 128
        paste(canvas, i420, 0)
        if posed is None:
            _label_i420(canvas, "no face", (10, 28), NO_FACE_COLOUR, 0.7)
        else:
            posed = np.asarray(posed, dtype=np.float32)
            (x0, y0), (x1, y1) = np.floor(posed[:, :2].min(axis=0)) - 2, np.ceil(posed[:, :2].max(axis=0)) + 3
            box = (int(max(x0, 0)), int(max(y0, 0)), int(min(x1, self.size[0])), int(min(y1, self.size[1])))
            edit_as_bgr(
                canvas,
                box,
                lambda image, at: draw_mesh(image, posed - (*at, 0), self.triangles, self.alpha, self.style),
            )
        if timestamp is not None:
            _label_i420(canvas, f"{timestamp:6.2f} s", (10, self.size[1] - 10), TEXT_COLOUR, 0.45)
        if self.panel is not None:
            paste(
                canvas,
                to_i420(self.panel.render(None if posed is None or probs is None else probs)),
                self.picture_size[0],
            )
        return canvas

    def write_composed(self, frame: np.ndarray) -> None:
        """Add a frame made by :meth:`compose`."""
        if self._writer is None:
            raise RenderError(f"{self.path}: the overlay is closed")
        self._writer.write_i420(frame)
        self.frames_written += 1

    def close(self) -> None:
        """Finish the video and move it onto its final path."""
        if self._writer is None:
            return
        self._writer.close()
        self._writer = None
        publish(self._tmp, self.path)

    def abort(self) -> None:
        """Discard the partial video."""
        if self._writer is not None:
            with suppress(VideoWriteError):  # the encoder's own failure may be why we stop
                self._writer.close()
            self._writer = None
        self._tmp.unlink(missing_ok=True)
