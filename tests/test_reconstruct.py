"""``au_face.inference.pipeline.reconstruct`` and ``au-face reconstruct``: passes, stitching, outputs, errors."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
import trimesh

from au_face.cli import main
from au_face.coarse.base import CoarseFrames
from au_face.errors import AUFaceError
from au_face.inference.passes import refine_windows
from au_face.inference.pipeline import FrameStore, TopologyMismatchError, reconstruct
from au_face.inference.process import RefinerProcess
from au_face.inference.result import ReconstructionResult, output_paths
from au_face.io.au_csv import read_au_csv
from au_face.io.meshes import load_mesh_sequence_npz
from au_face.model.windows import SlidingWindow

pytest.importorskip("mediapipe")


@dataclass
class StandInRefinement:
    vertices: torch.Tensor
    au_probs: torch.Tensor
    aus: list[int]


@dataclass
class StandInRefiner:
    """The inference interface of ``AUFaceTask``, with outputs that are easy to predict.

    Vertices move by ``0.01 * timestamp`` along every axis, AU probabilities are ``sin``/``cos`` of
    time: both depend on the absolute frame only, so a correct stitch reproduces them exactly.
    """

    clip_length: int = 16
    topology_name: str = "mediapipe"
    aus: tuple[int, ...] = (6, 12)
    calls: list[tuple[int, torch.Tensor | None]] = field(default_factory=list)

    @staticmethod
    def expected(vertices: np.ndarray, timestamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t = np.asarray(timestamps, dtype=np.float32)
        probs = np.stack([0.5 + 0.5 * np.sin(3 * t), 0.5 + 0.5 * np.cos(3 * t)], axis=1)
        return vertices + 0.01 * t[:, None, None], probs

    def reference(self, coarse: CoarseFrames) -> torch.Tensor:
        return coarse.mean_shape()

    def refine(self, coarse: CoarseFrames, reference: torch.Tensor | None = None) -> StandInRefinement:
        self.calls.append((len(coarse), reference))
        vertices, probs = self.expected(coarse.vertices.numpy(), coarse.timestamps.numpy())
        return StandInRefinement(torch.from_numpy(vertices), torch.from_numpy(probs), list(self.aus))


class WindowIdRefiner(StandInRefiner):
    """Outputs the number of the call as every value: shows which window each frame came from."""

    def refine(self, coarse: CoarseFrames, reference: torch.Tensor | None = None) -> StandInRefinement:
        value = float(len(self.calls))
        self.calls.append((len(coarse), reference))
        return StandInRefinement(
            torch.full_like(coarse.vertices, value), torch.full((len(coarse), len(self.aus)), value), list(self.aus)
        )


def _synthetic_coarse(n: int, v: int = 5) -> CoarseFrames:
    rng = np.random.default_rng(0)
    valid = np.ones(n, dtype=bool)
    valid[7] = False
    vertices = rng.normal(size=(n, v, 3)).astype(np.float32) * valid[:, None, None]
    return CoarseFrames.from_canonical(
        torch.from_numpy(vertices), torch.from_numpy(valid), fps=25.0, topology="mediapipe"
    )


def _filled_store(tmp_path: Path, coarse: CoarseFrames) -> FrameStore:
    store = FrameStore(tmp_path)
    for part in (coarse.slice(0, 30), coarse.slice(30, len(coarse))):
        for name, array in part.to_numpy().items():
            if name not in ("fps", "topology"):
                store.append(name, array)
    return store


# --------------------------------------------------------------------------- unit: windows, store, stitching


def test_frame_store_reads_back_ranges(tmp_path: Path) -> None:
    coarse = _synthetic_coarse(50)
    store = _filled_store(tmp_path, coarse)
    assert store.shape("vertices") == (50, 5, 3)
    np.testing.assert_array_equal(store.read("vertices", 25, 35), coarse.vertices[25:35].numpy())
    np.testing.assert_array_equal(np.concatenate(list(store.chunks("valid", 16))), coarse.valid.numpy())
    back = store.read("valid", 5, 12)
    assert len(back) == 7 and not back[2]
    assert len(store.read("valid", 45, 60)) == 5, "reads stop at the last row"
    with pytest.raises(Exception, match="rows"):
        store.append("vertices", np.zeros((2, 4, 3), np.float32))


def test_refinement_windows_are_stitched_in_frame_order(tmp_path: Path) -> None:
    coarse = _synthetic_coarse(50)
    store = _filled_store(tmp_path, coarse)
    refiner = StandInRefiner(clip_length=16)
    reference = np.full((5, 3), 7.0, dtype=np.float32)
    aus = refine_windows(refiner, store, reference, progress=False)
    assert aus == [6, 12]
    assert [n for n, _ in refiner.calls] == [16] * len(SlidingWindow(16).plan(50))
    assert all(torch.equal(ref, torch.from_numpy(reference)) for _, ref in refiner.calls)
    vertices, probs = StandInRefiner.expected(coarse.vertices.numpy(), coarse.timestamps.numpy())
    valid = coarse.valid.numpy()
    np.testing.assert_allclose(store.read("refined", 0, 50)[valid], vertices[valid], atol=1e-6)
    np.testing.assert_array_equal(store.read("refined", 7, 8), coarse.vertices[7:8].numpy())  # no face: coarse kept
    np.testing.assert_allclose(store.read("au_probs", 0, 50)[valid], probs[valid], atol=1e-6)
    assert np.isnan(store.read("au_probs", 7, 8)).all()


def test_overlaps_are_blended_with_the_shared_sliding_window(tmp_path: Path) -> None:
    coarse = _synthetic_coarse(40).with_fields(valid=torch.ones(40, dtype=torch.bool))
    store = _filled_store(tmp_path, coarse)
    refine_windows(WindowIdRefiner(clip_length=16), store, np.zeros((5, 3), np.float32), False)
    probs = store.read("au_probs", 0, 40)[:, 0]
    # windows start at 0, 8, 16, 24 (each 16 long); frame 8 is window 0's 9th frame and window 1's first
    np.testing.assert_array_equal(probs[:8], 0.0)
    np.testing.assert_array_equal(probs[32:], 3.0)
    assert probs[8] == pytest.approx(1 / 9)
    assert np.all(np.diff(probs) >= 0)


# --------------------------------------------------------------------------- end to end on a real clip


@pytest.fixture(scope="module")
def single_face(video_dir: Path) -> Path:
    return video_dir / "single_face.mp4"


@pytest.fixture(scope="module")
def reconstructor():
    from au_face.coarse.mediapipe import MediaPipeReconstructor

    return MediaPipeReconstructor()


@pytest.fixture(scope="module")
def video_times(single_face: Path) -> np.ndarray:
    from au_face.io.video import VideoReader

    with VideoReader(single_face) as reader:
        return np.array([f.timestamp for f in reader])


@pytest.fixture(scope="module")
def coarse_run(single_face: Path, reconstructor, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("coarse")
    return out, reconstruct(single_face, out, reconstructor, mesh_format="obj", progress=False)


@pytest.fixture(scope="module")
def refined_run(single_face: Path, reconstructor, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("refined")
    refiner = StandInRefiner()
    return (
        out,
        reconstruct(single_face, out, reconstructor, refiner=refiner, mesh_format="ply", progress=False),
        refiner,
    )


def _video_frames(path: Path) -> tuple[int, tuple[int, int]]:
    cap = cv2.VideoCapture(str(path))
    count, shape = 0, (0, 0)
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        count, shape = count + 1, (frame.shape[1], frame.shape[0])
    cap.release()
    return count, shape


def test_coarse_only_outputs(coarse_run, video_times: np.ndarray) -> None:
    out, result = coarse_run
    assert result.num_frames == 72 and result.num_valid == 72 and not result.refined
    assert set(result.paths) == {"meshes", "au_csv", "frame_meshes", "overlay"}
    assert "need a trained model" in result.summary()
    seq = load_mesh_sequence_npz(result.paths["meshes"])
    assert seq.vertices.shape == (72, 468, 3) and seq.triangles.shape[1] == 3
    np.testing.assert_allclose(seq.timestamps, video_times)
    np.testing.assert_array_equal(seq.extra["frames"], np.arange(1, 73))
    assert not bool(seq.extra["refined"]) and "au_probs" not in seq.extra
    assert str(seq.extra["topology"]) == "mediapipe"
    np.testing.assert_allclose(seq.extra["reference"], seq.vertices[seq.valid].mean(axis=0), atol=1e-4)
    files = sorted(result.paths["frame_meshes"].iterdir())
    assert len(files) == 72 and files[0].name == "frame_000001.obj"
    assert trimesh.load(files[5], process=False, maintain_order=True).vertices.shape == (468, 3)
    assert _video_frames(result.paths["overlay"]) == (72, (640, 360))
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in result.paths.values())  # no leftovers


def test_refined_outputs(refined_run, video_times: np.ndarray) -> None:
    out, result, refiner = refined_run
    assert result.refined and set(result.paths) == {"meshes", "au_csv", "au_plot", "frame_meshes", "overlay"}
    seq = load_mesh_sequence_npz(result.paths["meshes"])
    coarse = seq.extra["coarse_vertices"]
    expected_vertices, expected_probs = StandInRefiner.expected(coarse, seq.timestamps)
    np.testing.assert_allclose(seq.vertices, expected_vertices, atol=1e-5)
    np.testing.assert_allclose(seq.extra["au_probs"], expected_probs, atol=1e-5)
    np.testing.assert_array_equal(seq.extra["aus"], [6, 12])
    # every window got S̄ of the whole video, not its own mean
    s_bar = coarse[seq.valid].mean(axis=0)
    assert all(np.allclose(ref.numpy(), s_bar, atol=1e-4) for _, ref in refiner.calls)

    table = read_au_csv(result.paths["au_csv"])
    assert table.aus == [6, 12] and len(table) == 72
    np.testing.assert_array_equal(table.frames, np.arange(1, 73))
    np.testing.assert_allclose(table.timestamps, video_times, atol=5e-4)
    np.testing.assert_allclose(table.probs, expected_probs, atol=1e-4)
    np.testing.assert_array_equal(table.occurrence, expected_probs >= 0.5)
    assert np.all((table.confidence > 0.5) & (table.confidence < 1.0))  # the fit quality, not a copy of success

    assert cv2.imread(str(result.paths["au_plot"])) is not None
    assert _video_frames(result.paths["overlay"]) == (72, (840, 360))  # 200 px AU panel
    ply = sorted(result.paths["frame_meshes"].glob("*.ply"))
    assert len(ply) == 72
    np.testing.assert_allclose(trimesh.load(ply[10], process=False).vertices, seq.vertices[10], atol=1e-5)


def test_stride_and_max_frames(single_face: Path, reconstructor, tmp_path: Path, video_times: np.ndarray) -> None:
    result = reconstruct(single_face, tmp_path, reconstructor, overlay=False, stride=3, max_frames=10, progress=False)
    seq = load_mesh_sequence_npz(result.paths["meshes"])
    assert result.num_frames == 10 and set(result.paths) == {"meshes", "au_csv"}
    np.testing.assert_array_equal(seq.extra["frames"], np.arange(10) * 3 + 1)
    np.testing.assert_allclose(seq.timestamps, video_times[::3][:10])


def _assert_same_outputs(got: ReconstructionResult, want: ReconstructionResult) -> None:
    """Same files, same arrays and CSV cells (floats within 1e-5: BLAS threads may sum in another order)."""
    assert set(got.paths) == set(want.paths)
    with np.load(got.paths["meshes"]) as a, np.load(want.paths["meshes"]) as b:
        assert sorted(a.files) == sorted(b.files)
        for name in b.files:
            if np.issubdtype(b[name].dtype, np.floating):
                np.testing.assert_allclose(a[name], b[name], atol=1e-5, err_msg=name)
            else:
                np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    got_csv, want_csv = (pd.read_csv(r.paths["au_csv"]) for r in (got, want))
    assert list(got_csv.columns) == list(want_csv.columns)
    for column in want_csv.columns:  # within one unit of the last digit written
        unit = next((u for key, u in _CSV_UNITS.items() if key in column), 0.0)
        close = np.isclose(got_csv[column], want_csv[column], rtol=0.0, atol=unit * 1.01, equal_nan=True)
        if column.endswith("_c"):  # an occurrence may flip only for a probability at the threshold
            close |= (want_csv[column.replace("_c", "_p")] - 0.5).abs().to_numpy() <= 1e-4
        assert close.all(), f"{column} differs in rows {np.flatnonzero(~close)[:5]}"


#: Decimal unit of each CSV column written with decimals (by part of its name)
_CSV_UNITS = {"pose_T": 0.1, "pose_R": 1e-3, "_p": 1e-4, "confidence": 0.01, "timestamp": 1e-3}


def test_the_command_from_the_shell_refines_every_video_of_a_folder(single_face: Path, tmp_path: Path) -> None:
    """One forked refiner process serves the videos of a folder one after another (the second once hit a
    finished refinement and a broken pipe), also after one without a face failed between them (its
    work folder went while the process read it, which ended the process); the last, 320×240, is lower
    than the AU panel of its overlay."""
    from au_face.inference.api import reconstruct as api_reconstruct
    from au_face.io.checkpoints import default_checkpoint

    if default_checkpoint() is None:
        pytest.skip("no packaged model")
    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / "a.mp4").write_bytes(single_face.read_bytes())
    capture = cv2.VideoCapture(str(single_face))
    writer = cv2.VideoWriter(str(folder / "b.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (320, 240))
    while (frame := capture.read())[0]:
        writer.write(cv2.resize(frame[1][:, 80:560], (320, 240), interpolation=cv2.INTER_AREA))
    writer.release()
    capture.release()
    blank = cv2.VideoWriter(str(folder / "a_blank.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (320, 240))
    for _ in range(40):
        blank.write(np.full((240, 320, 3), 90, np.uint8))
    blank.release()
    env = {**os.environ, "GLOG_minloglevel": "2", "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, "-m", "au_face.cli", "reconstruct", str(folder), "--out", str(tmp_path / "cli")]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1 and "1 input failed" in run.stderr and "a_blank.mp4: no face found" in run.stderr
    for name in ("a", "b"):
        cli = ReconstructionResult(output_paths(name, tmp_path / "cli"), 72, 72, refined=True, name=name)
        cli.paths.pop("frame_meshes")
        api = api_reconstruct(folder / f"{name}.mp4", out=tmp_path / "api", overlay=True)
        _assert_same_outputs(cli, api)
    overlay = cv2.VideoCapture(str(tmp_path / "cli" / "b_overlay.mp4"))
    assert overlay.read()[1].shape == (272, 520, 3)  # the 320×240 picture, black below it, and the panel
    overlay.release()


def _stand_in_after(seconds: float, topology_name: str = "mediapipe") -> StandInRefiner:
    time.sleep(seconds)
    return StandInRefiner(topology_name=topology_name)


def _broken_refiner() -> StandInRefiner:
    raise AUFaceError("checkpoint is broken")


# torch has run in this process: the refiner processes of these tests are spawned, not forked
def test_a_refiner_process_gives_the_same_outputs(
    single_face: Path, reconstructor, refined_run, tmp_path: Path
) -> None:
    process = RefinerProcess(partial(_stand_in_after, 0.5), method="spawn")  # still loading when tracking starts
    try:
        result = reconstruct(single_face, tmp_path, reconstructor, refiner=process, mesh_format="ply", progress=False)
    finally:
        process.close()
    _assert_same_outputs(result, refined_run[1])
    assert _video_frames(result.paths["overlay"]) == (72, (840, 360))


def _window_ids() -> WindowIdRefiner:
    return WindowIdRefiner()


def test_no_window_spans_a_cut_in_process_or_in_a_refiner_process(
    single_face: Path, video_dir: Path, reconstructor, tmp_path: Path
) -> None:
    """Each shot of a video that cuts has windows of its own (the shot numbers reach a refiner process too)."""
    from au_face.coarse.mediapipe import ShotChangeWarning

    clip = tmp_path / "cut.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (640, 360))
    for video, start, count in ((single_face, 0, 20), (video_dir / "WolfgangLanger_Pexels.mp4", 270, 30)):
        capture = cv2.VideoCapture(str(video))
        capture.set(cv2.CAP_PROP_POS_FRAMES, start)
        for _ in range(count):
            writer.write(capture.read()[1])
        capture.release()
    writer.release()
    process = RefinerProcess(_window_ids, method="spawn")
    try:
        with pytest.warns(ShotChangeWarning, match="smoothing start again"):
            forked = reconstruct(
                clip, tmp_path / "forked", reconstructor, refiner=process, overlay=False, progress=False
            )
    finally:
        process.close()
    here = reconstruct(clip, tmp_path / "here", reconstructor, refiner=WindowIdRefiner(), overlay=False, progress=False)
    for result in (forked, here):
        with np.load(result.paths["meshes"]) as npz:
            shot, window = npz["shot"], npz["au_probs"][:, 0]
        np.testing.assert_array_equal(shot, np.repeat([0, 1], [20, 30]))
        # windows 0, 1 (frames 0..16, 4..20) in the first shot; 2, 3, 4 (0..16, 8..24, 14..30) in the second
        np.testing.assert_array_equal(window[[0, 19, 20, 49]], [0, 1, 2, 4])


def test_a_refiner_process_that_fails_to_load_stops_the_run_and_leaves_nothing(
    single_face: Path, reconstructor, tmp_path: Path
) -> None:
    for make, error in (
        (_broken_refiner, "checkpoint is broken"),
        (partial(_stand_in_after, 0.0, "ict"), "trained on topology 'ict'"),
    ):
        process = RefinerProcess(make, method="spawn")
        try:
            with pytest.raises(AUFaceError, match=error):
                reconstruct(single_face, tmp_path, reconstructor, refiner=process, progress=False)
        finally:
            process.close()
        assert list(tmp_path.iterdir()) == []


def test_the_command_from_the_shell_matches_the_api(single_face: Path, tmp_path: Path) -> None:
    """``au-face reconstruct`` run as a process refines in a forked process: same numbers as in-process."""
    from au_face.inference.api import reconstruct as api_reconstruct
    from au_face.io.checkpoints import default_checkpoint

    if default_checkpoint() is None:
        pytest.skip("no packaged model")
    env = {**os.environ, "GLOG_minloglevel": "2", "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, "-m", "au_face.cli", "reconstruct", str(single_face), "--out", str(tmp_path / "cli")]
    subprocess.run(command, check=True, env=env, capture_output=True, timeout=300)
    cli = ReconstructionResult(output_paths("single_face", tmp_path / "cli"), 72, 72, refined=True, name="single_face")
    cli.paths.pop("frame_meshes")
    api = api_reconstruct(single_face, out=tmp_path / "api", overlay=True)
    _assert_same_outputs(cli, api)
    assert sorted(p.name for p in (tmp_path / "cli").iterdir()) == sorted(p.name for p in (tmp_path / "api").iterdir())


def test_an_overlay_failure_is_raised_and_the_partial_video_discarded(
    single_face: Path, reconstructor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from au_face.viz.overlay import OverlayWriter

    def fail(self, *args, **kwargs) -> None:
        raise RuntimeError("drawing failed")

    monkeypatch.setattr(OverlayWriter, "compose", fail)
    with pytest.raises(RuntimeError, match="drawing failed"):
        reconstruct(single_face, tmp_path, reconstructor, refiner=StandInRefiner(), progress=False)
    assert not list(tmp_path.glob("*overlay*")) and not list(tmp_path.glob(".*"))
    assert not any(t.name == "au_face-overlay" and t.is_alive() for t in threading.enumerate())


def _overlay_frames(path: Path) -> np.ndarray:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while (read := cap.read())[0]:
        frames.append(read[1])
    cap.release()
    return np.stack(frames)


def test_the_overlay_draws_pass_1s_frames_and_decodes_again_only_past_the_tees_budget(
    single_face: Path, reconstructor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import au_face.inference.overlay as overlay_module
    import au_face.inference.pipeline as pipeline_module
    from au_face.inference.frame_tee import FrameTee

    decodes = []
    real_read_ahead = overlay_module.read_ahead
    monkeypatch.setattr(overlay_module, "read_ahead", lambda *a, **k: decodes.append(1) or real_read_ahead(*a, **k))
    kwargs = dict(refiner=StandInRefiner(), max_frames=30, progress=False)
    teed = reconstruct(single_face, tmp_path / "teed", reconstructor, **kwargs)
    assert decodes == [], "the video was decoded once"
    monkeypatch.setattr(pipeline_module, "FrameTee", lambda **kw: FrameTee(budget=10, **kw))  # not one frame fits
    again = reconstruct(single_face, tmp_path / "again", reconstructor, **kwargs)
    assert decodes == [1]
    a, b = _overlay_frames(teed.paths["overlay"]), _overlay_frames(again.paths["overlay"])
    assert a.shape == b.shape == (30, 360, 840, 3)
    assert np.abs(a.astype(int) - b).mean() < 1.5, "the same pictures either way"


def test_the_overlay_is_drawn_scaled_down_past_its_longest_side(
    single_face: Path, reconstructor, tmp_path: Path
) -> None:
    from au_face.viz.overlay import overlay_size

    assert overlay_size((1920, 1080), 960) == (960, 540) and overlay_size((1080, 1920), 960) == (540, 960)
    assert overlay_size((1280, 720), 960) == (640, 360), "halved: a whole divisor"
    assert overlay_size((640, 360), 960) == (640, 360) and overlay_size((1280, 720), 0) == (1280, 720)
    with pytest.raises(ValueError, match="max_side"):
        overlay_size((640, 360), -1)
    kwargs = dict(refiner=StandInRefiner(), max_frames=10, progress=False)
    full = reconstruct(single_face, tmp_path / "full", reconstructor, overlay_max_side=0, **kwargs)
    small = reconstruct(single_face, tmp_path / "small", reconstructor, overlay_max_side=320, **kwargs)
    big, little = _overlay_frames(full.paths["overlay"]), _overlay_frames(small.paths["overlay"])
    assert big.shape == (10, 360, 840, 3) and little.shape == (10, 180, 520, 3), "the AU panel keeps its width"
    shrunk = np.stack([cv2.resize(f[:, :640], (320, 180), interpolation=cv2.INTER_AREA) for f in big])
    diff = np.abs(shrunk.astype(int) - little[:, :, :320]).mean()
    shifted = np.abs(np.roll(shrunk, 8, axis=2).astype(int) - little[:, :, :320]).mean()
    # one-pixel lines and labels are drawn at one size on both: about 6 grey levels apart on average,
    # where the picture 8 pixels off is about 25
    assert diff < 10.0 and shifted > 2 * diff, f"the same picture at half the size ({diff:.1f}, shifted {shifted:.1f})"


def test_topology_mismatch_is_refused_before_any_work(single_face: Path, reconstructor, tmp_path: Path) -> None:
    with pytest.raises(
        TopologyMismatchError, match="trained on topology 'ict', the mediapipe reconstructor gives 'mediapipe'"
    ):
        reconstruct(single_face, tmp_path / "out", reconstructor, refiner=StandInRefiner(topology_name="ict"))
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- the command


def _write_video(path: Path, frames: list[np.ndarray], fps: float = 25.0) -> Path:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def _cli_error(capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    assert main(["reconstruct", *argv]) == 2
    return capsys.readouterr().err


def test_cli_reports_bad_input_clearly(tmp_path: Path, single_face: Path, capsys: pytest.CaptureFixture) -> None:
    out = str(tmp_path / "out")
    assert "video, image or folder not found" in _cli_error(capsys, [str(tmp_path / "missing.mp4"), "--out", out])
    (tmp_path / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not really a video")
    assert "corrupt.mp4" in _cli_error(capsys, [str(tmp_path / "corrupt.mp4"), "--out", out])
    blank = _write_video(tmp_path / "blank.mp4", [np.full((96, 128, 3), 128, np.uint8)] * 6)
    assert "no face found" in _cli_error(capsys, [str(blank), "--out", out])
    assert "checkpoint not found" in _cli_error(
        capsys, [str(single_face), "--ckpt", str(tmp_path / "no.ckpt"), "--out", out]
    )
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.ckpt")
    assert "not an au_face" in _cli_error(
        capsys, [str(single_face), "--ckpt", str(tmp_path / "foreign.ckpt"), "--out", out]
    )
    (tmp_path / "text.ckpt").write_text("not a checkpoint")
    assert "not a readable PyTorch checkpoint" in _cli_error(
        capsys, [str(single_face), "--ckpt", str(tmp_path / "text.ckpt"), "--out", out]
    )
    assert "exactly one" in _cli_error(capsys, [str(single_face), "--demo", "--out", out])
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_cli_topology_mismatch(tmp_path: Path, single_face: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    import au_face.inference.api

    monkeypatch.setattr(au_face.inference.api, "load_array_refiner", lambda path: StandInRefiner(topology_name="ict"))
    err = _cli_error(capsys, [str(single_face), "--ckpt", "x.ckpt", "--out", str(tmp_path)])
    assert "checkpoint was trained on topology 'ict', the mediapipe reconstructor gives 'mediapipe'" in err


def test_cli_demo_runs_end_to_end(tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AU_FACE_CACHE", str(tmp_path / "cache"))
    assert main(["reconstruct", "--demo", "--out", str(tmp_path / "out"), "--mesh-format", "obj", "--stride", "2"]) == 0
    printed = capsys.readouterr().out
    assert "24 frames, face found in 24" in printed and "overlay video" in printed
    assert len(list((tmp_path / "out").glob("demo_meshes/*.obj"))) == 24  # named after the input, not the cache file
    assert len(list((tmp_path / "cache").glob("demo_astronaut_*.mp4"))) == 1


def test_no_process_outlives_a_killed_command(single_face: Path, tmp_path: Path) -> None:
    """``kill -9`` of ``au-face reconstruct`` while it tracks: its refiner process ends too."""
    import signal

    out = tmp_path / "killed"
    env = {**os.environ, "GLOG_minloglevel": "2", "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, "-m", "au_face.cli", "reconstruct", str(single_face), "--out", str(out)]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(out.glob(".single_face_work.*/*.bin")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 60
    while _processes_mentioning(out) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _processes_mentioning(out), "a child of the killed command is still running"


def _processes_mentioning(path: Path) -> list[int]:
    """Processes whose command line holds ``path``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and str(path) in (entry / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_reconstruct_from_the_shell_runs_single_threaded_blas(tmp_path: Path) -> None:
    """OpenBLAS's spinning worker threads would compete with tracking for the second core; the user's
    own setting wins."""
    script = (
        "import os, sys\n"
        "from au_face.cli import run_command\n"
        "try:\n"
        "    run_command('reconstruct', ['--help'], fresh_process=True)\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(os.environ.get('OPENBLAS_NUM_THREADS'), 'numpy' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    default = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert default.stdout.split()[-2:] == ["1", "True"], default.stderr
    env["OPENBLAS_NUM_THREADS"] = "2"
    own = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert own.stdout.split()[-2:] == ["2", "True"], own.stderr


@pytest.mark.parametrize("inputs", [(), ("crops",)])
def test_face_crops_are_made_only_for_a_model_that_reads_them(
    inputs: tuple[str, ...], single_face: Path, reconstructor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mesh-only model needs no crops: none are warped on the tracking thread, or stored."""
    warped = []
    real_crop = type(reconstructor).crop
    monkeypatch.setattr(type(reconstructor), "crop", lambda self, *a: warped.append(1) or real_crop(self, *a))
    refiner = StandInRefiner()
    refiner.frame_inputs = inputs  # type: ignore[attr-defined]
    size = reconstructor.crop_size
    result = reconstruct(
        single_face, tmp_path, reconstructor, refiner=refiner, overlay=False, max_frames=20, progress=False
    )
    assert result.num_frames == 20 and reconstructor.crop_size == size > 0, "the reconstructor is left as it was"
    assert (len(warped) > 0) == ("crops" in inputs)
