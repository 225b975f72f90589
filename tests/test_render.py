"""Overlay video and AU track figure."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import trimesh

from au_face.io.au_csv import AUCsvWriter, AUTable
from au_face.io.video_writer import Mp4Writer, VideoWriteError
from au_face.io.yuv import to_bgr, to_i420
from au_face.viz.au_tracks import plot_au_tracks
from au_face.viz.overlay import (
    ACTIVE_COLOUR,
    TEXT_COLOUR,
    AUPanel,
    OverlayWriter,
    RenderError,
    _label,
    draw_mesh,
    facing_triangles,
)

SIZE = (160, 120)  # width, height


@pytest.fixture(scope="module")
def sphere() -> tuple[np.ndarray, np.ndarray]:
    """An open, face-like cap in image space: the camera-side of a sphere (centre (80, 60), radius
    40 px, camera looking along +z) plus a rim of triangles just behind the silhouette."""
    mesh = trimesh.creation.icosphere(subdivisions=2)
    faces = np.asarray(mesh.faces)
    faces = faces[mesh.vertices[faces].mean(axis=1)[:, 2] < 0.3]
    return np.asarray(mesh.vertices) * 40 + [80, 60, 0], faces


def test_facing_triangles_cull_the_back_rim_whatever_the_winding(sphere) -> None:
    vertices, faces = sphere
    outward = np.cross(*(vertices[faces[:, 1:]] - vertices[faces[:, :1]]).transpose(1, 0, 2))
    facing_camera = np.flatnonzero(outward[:, 2] < 0)
    assert 0 < len(facing_camera) < len(faces)
    front, shade = facing_triangles(vertices, faces)
    np.testing.assert_array_equal(front, facing_camera)
    flipped, _ = facing_triangles(vertices, faces[:, ::-1])
    np.testing.assert_array_equal(flipped, facing_camera)
    assert shade.min() >= 0 and shade.max() <= 1 and shade.max() > 0.95


@pytest.mark.parametrize("style", ["wire", "shaded"])
def test_draw_mesh_changes_only_the_face_region(sphere, style: str) -> None:
    vertices, faces = sphere
    image = np.full((SIZE[1], SIZE[0], 3), 40, dtype=np.uint8)
    draw_mesh(image, vertices, faces, style=style)
    assert (image[55:66, 75:86] != 40).any()  # the centre of the sphere is drawn over
    assert (image[2, 2] == 40).all() and (image[60, 150] == 40).all()


def test_the_wire_is_each_facing_edge_once(sphere) -> None:
    """Outlines of the facing triangles (shared edges drawn twice, in one colour, before the blend) give
    the image of drawing every edge of a facing triangle once."""
    vertices, faces = sphere
    image = np.full((SIZE[1], SIZE[0], 3), 40, dtype=np.uint8)
    draw_mesh(image, vertices, faces, alpha=1.0, style="wire")
    front, _ = facing_triangles(vertices, faces)
    edges = np.unique(np.sort(faces[front][:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1), axis=0)
    points = np.round(vertices[:, :2]).astype(np.int32)
    want = np.full_like(image, 40)
    for a, b in edges:
        cv2.line(want, tuple(map(int, points[a])), tuple(map(int, points[b])), (255, 255, 255), 1, cv2.LINE_8)
    drawn, expected = (image != 40).any(axis=2), (want != 40).any(axis=2)
    assert expected.sum() > 200
    assert (drawn != expected).sum() <= 0.02 * expected.sum(), "line ends may differ by a pixel, not whole edges"


def test_wire_style_draws_the_edges_and_shaded_also_fills_the_triangles(sphere) -> None:
    vertices, faces = sphere
    drawn = {}
    for style in ("wire", "shaded"):
        image = np.full((SIZE[1], SIZE[0], 3), 40, dtype=np.uint8)
        drawn[style] = (draw_mesh(image, vertices, faces, style=style) != 40).any(axis=2)
    inside = np.hypot(*np.mgrid[: SIZE[1], : SIZE[0]][::-1] - np.array([80, 60])[:, None, None]) < 35
    # the filled cap covers its disc; the wireframe only its edges (most pixels between them untouched)
    assert drawn["shaded"][inside].mean() > 0.99
    assert 0.2 < drawn["wire"][inside].mean() < 0.8
    assert not (drawn["wire"] & ~drawn["shaded"]).any()  # the same edges are drawn in both styles
    with pytest.raises(ValueError, match="unknown mesh style 'solid'"):
        draw_mesh(np.zeros((10, 10, 3), np.uint8), vertices, faces, style="solid")


@pytest.mark.parametrize("shift", [(-60, 0), (-500, -400), (1000, 0)])
def test_draw_mesh_clips_at_the_frame_border(sphere, shift: tuple[int, int]) -> None:
    vertices, faces = sphere
    image = np.full((SIZE[1], SIZE[0], 3), 40, dtype=np.uint8)
    draw_mesh(image, vertices + [*shift, 0], faces)
    assert ((image != 40).any(axis=2).any()) == (shift == (-60, 0))


def _read_all(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def test_overlay_video_frames_size_and_panel(tmp_path: Path, sphere) -> None:
    vertices, faces = sphere
    rgb = np.full((SIZE[1], SIZE[0], 3), 90, dtype=np.uint8)
    with OverlayWriter(tmp_path / "o.mp4", 25, SIZE, faces, aus=[1, 12], panel_width=120) as writer:
        assert writer.frame_size == (SIZE[0] + 120, SIZE[1])
        for t in range(5):
            face = None if t == 2 else vertices + [t, 0, 0]
            writer.write(rgb, face, np.array([0.9, 0.1]), t / 25)
    frames = _read_all(tmp_path / "o.mp4")
    assert len(frames) == 5
    assert frames[0].shape == (SIZE[1], SIZE[0] + 120, 3)
    # the face frame differs from the no-face frame in the face region, and the panel bars differ too
    assert np.abs(frames[0][50:70, 70:90].astype(int) - frames[2][50:70, 70:90]).mean() > 10
    assert np.abs(frames[0][:, SIZE[0] :].astype(int) - frames[2][:, SIZE[0] :]).mean() > 1


def test_a_picture_too_low_for_the_panel_gets_black_below_it(tmp_path: Path, sphere) -> None:
    """19 AUs need 272 px of panel; a 160×120 video (or a 320×240 one) once broke the overlay."""
    vertices, faces = sphere
    aus = [1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 18, 20, 23, 24, 25, 26, 45]
    rgb = np.full((SIZE[1], SIZE[0], 3), 200, dtype=np.uint8)
    with OverlayWriter(tmp_path / "o.mp4", 25, SIZE, faces, aus=aus) as writer:
        assert writer.frame_size == (SIZE[0] + 200, AUPanel.least_height(len(aus))) == (360, 272)
        for value in (0.9, 0.1):
            writer.write(rgb, vertices, np.full(len(aus), value), 0.0)
    high, low = _read_all(tmp_path / "o.mp4")
    assert high.shape == (272, 360, 3)
    assert high[SIZE[1] + 4 :, : SIZE[0]].mean() < 25 < high[: SIZE[1] - 20, : SIZE[0]].mean()  # black below
    last_row = slice(272 - 8 - AUPanel.MIN_ROW, 272 - 8)  # AU45's bar, drawn in full
    assert np.abs(high[last_row, SIZE[0] :].astype(int) - low[last_row, SIZE[0] :]).mean() > 5
    with pytest.raises(ValueError, match="19 AUs need a panel 272 px high"):
        AUPanel(aus, 240)


def test_overlay_without_aus_keeps_video_size_and_is_atomic(tmp_path: Path, sphere) -> None:
    vertices, faces = sphere
    rgb = np.zeros((SIZE[1], SIZE[0], 3), dtype=np.uint8)
    with pytest.raises(RuntimeError, match="stop"):
        with OverlayWriter(tmp_path / "o.mp4", 25, SIZE, faces) as writer:
            writer.write(rgb, vertices)
            raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []
    with OverlayWriter(tmp_path / "o.mp4", 25, SIZE, faces) as writer:
        writer.write(rgb, vertices)
        with pytest.raises(RenderError, match="160x120"):
            writer.write(np.zeros((10, 10, 3), np.uint8), vertices)
    frames = _read_all(tmp_path / "o.mp4")
    assert len(frames) == 1 and frames[0].shape == (SIZE[1], SIZE[0], 3)


def test_plot_au_tracks_from_csv(tmp_path: Path) -> None:
    t = np.arange(50) / 25
    probs = np.stack([0.5 + 0.5 * np.sin(t * 3), 0.5 + 0.5 * np.cos(t * 2)], axis=1)
    success = np.ones(50, bool)
    success[20:25] = False
    with AUCsvWriter(tmp_path / "aus.csv", [6, 12]) as writer:
        writer.write(np.arange(1, 51), t, success, probs)
    out = plot_au_tracks(tmp_path / "aus.csv", tmp_path / "aus.png")
    image = cv2.imread(str(out))
    assert image is not None and image.shape[0] > 100 and image.shape[1] > 500
    assert image.std() > 10  # not a blank canvas


def test_plot_au_tracks_rejects_empty_tables(tmp_path: Path) -> None:
    empty = AUTable(
        np.zeros(0, int), np.zeros(0), np.zeros(0, bool), [6], np.zeros((0, 1)), np.zeros((0, 1), np.int8), np.zeros(0)
    )
    with pytest.raises(RenderError, match="no frames"):
        plot_au_tracks(empty, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("size", [(160, 120), (161, 119)])
def test_mp4_writer_keeps_colours_and_pads_odd_sizes_to_even(tmp_path: Path, size: tuple[int, int]) -> None:
    """Frames go to x264 as YUV 4:2:0 converted here: colours come back (within coding loss), and an
    odd size gains one edge pixel rather than being scaled."""
    bgr = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    bgr[:, : size[0] // 3] = (200, 40, 40)
    bgr[:, size[0] // 3 : 2 * size[0] // 3] = (40, 200, 40)
    bgr[:, 2 * size[0] // 3 :] = (40, 40, 200)
    writer = Mp4Writer(tmp_path / "w.mp4", 25, size)
    for _ in range(3):
        writer.write(bgr)
    writer.close()
    frames = _read_all(tmp_path / "w.mp4")
    assert len(frames) == 3
    assert frames[0].shape == (size[1] + size[1] % 2, size[0] + size[0] % 2, 3)
    inner = (slice(8, size[1] - 8), slice(8, size[0] // 3 - 8))
    assert np.abs(frames[0][inner].astype(int) - bgr[inner]).mean() < 6
    assert np.abs(frames[0][: size[1], : size[0]].astype(int) - bgr).mean() < 6


def test_au_panel_reuses_rows_without_mixing_frames_up() -> None:
    """Rows drawn once per value are reused: a panel is the same whatever was drawn before it."""
    probs = [np.array([0.2, 0.5, 0.97]), np.array([0.21, 0.49, 0.0]), None, np.array([0.2, 0.5, 0.97])]
    fresh = [AUPanel([1, 2, 4], height=120).render(p) for p in probs]
    panel = AUPanel([1, 2, 4], height=120)
    canvas = np.zeros((120, 320, 3), np.uint8)  # drawn in place, into a frame's side
    drawn = [panel.render(p, out=canvas[:, 120:]).copy() for p in probs]
    for one, other in zip(fresh, drawn):
        np.testing.assert_array_equal(one, other)
    assert not canvas[:, :120].any(), "the panel stays in its part of the frame"
    np.testing.assert_array_equal(drawn[0], drawn[3])
    assert not np.array_equal(drawn[0], drawn[1]) and not np.array_equal(drawn[1], drawn[2])
    # bars at or above the threshold are green (0.5 and 0.97), below it grey (0.21, 0.49, 0.0)
    green = [(d[:, panel.bar_x0 : panel.bar_x1] == ACTIVE_COLOUR).all(axis=2).any() for d in drawn[:2]]
    assert green == [True, False]


def test_the_overlay_composed_in_i420_matches_drawing_the_whole_frame_in_bgr(tmp_path: Path, sphere) -> None:
    """Only the mesh's box is converted to BGR and back: the picture is the one drawn on the whole frame."""
    vertices, faces = sphere
    y, x = np.mgrid[0 : SIZE[1], 0 : SIZE[0]]
    rgb = (np.stack([x * 2, y * 3, x + y], axis=-1) % 256).astype(np.uint8)
    writer = OverlayWriter(tmp_path / "o.mp4", 25, SIZE, faces)
    try:
        composed = to_bgr(writer.compose(to_i420(rgb, rgb=True), vertices, timestamp=1.0)).astype(int)
    finally:
        writer.abort()
    expected = draw_mesh(np.ascontiguousarray(rgb[..., ::-1]), vertices.astype(np.float32), faces, style="wire")
    _label(expected, "  1.00 s", (10, SIZE[1] - 10), TEXT_COLOUR, 0.45)
    expected = to_bgr(to_i420(expected)).astype(int)  # the same 4:2:0 rounding
    assert (np.abs(composed - rgb[..., ::-1]).max(axis=2) > 30).sum() > 2000, "the mesh and the label are drawn"
    assert np.abs(composed - expected).mean() < 0.2 and np.abs(composed - expected).max() <= 8


@pytest.mark.skipif(not hasattr(os, "getpriority"), reason="no process priorities on this system")
def test_mp4_writer_lowers_its_encoders_priority_and_reports_a_failed_encoder(tmp_path: Path) -> None:
    writer = Mp4Writer(tmp_path / "w.mp4", 25, (64, 48), niceness=5)
    if writer.pid is None:
        pytest.skip("imageio-ffmpeg is not installed")
    mine = os.getpriority(os.PRIO_PROCESS, 0)
    assert os.getpriority(os.PRIO_PROCESS, writer.pid) == min(mine + 5, 19)
    writer.write(np.zeros((48, 64, 3), np.uint8))
    writer.close()
    assert len(_read_all(tmp_path / "w.mp4")) == 1
    broken = Mp4Writer(tmp_path / "missing" / "w.mp4", 25, (64, 48))  # ffmpeg cannot open its output
    with pytest.raises(VideoWriteError, match="ffmpeg"):
        for _ in range(200):
            broken.write(np.zeros((48, 64, 3), np.uint8))
        broken.close()
