"""VideoReader: streaming, strides, timestamps, and clear errors for bad files."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from au_face.errors import AUFaceError
from au_face.io.video import TruncatedVideoWarning, VideoError, VideoNotFoundError, VideoReader, iter_chunks


def write_avi(path: Path, frames: list[np.ndarray], fps: float = 30.0) -> Path:
    """MJPG AVI from RGB frames (every OpenCV build can write it)."""
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert writer.isOpened()
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


@pytest.fixture
def single_face(video_dir: Path) -> Path:
    return video_dir / "single_face.mp4"


def test_reads_every_frame_with_timestamps(single_face: Path) -> None:
    with VideoReader(single_face) as reader:
        assert reader.size == (640, 360)
        assert reader.fps == pytest.approx(30.0)
        assert reader.num_frames == 72
        frames = list(reader)
    assert [f.index for f in frames] == list(range(72))
    assert all(f.rgb.shape == (360, 640, 3) and f.rgb.dtype == np.uint8 for f in frames)
    times = np.array([f.timestamp for f in frames])
    assert times[0] == pytest.approx(0.0)
    assert np.allclose(np.diff(times), 1 / 30, atol=1e-3)
    assert reader.frames_decoded == 72 and not reader.truncated


def test_stride_max_frames_and_second_pass(single_face: Path) -> None:
    reader = VideoReader(single_face, stride=5, max_frames=4)
    first = list(reader)
    assert [f.index for f in first] == [0, 5, 10, 15]
    assert [f.timestamp for f in first] == pytest.approx([0, 5 / 30, 10 / 30, 15 / 30], abs=1e-3)
    second = list(reader)  # iterating again starts from the beginning
    assert [f.index for f in second] == [0, 5, 10, 15]
    assert np.array_equal(first[2].rgb, second[2].rgb)
    all_frames = list(VideoReader(single_face, stride=7))
    assert [f.index for f in all_frames] == list(range(0, 72, 7))


def test_iter_chunks(single_face: Path) -> None:
    chunks = list(iter_chunks(VideoReader(single_face, max_frames=30), 8))
    assert [len(c) for c in chunks] == [8, 8, 8, 6]
    assert [f.index for c in chunks for f in c] == list(range(30))
    with pytest.raises(VideoError):
        list(iter_chunks([], 0))


def test_colour_order_is_rgb(tmp_path: Path) -> None:
    red = np.zeros((64, 64, 3), np.uint8)
    red[..., 0] = 220
    frame = next(iter(VideoReader(write_avi(tmp_path / "red.avi", [red] * 3))))
    assert frame.rgb[..., 0].mean() > 180 and frame.rgb[..., 2].mean() < 40


def test_missing_directory_and_non_video(tmp_path: Path) -> None:
    with pytest.raises(VideoNotFoundError, match="not found") as info:
        VideoReader(tmp_path / "nope.mp4")
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, AUFaceError)
    with pytest.raises(VideoError, match="directory"):
        VideoReader(tmp_path)
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    with pytest.raises(VideoError, match="cannot open it as a video"):
        VideoReader(text)


def test_truncated_mp4_is_a_clear_error(tmp_path: Path, single_face: Path) -> None:
    data = single_face.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])  # the index (moov) is at the end: nothing can be read
    with pytest.raises(VideoError, match="cut.mp4"):
        VideoReader(cut)


def test_truncated_midway_yields_what_decodes_and_warns(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(30)]
    data = write_avi(tmp_path / "full.avi", frames).read_bytes()
    half = tmp_path / "half.avi"
    half.write_bytes(data[: len(data) // 2])
    reader = VideoReader(half)
    assert reader.num_frames == 30
    with pytest.warns(TruncatedVideoWarning, match="decoded 1[45] of the 30 frames"):
        got = list(reader)
    assert 10 <= len(got) < 30 and reader.truncated
    header_only = tmp_path / "header.avi"
    header_only.write_bytes(data[:4096])
    with pytest.raises(VideoError, match="no frame could be decoded|cannot open"):
        VideoReader(header_only)


@pytest.mark.parametrize("stride, max_frames", [(0, None), (-2, None), (1.5, None), (1, 0)])
def test_bad_stride_or_max_frames(single_face: Path, stride: object, max_frames: object) -> None:
    with pytest.raises(VideoError, match="stride|max_frames"):
        VideoReader(single_face, stride=stride, max_frames=max_frames)  # type: ignore[arg-type]


def test_close_releases_and_reopens(single_face: Path) -> None:
    reader = VideoReader(single_face, max_frames=3)
    reader.close()
    assert len(list(reader)) == 3  # iteration opens a fresh decoder
    with VideoReader(single_face) as inside:
        next(iter(inside))
    assert inside._capture is None
