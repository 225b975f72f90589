"""Faults: kill -9, Ctrl-C, damaged caches, concurrent runs, hostile checkpoints and landmark files.

Real subprocesses only where a process must die or two must run at once; everything is tiny.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from dataclasses import asdict
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import yaml

from au_face.cli import main, signals_as_interrupt
from au_face.coarse.registry import reconstructor_version
from au_face.errors import PendingSignal, Terminated
from dataset_fixtures import face_geometry, make_folder_labels, tiny_geometry, write_coarse_cache

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "GLOG_minloglevel": "2", "PYTHONPATH": os.pathsep.join(sys.path)}


@pytest.fixture(autouse=True)
def _ctrl_c_is_heard():
    """Ctrl-C reaches these runs, and the processes they start, even when the tests themselves were
    started with SIGINT ignored (as a shell starts a background job)."""
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _cli(*argv: str) -> list[str]:
    return [sys.executable, "-m", "au_face.cli", *argv]


def _hidden(folder: Path) -> list[str]:
    """Hidden entries other than lock files (which are meant to stay)."""
    return sorted(
        p.name for p in folder.iterdir() if p.name.startswith(".") and p.name not in (".locks", ".manifest.lock")
    )


def _assert_same_npz(a: Path, b: Path) -> None:
    with np.load(a) as za, np.load(b) as zb:
        assert sorted(za.files) == sorted(zb.files)
        for name in za.files:
            np.testing.assert_array_equal(za[name], zb[name], err_msg=name)


# --------------------------------------------------------------------------- kill -9


def test_kill_9_during_reconstruct_then_rerun(tmp_path: Path, video_dir: Path) -> None:
    video = shutil.copy(video_dir / "single_face.mp4", tmp_path / "clip.mp4")
    out, reference = tmp_path / "out", tmp_path / "reference"
    proc = subprocess.Popen(_cli("reconstruct", str(video), "--out", str(out)), env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    while (
        not (out.is_dir() and list(out.glob(".clip_work.*/*.bin")))
        and proc.poll() is None
        and time.monotonic() < deadline
    ):
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert [p for p in _hidden(out) if p.startswith(".clip_work.")], "the kill should land while the work folder exists"

    assert main(["reconstruct", str(video), "--out", str(out)]) == 0
    assert main(["reconstruct", str(video), "--out", str(reference)]) == 0
    assert _hidden(out) == [], "debris of the killed run is left"
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in reference.iterdir())
    _assert_same_npz(out / "clip_meshes.npz", reference / "clip_meshes.npz")


def test_kill_9_during_preprocess_then_rerun(tmp_path: Path, video_dir: Path) -> None:
    folder, out, reference = tmp_path / "videos", tmp_path / "cache", tmp_path / "reference"
    folder.mkdir()
    for name in ("a.mp4", "b.mp4", "c.mp4", "d.mp4"):
        shutil.copy(video_dir / "single_face.mp4", folder / name)
    argv = ["preprocess", str(folder), "--max-frames", "24", "--out"]
    proc = subprocess.Popen(_cli(*argv, str(out)), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(out.glob("*.npz")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 1 <= len(list(out.glob("*.npz"))) < 4, "the kill should land part-way through the videos"

    assert main([*argv, str(out)]) == 0
    assert main([*argv, str(reference)]) == 0
    assert _hidden(out) == []
    npz = sorted(p.name for p in out.glob("*.npz"))
    assert npz == sorted(p.name for p in reference.glob("*.npz")) and len(npz) == 4
    for name in npz:
        _assert_same_npz(out / name, reference / name)


def test_work_folders_of_live_runs_are_kept(tmp_path: Path) -> None:
    from au_face.utils.files import make_work_folder

    live = make_work_folder(tmp_path, "clip")
    dead = tmp_path / ".clip_work.999999999-abcdefgh"
    dead.mkdir()
    (tmp_path / ".clip_meshes.npz.999999999-abcdefgh.tmp.npz").touch()
    second = make_work_folder(tmp_path, "clip")
    assert sorted(_hidden(tmp_path)) == sorted([live.name, second.name])


# --------------------------------------------------------------------------- Ctrl-C of fit


class CtrlCAt(L.Callback):
    """Presses Ctrl-C (SIGINT to this process; or sends ``signal``) when epoch ``epoch`` starts; logs every epoch start."""

    def __init__(self, epoch: int, log: str, signal: str = "SIGINT") -> None:
        self.epoch, self.record, self.signal = epoch, Path(log), signal

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        with self.record.open("a") as fh:
            fh.write(f"{trainer.current_epoch}\n")
        if trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), getattr(signal, self.signal))
            time.sleep(1)  # the signal arrives here


def _fit_config(tmp_path: Path) -> Path:
    """configs/folder.yaml on four tiny cached videos, with a tiny model, writing under ``tmp_path/run``."""
    videos = tmp_path / "videos"
    names = ["train/anna_1", "train/bob_1", "val/carl_1", "test/dora_1"]
    for name in names:
        make_folder_labels(videos / Path(name).parent, (Path(name).name,), ("AU06", "AU12"), num_frames=12)
    write_coarse_cache(videos / "cache", videos, [videos / f"{n}.mp4" for n in names], 12)
    config = yaml.safe_load((REPO / "configs" / "folder.yaml").read_text())
    config["run_dir"] = str(tmp_path / "run")
    config["geometry"] = asdict(tiny_geometry(videos / "cache", ["AU06", "AU12"]))
    config["trainer"] = {"callbacks": yaml.safe_load((REPO / "configs" / config["trainer"]).read_text())["callbacks"],
                         "logger": yaml.safe_load((REPO / "configs" / config["trainer"]).read_text())["logger"],
                         "accelerator": "cpu", "enable_progress_bar": False, "enable_model_summary": False,
                         "limit_train_batches": 2, "limit_val_batches": 1}  # fmt: skip
    config["model"] = {
        "class_path": "au_face.training.task.AUFaceTask",
        "init_args": {
            "net": {
                "dim": 16,
                "token_hidden": 16,
                "heads": 2,
                "spatial_layers": 1,
                "temporal_layers": 1,
                "modality": "mesh",
            }
        },
    }
    config["data"] = yaml.safe_load((REPO / "configs" / config["data"]).read_text())
    config["data"]["init_args"].update(
        video_dir=str(videos), cache_dir=str(videos / "cache"), batch_size=2, num_workers=0
    )
    path = tmp_path / "fit.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_ctrl_c_during_fit_then_resume_from_last(tmp_path: Path) -> None:
    config, log = _fit_config(tmp_path), tmp_path / "epochs.txt"
    probe = f"--trainer.callbacks+={{class_path: test_faults.CtrlCAt, init_args: {{epoch: 4, log: '{log}'}}}}"
    handler = signal.getsignal(signal.SIGINT)
    try:
        assert main(["fit", "--config", str(config), "--trainer.max_epochs=8", probe]) == 130
    finally:
        signal.signal(signal.SIGINT, handler)
    assert log.read_text().split() == ["0", "1", "2", "3", "4"]
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["epoch"] == 3, "last.ckpt must be the last finished epoch"

    log.unlink()
    resume = f"--trainer.callbacks+={{class_path: test_faults.CtrlCAt, init_args: {{epoch: -1, log: '{log}'}}}}"
    assert main(["fit", "--config", str(config), "--trainer.max_epochs=6", "--ckpt_path=last", resume]) == 0
    assert log.read_text().split() == ["4", "5"], "the resumed run must continue after the last finished epoch"


def test_ckpt_path_with_code_is_refused_unrun(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"aus": [6, 12]}, "x": RunsCode(tmp_path / "ran")}, evil)
    assert main(["validate", "--config", str(_fit_config(tmp_path)), f"--ckpt_path={evil}"]) == 2
    assert "refused, because loading it could run that code" in capsys.readouterr().err
    assert not (tmp_path / "ran").exists()


# --------------------------------------------------------------------------- cache


def _flip_bytes_inside(npz: Path, member: str) -> None:
    """Change bytes in the middle of one member's data, leaving the zip index intact."""
    with zipfile.ZipFile(npz) as archive:
        info = archive.getinfo(member)
    with open(npz, "r+b") as fh:
        fh.seek(info.header_offset + 26)
        name_len, extra_len = np.frombuffer(fh.read(4), dtype="<u2")
        fh.seek(info.header_offset + 30 + name_len + extra_len + info.compress_size // 2)
        chunk = fh.read(16)
        fh.seek(-16, os.SEEK_CUR)
        fh.write(bytes(b ^ 0xFF for b in chunk))


def test_corrupt_cache_is_detected_and_redone(tmp_path: Path, video_dir: Path, capsys: pytest.CaptureFixture) -> None:
    from au_face.data.cache import CacheMissError, CoarseCache

    folder, out = tmp_path / "videos", tmp_path / "cache"
    folder.mkdir()
    video = Path(shutil.copy(video_dir / "single_face.mp4", folder / "a.mp4"))
    argv = ["preprocess", str(folder), "--out", str(out), "--max-frames", "6"]
    assert main(argv) == 0
    cache = CoarseCache(out, "mediapipe", reconstructor_version("mediapipe"), base=folder, max_frames=6)
    _flip_bytes_inside(cache.path(video), "vertices.npy")
    with pytest.raises(CacheMissError) as caught:
        cache.load(video)
    assert str(cache.path(video)) in str(caught.value) and "au-face preprocess" in str(caught.value)
    capsys.readouterr()
    assert main(argv) == 0
    assert " done" in capsys.readouterr().out  # redone, not reported as cached
    assert cache.load(video).num_valid == 6


def test_concurrent_preprocess_runs_share_the_work(tmp_path: Path, video_dir: Path) -> None:
    folder, out, reference = tmp_path / "videos", tmp_path / "cache", tmp_path / "reference"
    folder.mkdir()
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        shutil.copy(video_dir / "single_face.mp4", folder / name)
    command = _cli("preprocess", str(folder), "--out", str(out), "--max-frames", "24")
    runs = [
        subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    results = [run.communicate(timeout=300) + (run.returncode,) for run in runs]
    for _stdout, stderr, code in results:
        assert code == 0 and "Traceback" not in stderr, stderr
    assert main(["preprocess", str(folder), "--out", str(reference), "--max-frames", "24"]) == 0
    npz = sorted(p.name for p in out.glob("*.npz"))
    assert len(npz) == 3 and npz == sorted(p.name for p in reference.glob("*.npz"))
    for name in npz:
        _assert_same_npz(out / name, reference / name)
    assert _hidden(out) == []


# --------------------------------------------------------------------------- hostile files


class RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _tiny_task(aus: list[int]):
    from au_face.nn.net import NetConfig
    from au_face.training.task import AUFaceTask

    net = NetConfig(dim=16, token_hidden=16, heads=2, spatial_layers=1, temporal_layers=1, modality="mesh")
    return AUFaceTask(face_geometry(aus), net=net)


def test_init_checkpoint_with_code_is_refused_unrun(tmp_path: Path) -> None:
    from au_face.io.checkpoints import CheckpointError

    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"aus": [1, 2]}, "x": RunsCode(tmp_path / "ran")}, evil)
    with pytest.raises(CheckpointError, match="could run that code"):
        _tiny_task([1, 2]).load_trunk(evil)
    assert not (tmp_path / "ran").exists()


def test_init_checkpoint_must_hold_the_trunk(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from au_face.io.checkpoints import CheckpointError

    source = _tiny_task([1, 2])
    geometry = source.geometry.to_state()
    unrelated = tmp_path / "unrelated.ckpt"
    torch.save(
        {"state_dict": {"encoder.weight": torch.zeros(3)}, "hyper_parameters": {}, "geometry": geometry}, unrelated
    )
    with pytest.raises(CheckpointError, match=r"matches only 0 of the model's \d+ trunk weights"):
        _tiny_task([1, 2]).load_trunk(unrelated)
    partial = tmp_path / "partial.ckpt"
    state = {k: v for i, (k, v) in enumerate(source.state_dict().items()) if i % 2}
    torch.save({"state_dict": state, "hyper_parameters": {}, "geometry": geometry}, partial)
    with pytest.raises(CheckpointError, match="matches only"):
        _tiny_task([1, 2]).load_trunk(partial)
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": source.state_dict(), "hyper_parameters": {}, "geometry": geometry}, good)
    lightning_log = logging.getLogger("lightning.pytorch")  # does not propagate to the root logger
    lightning_log.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="lightning.pytorch"):
            loaded, skipped = _tiny_task([1, 25]).load_trunk(good)
    finally:
        lightning_log.removeHandler(caplog.handler)
    assert loaded and skipped and f"loaded {len(loaded)} weights, re-initialised {len(skipped)}" in caplog.text


def test_landmark_embedding_with_code_is_refused_unrun(tmp_path: Path) -> None:
    from au_face.faces.flame import FlameFormatError, read_landmark_embedding

    path = tmp_path / "landmark_embedding.npy"
    np.save(path, np.array({"full_lmk_faces_idx": RunsCode(tmp_path / "ran")}, dtype=object), allow_pickle=True)
    with pytest.raises(FlameFormatError, match="refusing to load global"):
        read_landmark_embedding(path, num_faces=100)
    assert not (tmp_path / "ran").exists()


# --------------------------------------------------------------------------- issue 16: signals


def test_sigterm_during_fit_exits_non_zero_and_says_how_to_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config, log = _fit_config(tmp_path), tmp_path / "epochs.txt"
    probe = f"--trainer.callbacks+={{class_path: test_faults.CtrlCAt, init_args: {{epoch: 3, log: '{log}', signal: SIGTERM}}}}"
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        assert main(["fit", "--config", str(config), "--trainer.max_epochs=200", probe]) == 143
    finally:
        signal.signal(signal.SIGINT, handlers[0])
        signal.signal(signal.SIGTERM, handlers[1])
    assert log.read_text().split() == ["0", "1", "2", "3"]
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] == 2
    err = capsys.readouterr().err
    assert f"au-face: terminated; resume from {last} with the same command and --ckpt_path last" in err


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("sig, raised", [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Terminated)])
def test_a_signal_lost_inside_a_del_is_raised_again(sig: int, raised: type[BaseException]) -> None:
    """Python ignores an exception raised in a ``__del__``: the signal must still stop the next step."""
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("the test runner handles SIGINT itself")

    class SignalledWhenCollected:
        def __del__(self) -> None:
            os.kill(os.getpid(), sig)
            time.sleep(0.05)  # the handler runs here, inside __del__, and its exception is dropped

    with signals_as_interrupt():
        SignalledWhenCollected()
        with pytest.raises(raised):
            PendingSignal.reraise()
    PendingSignal.reraise()  # forgotten once the command is over
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def _wait_for(condition, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)


def test_sigterm_during_reconstruct_cleans_up(tmp_path: Path, video_dir: Path) -> None:
    video = shutil.copy(video_dir / "single_face.mp4", tmp_path / "clip.mp4")
    out = tmp_path / "out"
    proc = subprocess.Popen(_cli("reconstruct", str(video), "--out", str(out)), env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    _wait_for(lambda: out.is_dir() and list(out.glob(".clip_work.*/*.bin")), proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143 and "au-face: terminated" in err and "Traceback" not in err, err
    assert not out.exists() or not any(out.iterdir()), "work folder or a partial output set left"


@pytest.mark.parametrize(
    "sig, code, word",
    [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")],
    ids=["sigterm", "ctrl-c"],
)
def test_signal_during_preprocess_stops_and_resumes(
    tmp_path: Path, video_dir: Path, sig: int, code: int, word: str
) -> None:
    folder, out = tmp_path / "videos", tmp_path / "cache"
    folder.mkdir()
    for name in ("a.mp4", "b.mp4", "c.mp4", "d.mp4"):
        shutil.copy(video_dir / "single_face.mp4", folder / name)
    argv = ["preprocess", str(folder), "--max-frames", "48", "--out", str(out)]
    proc = subprocess.Popen(_cli(*argv), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: (out / "manifest.json").is_file(), proc)  # the first video is done
    proc.send_signal(sig)
    start = time.monotonic()
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - start < 15, "the run must stop within seconds"
    assert proc.returncode == code and f"au-face: {word}; run the same command again to resume" in err, err
    assert "Traceback" not in err and 1 <= len(list(out.glob("[!.]*.npz"))) < 4, err
    assert main(argv) == 0 and len(list(out.glob("[!.]*.npz"))) == 4 and _hidden(out) == []


# --------------------------------------------------------------------------- issue 16: disk full


def _no_space(path: object) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def test_disk_full_during_reconstruct_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """A full disk, simulated: the AU CSV's writer raises ENOSPC (a tmpfs needs mount rights)."""
    import au_face.inference.pipeline

    def full(path: Path, *args: object) -> None:
        raise _no_space(path)

    monkeypatch.setattr(au_face.inference.pipeline, "_write_csv", full)
    video = shutil.copy(REPO.parent / "shared" / "data" / "video" / "single_face.jpg", tmp_path / "photo.jpg")
    assert main(["reconstruct", str(video), "--out", str(tmp_path / "out"), "--no-overlay"]) == 2
    err = capsys.readouterr().err
    assert f"au-face: error: {tmp_path / 'out' / 'photo_aus.csv'}: No space left on device" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir()), "no half-written output set"


def test_disk_full_while_writing_frame_meshes_leaves_no_half_set(
    tmp_path: Path, video_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """The disk fills after 3 per-frame OBJs (simulated: the mesh export raises ENOSPC)."""
    import trimesh

    export, calls = trimesh.Trimesh.export, []

    def filling(mesh: trimesh.Trimesh, file_obj: object = None, *args: object, **kwargs: object) -> object:
        calls.append(file_obj)
        if len(calls) > 3:
            raise _no_space(file_obj)
        return export(mesh, file_obj, *args, **kwargs)

    monkeypatch.setattr(trimesh.Trimesh, "export", filling)
    video = shutil.copy(video_dir / "single_face.mp4", tmp_path / "clip.mp4")
    argv = [
        "reconstruct",
        str(video),
        "--out",
        str(tmp_path / "out"),
        "--no-overlay",
        "--mesh-format",
        "obj",
        "--max-frames",
        "8",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir()), "no half-written output set"


# --------------------------------------------------------------------------- issue 16: cache


def test_video_replaced_while_preprocess_reads_it_is_redone(
    tmp_path: Path, video_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """The manifest records the file as it was before reading: a file renamed over it meanwhile is not 'cached'."""
    import au_face.data.preprocess
    from au_face.data.cache import CoarseCache

    folder, out = tmp_path / "videos", tmp_path / "cache"
    folder.mkdir()
    video = Path(shutil.copy(video_dir / "single_face.mp4", folder / "a.mp4"))
    original = au_face.data.preprocess.reconstruct_video_to_file

    def replaced_while_read(*args: object, **kwargs: object) -> object:
        result = original(*args, **kwargs)
        newer = folder / ".a.mp4.new"
        shutil.copy(video_dir / "single_face.mp4", newer)
        with open(newer, "ab") as fh:
            fh.write(b"\0" * 16)  # another file: other size, other mtime
        os.replace(newer, video)
        return result

    monkeypatch.setattr(au_face.data.preprocess, "reconstruct_video_to_file", replaced_while_read)
    argv = ["preprocess", str(folder), "--out", str(out), "--max-frames", "4"]
    assert main(argv) == 1
    assert f"failed: {video} changed while it was read; run the command again" in capsys.readouterr().err
    cache = CoarseCache(out, "mediapipe", reconstructor_version("mediapipe"), base=folder, max_frames=4)
    assert cache.missing([video]) == [video], "the replaced file must not count as cached"
    monkeypatch.setattr(au_face.data.preprocess, "reconstruct_video_to_file", original)
    assert main(argv) == 0 and cache.missing([video]) == []


def test_object_arrays_in_the_cache_are_one_line_for_fit(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A cached npz holding Python objects, with its manifest checksum made to match: fit refuses it in one line, unrun."""
    from au_face.data.cache import CoarseCache

    config = _fit_config(tmp_path)
    videos = tmp_path / "videos"
    cache = CoarseCache(videos / "cache", "mediapipe", reconstructor_version("mediapipe"), videos)
    video = videos / "train" / "anna_1.mp4"
    with np.load(cache.path(video)) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["topology"] = np.array([RunsCode(tmp_path / "ran"), "mediapipe"], dtype=object)
    np.savez(cache.path(video), **arrays, allow_pickle=True)
    cache.record(video, "done", 12, 11)
    assert main(["fit", "--config", str(config), "--trainer.max_epochs=1"]) == 2
    err = capsys.readouterr().err
    assert f"au-face: error: {cache.path(video)} is not a readable coarse-frames npz" in err and "Traceback" not in err
    assert not (tmp_path / "ran").exists()


def test_complete_read_only_cache_is_all_cached(tmp_path: Path, video_dir: Path) -> None:
    """Root writes anywhere: the check drops CAP_DAC_OVERRIDE with setpriv so the read-only folder bites."""
    from test_bad_inputs import _without_root_powers

    folder, out = tmp_path / "videos", tmp_path / "cache"
    folder.mkdir()
    shutil.copy(video_dir / "single_face.mp4", folder / "a.mp4")
    argv = ["preprocess", str(folder), "--out", str(out), "--max-frames", "4"]
    assert main(argv) == 0
    out.chmod(0o555)
    try:
        if os.geteuid() == 0:
            done = _without_root_powers(_cli(*argv))
        else:
            done = subprocess.run(_cli(*argv), env=ENV, capture_output=True, text=True, timeout=300)
    finally:
        out.chmod(0o755)
    assert done.returncode == 0 and "all 1 videos cached" in done.stdout, done.stderr
