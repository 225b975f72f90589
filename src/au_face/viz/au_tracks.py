"""The AU track figure: each AU's probability over time, drawn with OpenCV (PNG) or matplotlib."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from au_face.aus import au_label
from au_face.io.au_csv import AUTable, read_au_csv
from au_face.utils.files import atomic_path
from au_face.viz.overlay import RenderError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def plot_au_tracks(
    source: str | Path | AUTable, path: str | Path, threshold: float = 0.5, title: str | None = None
) -> Path:
    """Save :func:`draw_au_tracks` as a PNG; ``source`` is an AU CSV or an :class:`~au_face.io.au_csv.AUTable`.

    Drawn with OpenCV (a few milliseconds; matplotlib's import and layout took about a second).
    """
    table = read_au_csv(source) if isinstance(source, (str, Path)) else source
    image = draw_au_tracks(table, threshold, title)
    ok, png = cv2.imencode(".png", image)
    if not ok:
        raise RenderError(f"cannot encode the AU plot for {path}")
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(png.tobytes())
    return path


#: Layout of :func:`draw_au_tracks` in pixels: width, left and right margins, title band, x-axis band, row height and gap.
_PLOT_WIDTH, _PLOT_LEFT, _PLOT_RIGHT, _PLOT_TOP, _PLOT_BOTTOM, _ROW, _ROW_GAP = 990, 90, 36, 44, 56, 56, 10
#: BGR colours of the AU plot (matplotlib's tab:blue and a light tab:orange).
_PLOT_LINE, _PLOT_SHADE, _PLOT_HATCH, _PLOT_AXIS = (180, 119, 31), (198, 222, 253), (160, 160, 160), (40, 40, 40)


def draw_au_tracks(table: AUTable, threshold: float = 0.5, title: str | None = None) -> np.ndarray:
    """AU probabilities over time as a BGR image: one row per AU, shared time axis in seconds.

    Frames where the AU occurs (probability >= ``threshold``) are shaded; frames without a face
    are hatched grey. The same picture as :func:`au_tracks_figure`, drawn with OpenCV.
    """
    if len(table) == 0 or not table.aus:
        raise RenderError("no frames or no AUs to plot")
    k = len(table.aus)
    height = _PLOT_TOP + k * (_ROW + _ROW_GAP) + _PLOT_BOTTOM
    image = np.full((height, _PLOT_WIDTH, 3), 255, dtype=np.uint8)
    t = table.timestamps.astype(np.float64)
    t0, t1 = float(t[0]), float(t[-1]) if t[-1] > t[0] else float(t[0]) + 1.0
    x0, x1 = _PLOT_LEFT, _PLOT_WIDTH - _PLOT_RIGHT
    xs = x0 + (t - t0) / (t1 - t0) * (x1 - x0)
    # the frame each pixel column shows (steps change half-way between frames, as matplotlib's step="mid")
    column_frame = np.searchsorted((xs[1:] + xs[:-1]) / 2, np.arange(x0, x1) + 0.5)
    missing = ~table.success.astype(bool)
    for row, au in enumerate(table.aus):
        top = _PLOT_TOP + row * (_ROW + _ROW_GAP)
        _draw_track(image, table.probs[:, row], xs, column_frame, missing, top, threshold)
        _text(image, au_label(au), (x0 - 10, top + _ROW // 2 + 5), 0.45, align="right")
    _draw_time_axis(image, t0, t1, _PLOT_TOP + k * (_ROW + _ROW_GAP) - _ROW_GAP)
    legend = f"shaded: p >= {threshold:g}" + ("; hatched: no face" if missing.any() else "")
    _text(image, f"{title or 'AU probabilities'}  ({legend})", (_PLOT_WIDTH // 2, 26), 0.5, align="centre")
    return image


def _draw_track(
    image: np.ndarray,
    probs: np.ndarray,
    xs: np.ndarray,
    column_frame: np.ndarray,
    missing: np.ndarray,
    top: int,
    threshold: float,
) -> None:
    """One AU's row: shading, hatching, threshold line, probability curve, axes and 0/1 ticks."""
    x0, x1, bottom = _PLOT_LEFT, _PLOT_WIDTH - _PLOT_RIGHT, top + _ROW
    band = image[top:bottom, x0:x1]
    occurs = np.nan_to_num(probs, nan=0.0) >= threshold
    band[:, occurs[column_frame]] = _PLOT_SHADE
    rows, cols = np.mgrid[top:bottom, x0:x1]
    hatch = missing[column_frame][None, :] & ((rows + cols) % 8 == 0)
    band[hatch] = _PLOT_HATCH
    y_threshold = round(bottom - threshold * _ROW)
    for x in range(x0, x1, 8):
        cv2.line(image, (x, y_threshold), (min(x + 4, x1), y_threshold), (128, 128, 128), 1)
    ys = bottom - np.clip(np.nan_to_num(probs, nan=-1.0), -1.0, 1.0) * _ROW
    points = np.round(np.stack([xs, ys], axis=1) * 4).astype(np.int32)  # 2 fractional bits
    breaks = np.flatnonzero(np.diff(np.isnan(probs).astype(np.int8))) + 1
    segments = [s for s, gone in zip(np.split(points, breaks), np.split(np.isnan(probs), breaks)) if not gone[0]]
    cv2.polylines(image, segments, False, _PLOT_LINE, 1, cv2.LINE_AA, shift=2)
    cv2.line(image, (x0, top), (x0, bottom), _PLOT_AXIS, 1)
    cv2.line(image, (x0, bottom), (x1, bottom), _PLOT_AXIS, 1)
    for value, y in (("1", top + 4), ("0", bottom + 4)):
        _text(image, value, (x1 + 4, y), 0.35)


def _draw_time_axis(image: np.ndarray, t0: float, t1: float, bottom: int) -> None:
    """Ticks with seconds under the last row, and the axis label."""
    x0, x1 = _PLOT_LEFT, _PLOT_WIDTH - _PLOT_RIGHT
    step = next(
        s
        for s in (0.1, 0.2, 0.5, 1, 2, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 3600, np.inf)
        if (t1 - t0) / s <= 9
    )
    if not np.isfinite(step):
        step = t1 - t0
    for tick in np.arange(np.ceil(t0 / step) * step, t1 + 1e-9, step):
        x = round(x0 + (tick - t0) / (t1 - t0) * (x1 - x0))
        cv2.line(image, (x, bottom), (x, bottom + 4), _PLOT_AXIS, 1)
        _text(image, f"{tick:g}", (x, bottom + 20), 0.4, align="centre")
    _text(image, "time (s)", ((x0 + x1) // 2, bottom + 42), 0.45, align="centre")


def _text(image: np.ndarray, text: str, org: tuple[int, int], scale: float, align: str = "left") -> None:
    """Dark antialiased text at ``org`` (its baseline), left-, right- or centre-aligned."""
    (w, _), _ = cv2.getTextSize(text, _FONT, scale, 1)
    x = org[0] - {"left": 0, "right": w, "centre": w // 2}[align]
    cv2.putText(image, text, (x, org[1]), _FONT, scale, _PLOT_AXIS, 1, cv2.LINE_AA)


def au_tracks_figure(table: AUTable, threshold: float = 0.5, title: str | None = None) -> Figure:
    """AU probabilities over time: one row per AU, shared time axis in seconds.

    Frames where the AU occurs (probability >= ``threshold``) are shaded; frames without a face
    are hatched grey.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if len(table) == 0 or not table.aus:
        raise RenderError("no frames or no AUs to plot")
    t = table.timestamps
    k = len(table.aus)
    fig = Figure(figsize=(9, 0.55 * k + 1.3), dpi=110)
    FigureCanvasAgg(fig)
    axes = fig.subplots(k, 1, sharex=True, squeeze=False)[:, 0]
    missing = ~table.success
    for i, (ax, au) in enumerate(zip(axes, table.aus)):
        p = table.probs[:, i]
        occurs = np.nan_to_num(p, nan=0.0) >= threshold
        ax.fill_between(t, 0, 1, where=occurs, step="mid", color="tab:orange", alpha=0.25, linewidth=0)
        if missing.any():
            ax.fill_between(
                t, 0, 1, where=missing, step="mid", facecolor="none", edgecolor="0.6", hatch="///", linewidth=0
            )
        ax.plot(t, p, color="tab:blue", linewidth=1.2)
        ax.axhline(threshold, color="0.5", linewidth=0.6, linestyle="--")
        ax.set_ylim(0, 1)
        ax.set_yticks([0, 1])
        ax.yaxis.tick_right()
        ax.tick_params(axis="y", labelsize=7, length=0, pad=2)
        ax.set_ylabel(au_label(au), rotation=0, ha="right", va="center", fontsize=9)
        ax.tick_params(axis="x", labelbottom=i == k - 1)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    axes[-1].set_xlabel("time (s)")
    axes[-1].set_xlim(t[0], t[-1] if t[-1] > t[0] else t[0] + 1)
    legend = f"shaded: p >= {threshold:g}" + ("; hatched: no face" if missing.any() else "")
    fig.suptitle(f"{title or 'AU probabilities'}  ({legend})", fontsize=10)
    fig.subplots_adjust(
        left=0.09, right=0.96, top=1 - 0.45 / fig.get_figheight(), bottom=0.55 / fig.get_figheight(), hspace=0.15
    )
    return fig
