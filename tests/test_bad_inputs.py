"""Bad inputs a new user tries, run through ``au_face.cli.main`` in-process.

Each case builds its input under a folder and gives the command line, the exit code it must
end with and a phrase the first message line (the error, or the first line printed on success)
must contain. Every run must end without a traceback and leave no half-written file (hidden
temporary files, work folders) in ``--out``. ``benchmarks/bench_bad_inputs.py`` runs the same cases.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
import traceback
import warnings
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dataset_fixtures import face_geometry

SHARED_VIDEO = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "video"
REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Case:
    """A bad input: ``make(folder) -> argv`` (``--out`` is ``folder/out``), the exit code and message phrase wanted."""

    name: str
    make: Callable[[Path], list[str]]
    code: int
    phrase: str
    warning: bool = False  # the phrase is in a warning (the run succeeds)


@dataclass(frozen=True)
class Outcome:
    """What one run did."""

    code: int
    first_line: str
    traceback: bool
    debris: list[str]
    output: str


# --------------------------------------------------------------------------- inputs


def shared(name: str) -> Path:
    path = SHARED_VIDEO / name
    if not path.is_file():
        pytest.skip(f"needs the shared test material {path} (read-only data beside the repository)")
    return path


def photo() -> np.ndarray:
    """The shared single-face photo, BGR."""
    return cv2.imread(str(shared("single_face.jpg")))


def clip_frames(count: int = 8) -> list[np.ndarray]:
    """The first ``count`` frames of the shared single-face clip, BGR."""
    capture = cv2.VideoCapture(str(shared("single_face.mp4")))
    frames = []
    while len(frames) < count:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def write_video(path: Path, frames: list[np.ndarray], fps: float = 25.0, fourcc: str = "MJPG") -> Path:
    """An AVI (or MP4 with ``fourcc='mp4v'``) of BGR or grayscale frames."""
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h), frames[0].ndim == 3)
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def two_faces() -> np.ndarray:
    """Two copies of the shared photo side by side."""
    image = photo()
    return np.hstack([image, image])


def reconstruct(video: Path, folder: Path, *flags: str) -> list[str]:
    return ["reconstruct", str(video), "--out", str(folder / "out"), "--no-overlay", *flags]


def _zero_byte(folder: Path) -> list[str]:
    (folder / "empty.mp4").touch()
    return reconstruct(folder / "empty.mp4", folder)


def _text_as_video(folder: Path) -> list[str]:
    (folder / "notes.mp4").write_text("not a video\n" * 50)
    return reconstruct(folder / "notes.mp4", folder)


def _truncated(folder: Path) -> list[str]:
    data = shared("single_face.mp4").read_bytes()
    (folder / "cut.mp4").write_bytes(data[: len(data) // 3])
    return reconstruct(folder / "cut.mp4", folder)


def _audio_only(folder: Path) -> list[str]:
    with wave.open(str(folder / "speech.wav"), "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(8000)
        audio.writeframes((np.sin(np.arange(8000) / 5) * 8000).astype(np.int16).tobytes())
    return reconstruct(folder / "speech.wav", folder)


def _directory(folder: Path) -> list[str]:
    (folder / "videos").mkdir()
    return reconstruct(folder / "videos", folder)


def _missing(folder: Path) -> list[str]:
    return reconstruct(folder / "missing.mp4", folder)


def _still_image(folder: Path) -> list[str]:
    shutil.copy(shared("single_face.jpg"), folder / "photo.jpg")
    return reconstruct(folder / "photo.jpg", folder)


def _huge(folder: Path) -> list[str]:
    return reconstruct(write_video(folder / "huge.avi", [cv2.resize(photo(), (4000, 3000))] * 2), folder)


def _odd_size(folder: Path) -> list[str]:
    return reconstruct(write_video(folder / "odd.avi", [cv2.resize(f, (333, 221)) for f in clip_frames(4)]), folder)


def _grayscale(folder: Path) -> list[str]:
    frames = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in clip_frames(4)]
    return reconstruct(write_video(folder / "gray.avi", frames), folder)


def _fps(value: float) -> Callable[[Path], list[str]]:
    def make(folder: Path) -> list[str]:
        return reconstruct(write_video(folder / f"fps{value:g}.avi", clip_frames(4), fps=value), folder)

    return make


def _no_face(folder: Path) -> list[str]:
    return reconstruct(write_video(folder / "wall.avi", [np.full((96, 128, 3), 90, np.uint8)] * 6), folder)


def _face_comes_and_goes(folder: Path) -> list[str]:
    blank = np.full_like(clip_frames(1)[0], 90)
    frames = [blank] * 3 + clip_frames(4) + [blank] * 3
    return reconstruct(write_video(folder / "comes_and_goes.avi", frames), folder)


def _several_faces(folder: Path) -> list[str]:
    return reconstruct(write_video(folder / "two.avi", [two_faces()] * 3), folder)


def _upside_down(folder: Path) -> list[str]:
    frames = [cv2.flip(f, -1) for f in clip_frames(8)]
    return reconstruct(write_video(folder / "upside_down.avi", frames), folder)


def _unicode_name(folder: Path) -> list[str]:
    video = write_video(folder / "vidéo clip ü 1.avi", clip_frames(4))
    return ["reconstruct", str(video), "--out", str(folder / "out put é"), "--no-overlay"]


def _flag(*flags: str) -> Callable[[Path], list[str]]:
    def make(folder: Path) -> list[str]:
        return reconstruct(write_video(folder / "clip.avi", [np.zeros((8, 8, 3), np.uint8)]), folder, *flags)

    return make


def _out_is_file(command: str) -> Callable[[Path], list[str]]:
    def make(folder: Path) -> list[str]:
        (folder / "out").write_text("a file, not a folder")
        video = write_video(folder / "clip.avi", clip_frames(2))
        return [
            command,
            str(video),
            "--out",
            str(folder / "out"),
            *(["--no-overlay"] if command == "reconstruct" else []),
        ]

    return make


def _checkpoint(kind: str) -> Callable[[Path], list[str]]:
    def make(folder: Path) -> list[str]:
        ckpt = folder / f"{kind}.ckpt"
        if kind == "text":
            ckpt.write_text("not a checkpoint")
        elif kind == "foreign":
            torch.save({"weights": torch.zeros(3)}, ckpt)
        elif kind == "code":
            torch.save({"state_dict": {}, "hyper_parameters": {"aus": [1]}, "x": RunsCode(folder / "ran")}, ckpt)
        elif kind == "mismatched":
            torch.save(tiny_checkpoint(), ckpt)
        elif kind == "folder":
            ckpt.mkdir()
        elif kind in ("nan", "clip_length 100000"):
            torch.save(packaged_checkpoint(nan=kind == "nan", clip_length=100_000 if kind != "nan" else None), ckpt)
        return reconstruct(write_video(folder / "clip.avi", clip_frames(2)), folder, "--ckpt", str(ckpt))

    return make


def _config(kind: str) -> Callable[[Path], list[str]]:
    def make(folder: Path) -> list[str]:
        config = folder / "config.yaml"
        if kind == "unknown key":
            config.write_text("not_an_option: 3\n")
        elif kind == "not yaml":
            config.write_text("trainer: [unclosed\n")
        return ["fit", "--config", str(REPO / "configs" / "folder.yaml"), "--config", str(config)]

    return make


def _ict(kind: str) -> Callable[[Path], list[str]]:
    def make(folder: Path) -> list[str]:
        ict = folder / "ict.npz"
        if kind == "truncated":
            ict.write_bytes(shared_ict().read_bytes()[:200_000])
        return [
            "masks",
            "--topology",
            "ict",
            "--aus",
            "bp4d",
            "--ict",
            str(ict),
            "--out",
            str(folder / "out" / "masks.png"),
        ]

    return make


def shared_ict() -> Path:
    path = SHARED_VIDEO.parent / "ict-facekit" / "ict_facekit_light_neutral_expr57_id50.npz"
    if not path.is_file():
        pytest.skip(f"needs the shared ICT-FaceKit model {path}")
    return path


def ffmpeg(*args: str | Path) -> None:
    """Run the ffmpeg of imageio-ffmpeg (skip the test without it)."""
    try:
        import imageio_ffmpeg

        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        pytest.skip("needs imageio-ffmpeg's ffmpeg to write the test video")
    subprocess.run([exe, "-hide_banner", "-loglevel", "error", "-y", *map(str, args)], check=True, timeout=120)


def rotated_video(path: Path, degrees: int, count: int = 4) -> Path:
    """An MP4 as a phone writes it: frames stored turned, and a display matrix of ``degrees`` that
    turns them upright on playback."""
    stored = {-90: cv2.ROTATE_90_COUNTERCLOCKWISE, 90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180}[degrees]
    raw = write_video(
        path.with_name(f"stored_{path.name}"), [cv2.rotate(f, stored) for f in clip_frames(count)], fourcc="mp4v"
    )
    ffmpeg("-display_rotation", str(degrees), "-i", raw, "-c", "copy", path)
    raw.unlink()
    return path


def _rotated_180(folder: Path) -> list[str]:
    return reconstruct(rotated_video(folder / "phone.mp4", 180), folder)


def _truncated_jpeg(fraction: float) -> Callable[[Path], list[str]]:
    def make(folder: Path) -> list[str]:
        data = shared("single_face.jpg").read_bytes()
        (folder / "cut.jpg").write_bytes(data[: int(len(data) * fraction)])
        return reconstruct(folder / "cut.jpg", folder)

    return make


def _av1(folder: Path) -> list[str]:
    source = write_video(folder / "source.avi", clip_frames(3))
    ffmpeg("-i", source, "-c:v", "libaom-av1", "-cpu-used", "8", folder / "av1.mp4")
    return reconstruct(folder / "av1.mp4", folder)


def _animated_webp(folder: Path) -> list[str]:
    from PIL import Image

    frames = [Image.fromarray(f[:, :, ::-1]) for f in clip_frames(3)]
    frames[0].save(folder / "anim.webp", save_all=True, append_images=frames[1:], duration=40, loop=0)
    return reconstruct(folder / "anim.webp", folder)


def _hidden_metadata(folder: Path) -> list[str]:
    """A folder of frames as a Mac copies it to a USB stick: ``._*`` companions and ``.DS_Store``."""
    frames = folder / "frames"
    frames.mkdir()
    for i, frame in enumerate(clip_frames(3)):
        cv2.imwrite(str(frames / f"frame_{i:03d}.jpg"), frame)
        (frames / f"._frame_{i:03d}.jpg").write_bytes(b"\x00\x05\x16\x07" + b"\x00" * 60)
    (frames / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + b"\x00" * 60)
    return reconstruct(frames, folder)


def _video_and_images(folder: Path) -> list[str]:
    mixed = folder / "mixed"
    mixed.mkdir()
    write_video(mixed / "clip.avi", clip_frames(2))
    for i in range(4):
        shutil.copy(shared("single_face.jpg"), mixed / f"photo{i}.jpg")
    return reconstruct(mixed, folder)


def _empty(what: str) -> Callable[[Path], list[str]]:
    def make(folder: Path) -> list[str]:
        video = write_video(folder / "clip.avi", clip_frames(2))
        return (
            ["reconstruct", "", "--out", str(folder / "out")]
            if what == "input"
            else ["reconstruct", str(video), "--out", ""]
        )

    return make


class RunsCode:
    """Pickles as a call that creates a file: proof that loading ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def packaged_checkpoint(nan: bool = False, clip_length: int | None = None) -> dict:
    """The packaged model's checkpoint, with NaN weights or another ``clip_length``."""
    from au_face.io.checkpoints import default_checkpoint

    if default_checkpoint() is None:
        pytest.skip("needs the packaged model")
    ckpt = torch.load(default_checkpoint(), map_location="cpu", weights_only=True)
    if nan:
        next(v for v in ckpt["state_dict"].values() if v.is_floating_point()).fill_(float("nan"))
    if clip_length is not None:
        ckpt["hyper_parameters"]["clip_length"] = clip_length
    return ckpt


def tiny_checkpoint() -> dict:
    """An AUFaceTask checkpoint (hyper-parameters, geometry) whose state dict lacks every weight."""
    net = {"dim": 16, "token_hidden": 16, "heads": 2, "spatial_layers": 1, "temporal_layers": 1, "modality": "mesh"}
    return {"state_dict": {}, "hyper_parameters": {"geometry": None, "net": net}, "geometry": face_geometry([1, 2]).to_state(),
            "pytorch-lightning_version": "2.6.0"}  # fmt: skip


CASES = [
    Case("zero-byte file", _zero_byte, 2, "empty.mp4"),
    Case("text file named .mp4", _text_as_video, 2, "notes.mp4"),
    Case("truncated mp4", _truncated, 2, "cut.mp4: OpenCV cannot open it"),
    Case("audio only", _audio_only, 2, "speech.wav"),
    Case("empty folder", _directory, 2, "no videos"),
    Case("missing file", _missing, 2, "not found"),
    Case("still image (1 frame)", _still_image, 0, "1 frames, face found in 1"),
    Case("4000x3000 frames", _huge, 0, "2 frames, face found in 2"),
    Case("odd size 333x221", _odd_size, 0, "4 frames, face found in"),
    Case("grayscale video", _grayscale, 0, "4 frames, face found in"),
    Case("fps 0.03", _fps(0.03), 0, "outside the plausible", warning=True),
    Case("fps 600", _fps(600), 0, "outside the plausible", warning=True),
    Case("no face", _no_face, 2, "no face found"),
    Case("face comes and goes", _face_comes_and_goes, 0, "10 frames, face found in 4"),
    Case("two faces", _several_faces, 0, "2 faces in view", warning=True),
    Case("upside-down face", _upside_down, 2, "no face found"),
    Case("unicode and spaces in names", _unicode_name, 0, "4 frames, face found in 4"),
    Case("--stride 0", _flag("--stride", "0"), 2, "--stride"),
    Case("--mesh-format xyz", _flag("--mesh-format", "xyz"), 2, "--mesh-format"),
    Case("unknown flag", _flag("--frobnicate"), 2, "unrecognized arguments"),
    Case("reconstruct --out is a file", _out_is_file("reconstruct"), 2, "is a file, not a folder"),
    Case("preprocess --out is a file", _out_is_file("preprocess"), 2, "is a file, not a folder"),
    Case("checkpoint: missing", _checkpoint("missing"), 2, "checkpoint not found"),
    Case("checkpoint: text", _checkpoint("text"), 2, "not a readable PyTorch checkpoint"),
    Case("checkpoint: foreign", _checkpoint("foreign"), 2, "not an au_face"),
    Case("checkpoint: runs code", _checkpoint("code"), 2, "refused, because loading it could run that code"),
    Case("checkpoint: weights do not fit", _checkpoint("mismatched"), 2, "weights do not fit"),
    Case("config: missing file", _config("missing"), 2, "config.yaml"),
    Case("config: unknown key", _config("unknown key"), 2, "not_an_option"),
    Case("config: not YAML", _config("not yaml"), 2, "Problems parsing config"),
    Case("ICT: missing", _ict("missing"), 2, "not found"),
    Case("ICT: truncated npz", _ict("truncated"), 2, "not a readable npz"),
    # issue 16
    Case("phone video, 180 degree display matrix", _rotated_180, 0, "4 frames, face found in 4"),
    Case("JPEG cut at 85 %", _truncated_jpeg(0.85), 2, "truncated JPEG"),
    Case("JPEG cut at 55 %", _truncated_jpeg(0.55), 2, "truncated JPEG"),
    Case("folder with 1 video and 4 images", _video_and_images, 0, "4 images; only the videos", warning=True),
    Case("--out ''", _empty("out"), 2, "--out: an empty path"),
    Case("INPUT ''", _empty("input"), 2, "input: an empty path"),
    Case("AV1 video", _av1, 2, "an AV1 video"),
    Case("animated WebP", _animated_webp, 2, "an animated WebP"),
    Case("macOS ._* and .DS_Store in a folder of frames", _hidden_metadata, 0, "3 frames, face found in 3"),
    Case("checkpoint: a folder", _checkpoint("folder"), 2, "is a folder, not a checkpoint file"),
    Case("checkpoint: NaN weights", _checkpoint("nan"), 2, "NaN or infinite weights"),
    Case("checkpoint: clip_length 100000", _checkpoint("clip_length 100000"), 0, "2 frames, face found in 2"),
]


# --------------------------------------------------------------------------- running


def run_cli(argv: list[str], out: Path | None = None) -> Outcome:
    """Run ``au-face`` in this process; capture its output and whether a traceback escaped."""
    from au_face.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    escaped = False
    with (
        contextlib.redirect_stdout(stdout),
        contextlib.redirect_stderr(stderr),
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        try:
            code = main(argv)
        except SystemExit as exit_:  # argparse and jsonargparse exit on bad flags
            code = exit_.code if isinstance(exit_.code, int) else 1
        except Exception:
            traceback.print_exc(file=stderr)
            code, escaped = 1, True
    text = "".join(f"{w.category.__name__}: {w.message}\n" for w in caught) + stderr.getvalue() + stdout.getvalue()
    first = first_message_line(stderr.getvalue(), stdout.getvalue(), code)
    return Outcome(code, first, escaped or "Traceback" in text, debris(out), text)


def first_message_line(stderr: str, stdout: str, code: int) -> str:
    """The error line (``...error: ...``) of a failed run, else the first line printed on stdout
    after the video name (warnings, which precede it, are checked separately)."""
    if code != 0:
        return next((line for line in stderr.splitlines() if "error:" in line), stderr.strip()[:200])
    lines = stdout.splitlines()
    return lines[1] if len(lines) > 1 else (lines[0] if lines else "")


def debris(out: Path | None) -> list[str]:
    """Half-written things under ``out``: hidden temporary files and work folders."""
    if out is None or not out.is_dir():
        return []
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.name.startswith(".") or ".tmp" in p.name)


def run_case(case: Case, folder: Path) -> Outcome:
    """Run a case in ``folder`` (also the current folder: what a relative or empty path reaches)."""
    argv = case.make(folder)
    out = Path(argv[argv.index("--out") + 1]) if "--out" in argv and argv[argv.index("--out") + 1] else None
    with contextlib.chdir(folder):
        return run_cli(argv, out if out is None or out.suffix == "" else out.parent)


@pytest.fixture(autouse=True)
def _quiet_mediapipe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLOG_minloglevel", "2")
    monkeypatch.delenv("AU_FACE_DEBUG", raising=False)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_cli_case(case: Case, tmp_path: Path) -> None:
    outcome = run_case(case, tmp_path)
    assert not outcome.traceback, outcome.output
    assert outcome.code == case.code, outcome.output
    assert case.phrase in (outcome.output if case.warning else outcome.first_line), outcome.output
    assert not outcome.debris


def test_code_in_a_checkpoint_is_not_run(tmp_path: Path) -> None:
    run_case(next(c for c in CASES if c.name == "checkpoint: runs code"), tmp_path)
    assert not (tmp_path / "ran").exists()


def test_image_input_and_two_faces_are_reported(tmp_path: Path) -> None:
    """A still image is a 1-frame video; with two faces the warning says which one was used."""
    cv2.imwrite(str(tmp_path / "two.png"), two_faces())
    outcome = run_cli(reconstruct(tmp_path / "two.png", tmp_path), tmp_path / "out")
    assert outcome.code == 0 and "1 frames, face found in 1" in outcome.output
    assert "2 faces in view; using the largest" in outcome.output and "centred at x=" in outcome.output


def test_the_same_face_is_chosen_in_every_frame(tmp_path: Path) -> None:
    from au_face.coarse.mediapipe import MediaPipeReconstructor, MultipleFacesWarning

    rgb = np.ascontiguousarray(two_faces()[:, :, ::-1])
    reconstructor = MediaPipeReconstructor(crop_size=0)
    with pytest.warns(MultipleFacesWarning):
        record = reconstructor.reconstruct([rgb] * 4, [0.0, 0.04, 0.08, 0.12], 25.0)
    centres = record.translation[:, 0].numpy()
    assert record.num_valid == 4 and np.ptp(centres) < 2.0  # one face, followed
    assert abs(centres[0] - rgb.shape[1] / 2) < rgb.shape[1] / 2  # a face, not the gap between them


def test_unwritable_out_is_one_line(tmp_path: Path) -> None:
    """Root bypasses permissions: run as root without CAP_DAC_OVERRIDE (or as the user we are)."""
    locked = tmp_path / "locked"
    locked.mkdir()
    video = write_video(tmp_path / "clip.avi", clip_frames(2))
    locked.chmod(0o555)
    for command in ("reconstruct", "preprocess"):
        argv = [command, str(video), "--out", str(locked / "out")]
        code, err = run_cli_without_root_powers(argv)
        assert code == 2 and "Traceback" not in err, err
        assert f"cannot write to --out {locked / 'out'}: Permission denied" in err
    assert not any(locked.iterdir())


def run_cli_without_root_powers(argv: list[str]) -> tuple[int, str]:
    """``au-face argv`` where permissions bite: in this process for a normal user, else (root) in a
    subprocess without CAP_DAC_OVERRIDE. Returns the exit code and what it printed."""
    if os.geteuid() != 0:
        outcome = run_cli(argv)
        return outcome.code, outcome.output
    done = _without_root_powers([sys.executable, "-m", "au_face.cli", *argv])
    return done.returncode, done.stderr


def _without_root_powers(command: list[str]) -> subprocess.CompletedProcess:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root and setpriv (util-linux) is missing: cannot drop CAP_DAC_OVERRIDE")
    prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--"]
    probe = subprocess.run([*prefix, sys.executable, "-c", "pass"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"setpriv cannot drop capabilities here: {probe.stderr.decode().strip()}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "PYTHONWARNINGS": "ignore"}
    return subprocess.run([*prefix, *command], capture_output=True, text=True, env=env, timeout=300)


# --------------------------------------------------------------------------- library-level inputs


def test_label_files_without_a_header_say_so(tmp_path: Path) -> None:
    from au_face.data.labels import LabelFormatError, read_affwild2, read_bp4d

    (tmp_path / "F001_T1.csv").write_text("1,0,1,0,0,1\n2,0,1,0,0,1\n")
    with pytest.raises(LabelFormatError, match="header row is missing"):
        read_bp4d(tmp_path / "F001_T1.csv", aus=[1, 2])
    (tmp_path / "video1.txt").write_text("0,1,0,0\n0,1,1,0\n")
    with pytest.raises(LabelFormatError, match="header row is missing"):
        read_affwild2(tmp_path / "video1.txt", aus=[1, 2])


def test_truncated_ict_npz_is_a_clear_error(tmp_path: Path) -> None:
    from au_face.faces.ict import ICTAssetError, ICTFaceModel

    cut = tmp_path / "ict.npz"
    cut.write_bytes(shared_ict().read_bytes()[:-1000])
    with pytest.raises(ICTAssetError, match="not a readable npz"):
        ICTFaceModel.from_npz(cut)


def test_checkpoint_errors_are_whole_lines(tmp_path: Path) -> None:
    from au_face.io.checkpoints import CheckpointError
    from au_face.model.refiner import load_refiner

    ckpt = tmp_path / "mismatched.ckpt"
    torch.save(tiny_checkpoint(), ckpt)
    with pytest.raises(CheckpointError) as caught:
        load_refiner(ckpt)
    message = str(caught.value)
    assert "\n" not in message and message.endswith(")") and "weights do not fit" in message


# --------------------------------------------------------------------------- issue 16: inputs


def _outputs(out: Path, suffix: str = "_meshes.npz") -> list[str]:
    return sorted(p.name.removesuffix(suffix) for p in out.glob(f"*{suffix}"))


def test_clashing_names_get_their_own_outputs(tmp_path: Path) -> None:
    """a.mp4 and a.avi, sub/x.mp4 and sub_x.avi: four inputs, four result sets."""
    videos = tmp_path / "videos"
    (videos / "sub").mkdir(parents=True)
    for path in (videos / "a.mp4", videos / "a.avi", videos / "sub" / "x.mp4", videos / "sub_x.avi"):
        write_video(path, clip_frames(2), fourcc="mp4v" if path.suffix == ".mp4" else "MJPG")
    outcome = run_cli(reconstruct(videos, tmp_path), tmp_path / "out")
    assert outcome.code == 0 and not outcome.traceback, outcome.output
    assert _outputs(tmp_path / "out") == ["a.avi", "a.mp4", "sub_x.avi", "sub_x.mp4"]


def test_phone_video_is_read_upright(tmp_path: Path) -> None:
    """A -90 degree display matrix: frames come out as players show them, and the head is upright."""
    from au_face.io.sources import open_frames

    video = rotated_video(tmp_path / "phone.mp4", -90)
    upright = clip_frames(4)
    with open_frames(video) as reader:
        frames = [f.rgb[:, :, ::-1] for f in reader]
        assert reader.size == (upright[0].shape[1], upright[0].shape[0])
    assert [f.shape for f in frames] == [f.shape for f in upright]
    assert max(np.abs(a.astype(float) - b).mean() for a, b in zip(frames, upright)) < 8.0
    outcome = run_cli(reconstruct(video, tmp_path), tmp_path / "out")
    assert outcome.code == 0, outcome.output
    import pandas as pd

    table = pd.read_csv(tmp_path / "out" / "phone_aus.csv")
    assert table["success"].all() and table["pose_Rz"].abs().max() < 0.35  # sideways it is about -1.6


def test_outputs_are_never_inputs(tmp_path: Path) -> None:
    """--out inside the input folder, or the input folder itself, run twice: only the videos are reconstructed."""
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "clip.avi", clip_frames(2))
    for out in (videos / "out", videos):
        for _ in range(2):
            outcome = run_cli(["reconstruct", str(videos), "--out", str(out)], out)
            assert outcome.code == 0, outcome.output
        assert _outputs(out) == ["clip"] and _outputs(out, "_overlay.mp4") == ["clip"]


def test_dot_inputs_are_named_after_their_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    anna = tmp_path / "anna"
    (anna / "sub").mkdir(parents=True)
    for i, frame in enumerate(clip_frames(2)):
        cv2.imwrite(str(anna / f"frame{i}.jpg"), frame)
    monkeypatch.chdir(anna)
    assert run_cli(["reconstruct", ".", "--out", str(tmp_path / "dot"), "--no-overlay"]).code == 0
    monkeypatch.chdir(anna / "sub")
    assert run_cli(["reconstruct", "..", "--out", str(tmp_path / "dotdot"), "--no-overlay"]).code == 0
    assert _outputs(tmp_path / "dot", "_aus.csv") == ["anna"] and _outputs(tmp_path / "dotdot", "_aus.csv") == ["anna"]
    assert not [p for p in (tmp_path / "dot").iterdir() if p.name.startswith(("_", "."))]


def test_a_bad_video_does_not_stop_the_others(tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "a.avi", clip_frames(2))
    (videos / "b.mp4").write_text("not a video\n" * 50)
    write_video(videos / "c.avi", clip_frames(2))
    outcome = run_cli(reconstruct(videos, tmp_path), tmp_path / "out")
    assert outcome.code == 1 and not outcome.traceback, outcome.output
    assert _outputs(tmp_path / "out") == ["a", "c"]
    assert "b.mp4" in outcome.first_line and "1 input failed" in outcome.output


@pytest.mark.parametrize("kind", ["folder", "video", "photo"])
def test_unreadable_input_says_permission_denied(tmp_path: Path, kind: str) -> None:
    """A folder, video or photo without read permission. As root (which reads anything) the run drops
    CAP_DAC_OVERRIDE with setpriv, so the permission bites for real."""
    if kind == "folder":
        path = tmp_path / "locked"
        path.mkdir()
        write_video(path / "clip.avi", clip_frames(2))
    elif kind == "video":
        path = write_video(tmp_path / "video.avi", clip_frames(2))
    else:
        path = Path(shutil.copy(shared("single_face.jpg"), tmp_path / "photo.jpg"))
    path.chmod(0)
    try:
        argv = reconstruct(path, tmp_path)
        code, err = run_cli_without_root_powers(argv)
    finally:
        path.chmod(0o755)
    assert code == 2 and "Traceback" not in err, err
    assert "permission denied" in err.lower() and path.name in err, err


def test_au_face_cache_that_is_a_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from au_face.faces.mediapipe import _cached_topology

    (tmp_path / "cache").write_text("a file")
    monkeypatch.setenv("AU_FACE_CACHE", str(tmp_path / "cache"))
    _cached_topology.cache_clear()
    try:
        outcome = run_cli(reconstruct(write_video(tmp_path / "clip.avi", clip_frames(2)), tmp_path))
    finally:
        _cached_topology.cache_clear()
    assert outcome.code == 2 and not outcome.traceback, outcome.output
    assert f"AU_FACE_CACHE={tmp_path / 'cache'} is a file, not a folder" in outcome.first_line


def test_damaged_cached_topology_is_rebuilt_with_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from au_face.faces.mediapipe import NUM_VERTICES, _cache_file, _cached_topology, mediapipe_topology
    from au_face.faces.topology import FaceTopology

    monkeypatch.setenv("AU_FACE_CACHE", str(tmp_path))
    cached = _cache_file(tmp_path)
    cached.write_bytes(b"PK\x03\x04 damaged" * 10)
    _cached_topology.cache_clear()
    try:
        with pytest.warns(UserWarning, match="damaged .*rebuilding it"):
            topology = mediapipe_topology()
    finally:
        _cached_topology.cache_clear()
    assert topology.num_vertices == NUM_VERTICES
    assert FaceTopology.load(cached).num_vertices == NUM_VERTICES


def test_a_window_capped_to_the_video_gives_the_padded_result() -> None:
    """A video shorter than ``clip_length`` is one window of its own length, not padded to the
    clip length (which, at 100000, needed 160 GB): the padding was masked, so results agree."""
    from au_face.coarse.base import CoarseFrames
    from au_face.faces.mediapipe import mediapipe_topology
    from au_face.io.checkpoints import default_checkpoint
    from au_face.model.refiner import load_refiner

    if default_checkpoint() is None:
        pytest.skip("needs the packaged model")
    refiner = load_refiner(default_checkpoint())
    template = torch.from_numpy(mediapipe_topology().template).float()
    vertices = template + 0.002 * torch.randn(6, *template.shape, generator=torch.Generator().manual_seed(0))
    coarse = CoarseFrames.from_canonical(
        vertices, torch.tensor([1, 1, 1, 0, 1, 1], dtype=torch.bool), 25.0, "mediapipe"
    )
    capped = refiner.refine(coarse)
    with torch.no_grad():
        padded = refiner(refiner._batch([coarse], [refiner.reference(coarse)], refiner.clip_length))
    assert refiner.clip_length > len(coarse)
    np.testing.assert_allclose(capped.au_probs.numpy(), padded["probs"][0, :6].numpy(), atol=1e-5)
    np.testing.assert_allclose(
        capped.vertices[coarse.valid].numpy(), padded["refined"][0, :6][coarse.valid].numpy(), atol=1e-5
    )
