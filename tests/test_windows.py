"""SlidingWindow: the window plan and the streamed tent blend shared by the pipeline and AUFaceTask.refine."""

from __future__ import annotations

import numpy as np
import pytest

from au_face.model.windows import SlidingWindow, WindowError


@pytest.mark.parametrize(
    ("n", "length", "stride"), [(10, 16, None), (16, 16, None), (17, 16, None), (100, 16, None), (41, 8, 7), (41, 8, 1)]
)
def test_plan_covers_every_frame_with_full_windows_in_order(n: int, length: int, stride: int | None) -> None:
    window = SlidingWindow(length, stride)
    windows = window.plan(n)
    assert windows[0][0] == 0 and windows[-1][1] == n
    assert all(stop - start == min(length, n) for start, stop in windows)
    for (s0, e0), (s1, _) in zip(windows, windows[1:]):
        assert s0 < s1 <= s0 + window.hop and s1 < e0  # consecutive windows overlap


def test_default_stride_is_half_a_window() -> None:
    assert [s for s, _ in SlidingWindow(16).plan(40)] == [0, 8, 16, 24]


def test_tent_weights_favour_the_window_centre() -> None:
    np.testing.assert_array_equal(SlidingWindow.weights(6), [1, 2, 3, 3, 2, 1])


def _blend(window: SlidingWindow, n: int, outputs) -> list[np.ndarray]:
    blend, parts = window.blend(), []
    for k, (start, stop) in enumerate(window.plan(n)):
        parts.append(blend.add(start, *outputs(k, start, stop)))
    parts.append(blend.finish())
    return [np.concatenate(arrays) for arrays in zip(*(p for p in parts if p))]


def test_blend_weights_each_window_by_its_tent() -> None:
    (ids,) = _blend(SlidingWindow(16), 40, lambda k, start, stop: [np.full(stop - start, float(k))])
    assert ids.shape == (40,) and ids.dtype == np.float32
    np.testing.assert_array_equal(ids[:8], 0.0)  # only the first window
    np.testing.assert_array_equal(ids[32:], 3.0)  # only the last
    assert ids[8] == pytest.approx(1 / 9)  # window 0 at its 9th frame (weight 8), window 1 at its first (1)
    assert ids[15] == pytest.approx(8 / 9)  # window 0 at its last frame (1), window 1 at its 8th (8)
    assert np.all(np.diff(ids) >= 0)


def test_blend_reproduces_outputs_that_agree_and_keeps_shapes() -> None:
    truth = np.random.default_rng(0).normal(size=(53, 4, 3))
    vertices, probs = _blend(
        SlidingWindow(8, 3), 53, lambda k, start, stop: [truth[start:stop], truth[start:stop, :, 0]]
    )
    np.testing.assert_allclose(vertices, truth, atol=1e-6)
    np.testing.assert_allclose(probs, truth[:, :, 0], atol=1e-6)


def test_windows_must_arrive_in_order() -> None:
    blend = SlidingWindow(4).blend()
    blend.add(0, np.zeros(4))
    with pytest.raises(WindowError, match="does not continue"):
        blend.add(6, np.zeros(4))
    with pytest.raises(WindowError, match="positive"):
        SlidingWindow(0)
