"""The frames pass 1 decodes, kept for the overlay (:class:`FrameTee`): order, content, the byte
budget, closing, and the overlay's fallback to decoding again from where the tee stopped."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from au_face.inference.frame_tee import FrameTee
from au_face.inference.overlay import overlay_frames
from au_face.io.video import VideoFrame, VideoReader
from au_face.io.yuv import PackedFrame, i420_size, to_bgr


def rgb_of(packed: PackedFrame) -> np.ndarray:
    return to_bgr(packed.i420)[..., ::-1]


def frame(index: int, height: int = 48, width: int = 64) -> VideoFrame:
    """A smooth colour gradient that moves with ``index`` (4:2:0 keeps it nearly intact)."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 3 + index, y * 4 + 2 * index, (x + y) * 2], axis=-1) % 256
    return VideoFrame(index, index / 25.0, rgb.astype(np.uint8))


def test_frames_come_out_in_order_close_to_what_went_in() -> None:
    tee = FrameTee()
    frames = [frame(i) for i in range(5)]
    for f in frames:
        tee.add(f)
    for i, f in enumerate(frames):
        got = tee.take(i)
        assert got is not None and (got.index, got.timestamp) == (f.index, f.timestamp)
        assert got.i420.shape == (48 * 3 // 2, 64) and got.i420.dtype == np.uint8
        assert np.abs(rgb_of(got).astype(int) - f.rgb).mean() < 3.0  # YUV 4:2:0 round trip
    assert tee.peak_bytes == 5 * 48 * 64 * 3 // 2, "held as I420: half of RGB's bytes"


def test_odd_sized_frames_gain_an_edge_pixel() -> None:
    tee = FrameTee()
    f = frame(0, 47, 63)
    tee.add(f)
    got = tee.take(0)
    assert got is not None and i420_size(got.i420) == (64, 48)
    rgb = rgb_of(got).astype(int)
    assert np.abs(rgb[:47, :63] - f.rgb).mean() < 3.0
    assert np.abs(rgb[47, :63] - f.rgb[46]).mean() < 3.0 and np.abs(rgb[:47, 63] - f.rgb[:, 62]).mean() < 3.0


def test_a_tee_over_its_budget_lets_go_of_every_frame() -> None:
    per_frame = 48 * 64 * 3 // 2
    tee = FrameTee(budget=3 * per_frame)
    for i in range(3):
        tee.add(frame(i))
    assert tee.take(0) is not None  # taking frees room: three fit again
    tee.add(frame(3))
    assert not tee.overflowed and tee.peak_bytes == 3 * per_frame
    tee.add(frame(4))
    assert tee.overflowed
    assert tee.take(1) is None and tee.take(2) is None, "nothing is served after an overflow"
    tee.add(frame(5))
    assert tee.take(3) is None


def test_closing_wakes_a_consumer_waiting_for_a_frame_that_never_comes() -> None:
    tee = FrameTee()
    tee.add(frame(0))
    got: list[PackedFrame | None] = []
    consumer = threading.Thread(target=lambda: got.extend([tee.take(0), tee.take(1)]))
    consumer.start()
    consumer.join(0.2)
    assert consumer.is_alive(), "frame 1 is waited for"
    tee.close()
    consumer.join(5)
    assert not consumer.is_alive() and got[0] is not None and got[0].index == 0 and got[1] is None


@pytest.fixture(scope="module")
def single_face(video_dir: Path) -> Path:
    return video_dir / "single_face.mp4"


def test_the_overlay_decodes_again_from_the_first_frame_the_tee_did_not_give(single_face: Path) -> None:
    with VideoReader(single_face, max_frames=12) as reader:
        decoded = [(f.index, f.rgb.copy()) for f in reader]
    size = decoded[0][1].size // 2  # one frame as I420
    tee = FrameTee(budget=3 * size)
    for index, rgb in decoded[:3]:
        tee.add(VideoFrame(index, index / 30.0, rgb))
    taken = []
    with VideoReader(single_face, max_frames=12) as reader:
        frames = overlay_frames(tee, reader)
        taken += [next(frames), next(frames)]
        for index in (3, 4, 5):  # the third is over the budget: frames 2-5 are let go
            tee.add(VideoFrame(index, index / 30.0, decoded[index][1]))
        assert tee.overflowed
        taken += list(frames)
    assert [f.index for f in taken] == list(range(12))
    for f, (_, rgb) in zip(taken, decoded, strict=True):
        assert np.abs(rgb_of(f).astype(int) - rgb).mean() < 2.0


def test_without_an_overflow_the_overlay_never_decodes_again(single_face: Path) -> None:
    tee = FrameTee()
    with VideoReader(single_face, max_frames=6) as reader:
        for f in reader:
            tee.add(f)
    tee.close()

    class Untouchable:
        def __iter__(self):
            raise AssertionError("the video was decoded again")

    assert [f.index for f in overlay_frames(tee, Untouchable())] == list(range(6))  # type: ignore[arg-type]
