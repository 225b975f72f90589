"""I420 pictures (:mod:`au_face.io.yuv`): planes, pasting, cropping, padding, and editing a box as BGR."""

from __future__ import annotations

import numpy as np
import pytest

from au_face.io.yuv import crop, edit_as_bgr, even_size, i420_size, paste, planes, to_bgr, to_i420


def gradient(height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return (np.stack([x * 2, y * 3, (x + y)], axis=-1) % 256).astype(np.uint8)


def test_planes_are_views_of_the_picture_in_ffmpegs_layout() -> None:
    i420 = to_i420(gradient(6, 8))  # chroma rows of 4 pixels: 1.5 rows of the array each
    y, u, v = planes(i420)
    assert (y.shape, u.shape, v.shape) == ((6, 8), (3, 4), (3, 4))
    u[:] = 7
    v[:] = 9
    flat = i420.reshape(-1)
    assert (flat[48:60] == 7).all() and (flat[60:72] == 9).all() and flat.size == 72


def test_paste_and_crop_move_regions_between_pictures() -> None:
    big, small = to_i420(gradient(16, 20)), to_i420(np.full((6, 8, 3), 200, np.uint8))
    paste(big, small, 4, 2)
    np.testing.assert_array_equal(crop(big, (4, 2, 12, 8)), small)
    assert not np.array_equal(crop(big, (0, 0, 8, 6)), small)
    with pytest.raises(ValueError, match="even"):
        paste(big, small, 3, 2)


@pytest.mark.parametrize("size", [(16, 12), (15, 11)])
def test_to_i420_pads_odd_sizes_by_an_edge_pixel(size: tuple[int, int]) -> None:
    rgb = gradient(size[1], size[0])
    i420 = to_i420(rgb, rgb=True)
    assert i420_size(i420) == even_size(size) == (16, 12)
    back = to_bgr(i420)[..., ::-1].astype(int)
    assert np.abs(back[: size[1], : size[0]] - rgb).mean() < 3.0
    assert np.abs(back[-1, : size[0]] - rgb[-1]).mean() < 3.0


def test_edit_as_bgr_changes_only_its_box_widened_to_even_coordinates() -> None:
    i420 = to_i420(gradient(20, 24))
    before = to_bgr(i420).astype(int)
    origins = []

    def paint(image: np.ndarray, origin: tuple[int, int]) -> None:
        origins.append(origin)
        image[:] = (0, 0, 255)

    edit_as_bgr(i420, (5, 3, 11, 9), paint)
    after = to_bgr(i420).astype(int)
    assert origins == [(4, 2)]
    changed = np.abs(after - before).max(axis=2) > 40
    assert changed[2:10, 4:12].all() and changed.sum() == 8 * 8
    edit_as_bgr(i420, (30, 30, 40, 40), paint)  # outside the picture: nothing to draw
    assert len(origins) == 1
