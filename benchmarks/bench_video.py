"""Video benchmark: speed, memory and smoothness of ``au-face reconstruct`` on a real clip.

Measures, each stage in its own subprocess (so peak RSS is per run):

* decode ms/frame (OpenCV through ``VideoReader``);
* coarse ms/frame (decode + MediaPipe Face Mesh + pose fit, ``reconstruct_video``);
* refinement ms/frame (the AU-aware model over overlapping windows, as the pipeline runs it);
* end to end ms/frame and fps of ``au_face.inference.pipeline.reconstruct`` (all outputs, overlay video
  included) and its peak RSS on the clip and on the clip concatenated 4 times;
* jitter: mean vertex acceleration ``|S[t+1] - 2 S[t] + S[t-1]|`` in the canonical frame
  (template units, about cm) of the coarse and the refined meshes.

* whole process (issue 17): ``au-face reconstruct`` as a user runs it (default with the overlay,
  ``--no-overlay``, ``--no-overlay --max-faces 1``), each run right after a bare MediaPipe Face Mesh
  loop over the same frames; the best of ``--runs`` against the best, the spread of the pairs,
  CPU seconds and peak RSS; ``au-face --help`` and a one-frame ``au-face reconstruct`` (start-up);
* photos/s: 200 unrelated photos, one per person from ``--photos`` (default: the muxspace
  facial_expressions images beside the repository, when there), else made from the shared clips and
  photo (random crop, scale, mirror and light), through ``au-face reconstruct DIR --photos
  --no-overlay`` when the CLI has it, else ``au_face.reconstruct`` per photo. ``--whole-only``
  measures just these two.

Without ``--ckpt`` the stage refiner is an UNTRAINED ``AUFaceTask`` with the model settings of
``configs/synthetic.yaml`` on the MediaPipe topology (landmark masks, a random orthonormal
expression basis): right for timing, meaningless for AU probabilities and jitter.

    python benchmarks/bench_video.py [--video PATH] [--ckpt CKPT] [--whole-only | --photos-only] [--runs N] [--photos DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_VIDEO = REPO.parent / "shared" / "data" / "video" / "WolfgangLanger_Pexels.mp4"
DEFAULT_PHOTOS = REPO.parent / "data" / "facial_expressions" / "images"
GOAL_FPS = 30.0
GOAL_REFINE_SHARE = 0.20
GOAL_RSS_GROWTH = 0.15
UNTRAINED_EXPRESSION_DIM = 53


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def build_refiner(ckpt: str | None):
    """The trained model from ``ckpt``, or an untrained one of the default config (see module doc)."""
    if ckpt:
        from au_face import load_refiner

        return load_refiner(ckpt)
    import torch
    import yaml

    from au_face import AUFaceTask, FaceGeometry, LossWeights, NetConfig
    from au_face.aus import resolve_aus
    from au_face.faces.mediapipe import mediapipe_topology
    from au_face.geometry.masks import build_masks

    config = yaml.safe_load((REPO / "configs" / "synthetic.yaml").read_text())
    model_args = yaml.safe_load((REPO / "configs" / config["model"]).read_text())["init_args"]
    aus = resolve_aus(config["geometry"]["aus"])
    topology = mediapipe_topology()
    rng = np.random.default_rng(0)
    e, v = UNTRAINED_EXPRESSION_DIM, topology.num_vertices
    basis = np.linalg.qr(rng.standard_normal((3 * v, e)))[0].T.reshape(e, v, 3).astype(np.float32)
    geometry = FaceGeometry(topology, tuple(aus), build_masks(topology, aus, "landmarks"), basis)
    torch.manual_seed(0)
    task = AUFaceTask(geometry, net=NetConfig(**model_args["net"]), loss=LossWeights(**model_args["loss"]))
    return task.eval()


def jitter(vertices: np.ndarray, valid: np.ndarray) -> float:
    """Mean vertex acceleration norm over frames whose neighbours both have a face."""
    import torch

    from au_face.evaluation.sequences import mean_acceleration

    return mean_acceleration(torch.from_numpy(np.asarray(vertices)), torch.from_numpy(np.asarray(valid, dtype=bool)))


# --------------------------------------------------------------------------- stages (one per subprocess)


def stage_decode(args: argparse.Namespace) -> dict:
    from au_face.io.video import VideoReader

    start = time.perf_counter()
    with VideoReader(args.video) as reader:
        frames = sum(1 for _ in reader)
    return {"frames": frames, "seconds": time.perf_counter() - start}


def stage_coarse(args: argparse.Namespace) -> dict:
    """Time pass 1 as the pipeline runs it; then save the frames (untimed) for the refine stage."""
    from au_face.coarse.base import CoarseFrames
    from au_face.coarse.mediapipe import MediaPipeReconstructor
    from au_face.coarse.stream import reconstruct_video

    reconstructor = MediaPipeReconstructor()
    start = time.perf_counter()
    chunks = list(reconstruct_video(args.video, reconstructor))
    seconds = time.perf_counter() - start
    coarse = CoarseFrames.concat(chunks)
    coarse.save(args.coarse)
    return {"frames": len(coarse), "valid": coarse.num_valid, "seconds": seconds}


def stage_refine(args: argparse.Namespace) -> dict:
    from au_face.coarse.base import CoarseFrames
    from au_face.inference.passes import refine_windows
    from au_face.inference.pipeline import FrameStore

    coarse = CoarseFrames.load(args.coarse)
    refiner = build_refiner(args.ckpt)
    with tempfile.TemporaryDirectory() as work:
        store = FrameStore(Path(work))
        for name, array in coarse.to_numpy().items():
            if name not in ("fps", "topology"):
                store.append(name, array)
        start = time.perf_counter()
        refine_windows(refiner, store, coarse.mean_shape().numpy(), False)
        seconds = time.perf_counter() - start
        refined = store.read("refined", 0, len(coarse))
    valid = coarse.valid.numpy()
    return {
        "frames": len(coarse),
        "seconds": seconds,
        "jitter_coarse": jitter(coarse.vertices.numpy(), valid),
        "jitter_refined": jitter(refined, valid),
    }


def stage_e2e(args: argparse.Namespace) -> dict:
    from au_face.coarse.mediapipe import MediaPipeReconstructor
    from au_face.inference.pipeline import reconstruct

    refiner = build_refiner(args.ckpt)
    reconstructor = MediaPipeReconstructor()
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        result = reconstruct(args.video, out, reconstructor, refiner=refiner, overlay=True, progress=False)
        seconds = time.perf_counter() - start
    return {"frames": result.num_frames, "seconds": seconds, "stages": result.timings}


STAGES = {"decode": stage_decode, "coarse": stage_coarse, "refine": stage_refine, "e2e": stage_e2e}


def run_stage(name: str, video: Path, ckpt: str | None, coarse: Path) -> dict:
    """Run one stage in a fresh interpreter; returns its JSON result plus its peak RSS."""
    cmd = [sys.executable, __file__, "--stage", name, "--video", str(video), "--coarse", str(coarse)]
    if ckpt:
        cmd += ["--ckpt", ckpt]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"stage {name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def concat_video(src: Path, dst: Path, times: int) -> Path:
    """Write ``src`` ``times`` times in a row to ``dst`` (mp4v)."""
    import cv2

    from au_face.io.video import VideoReader

    with VideoReader(src) as reader:
        fps, size = reader.fps, reader.size
    writer = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for _ in range(times):
        with VideoReader(src) as reader:
            for frame in reader:
                writer.write(cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    return dst


#: What a user would otherwise write: decode every frame and run MediaPipe Face Mesh on it, nothing else.
BARE_MEDIAPIPE_LOOP = """
import sys, cv2, mediapipe as mp
mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1, refine_landmarks=False)
capture = cv2.VideoCapture(sys.argv[1])
while True:
    ok, frame = capture.read()
    if not ok:
        break
    mesh.process(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
"""

#: The runs of the issue: ``au-face reconstruct`` options, and the most each may take as a multiple of the bare loop.
WHOLE_MODES = {
    "default (overlay, up to 4 faces)": ([], 1.5),
    "--no-overlay": (["--no-overlay"], 1.2),
    "--no-overlay --max-faces 1": (["--no-overlay", "--max-faces", "1"], 1.2),
}
GOAL_PHOTOS_PER_SECOND = 20.0
PHOTOS = 200


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (the process and the children it waited for) and peak RSS (MiB) of one run."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}):\n{stderr.decode()[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0


def whole_process(video: Path, ckpt: str | None, out: Path, runs: int = 3) -> dict[str, dict[str, list[float]]]:
    """Each run of :data:`WHOLE_MODES` as a user runs it (start-up, the packaged or given model, all
    its outputs), each right after a bare MediaPipe loop over the same frames, ``runs`` times; plus
    ``startup`` (one frame, no overlay) and ``help``. Returns wall, CPU and peak RSS lists by run."""
    env = {**os.environ, "GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "3"}
    cli = [sys.executable, "-m", "au_face.cli"]
    model = ["--ckpt", ckpt] if ckpt else []
    bare = [sys.executable, "-c", BARE_MEDIAPIPE_LOOP, str(video)]
    results: dict[str, dict[str, list[float]]] = {}

    def record(name: str, command: list[str]) -> None:
        wall, cpu, rss = timed(command, env)
        entry = results.setdefault(name, {"wall": [], "cpu": [], "rss": []})
        entry["wall"].append(wall), entry["cpu"].append(cpu), entry["rss"].append(rss)

    for run in range(runs):
        for i, (name, (options, _)) in enumerate(WHOLE_MODES.items()):
            record(f"bare {i}", bare)
            record(name, [*cli, "reconstruct", str(video), "--out", str(out / f"{i}_{run}"), *model, *options])
        record(
            "startup",
            [*cli, "reconstruct", str(video), "--out", str(out / "one"), "--max-frames", "1", "--no-overlay", *model],
        )
        record("help", [*cli, "--help"])
    return results


def print_whole_process(results: dict[str, dict[str, list[float]]], runs: int) -> None:
    """The ratio of each run to the bare loop it alternated with: best of ``runs`` against best, and the spread of the pairs."""
    print(f"whole process, best of {runs}, each run alternating with a bare MediaPipe Face Mesh loop (one face):")
    print(
        f"  {'run':<36} {'wall s':>7} {'bare s':>7} {'ratio':>6}  {'pairs (min-max)':>15} {'CPU s':>6} {'bare CPU':>8} {'peak MiB':>8}  goal"
    )
    for i, (name, (_, goal)) in enumerate(WHOLE_MODES.items()):
        ours, bare = results[name], results[f"bare {i}"]
        ratio = min(ours["wall"]) / min(bare["wall"])
        pairs = [a / b for a, b in zip(ours["wall"], bare["wall"])]
        print(
            f"  {name:<36} {min(ours['wall']):7.2f} {min(bare['wall']):7.2f} {ratio:5.2f}x  {min(pairs):6.2f}-{max(pairs):.2f}x "
            f"{min(ours['cpu']):6.1f} {min(bare['cpu']):8.1f} {max(ours['rss']):8.0f}  {verdict(ratio <= goal)} <= {goal}x"
        )
    print(f"  start-up: au-face reconstruct of 1 frame (model, no overlay): {min(results['startup']['wall']):.2f} s")
    print(f"  au-face --help: {min(results['help']['wall']):.2f} s")


def make_photos(video_dir: Path, folder: Path, count: int = PHOTOS) -> Path:
    """``count`` unrelated-looking photos: frames of the shared clips and the photo, each cropped,
    scaled, mirrored and lit at random (seed 0), as JPEG files in ``folder``."""
    import cv2

    rng = np.random.default_rng(0)
    sources = []
    for name in ("WolfgangLanger_Pexels.mp4", "single_face.mp4"):
        capture = cv2.VideoCapture(str(video_dir / name))
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            sources.append(frame)
        capture.release()
    sources.append(cv2.imread(str(video_dir / "single_face.jpg")))
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(count):
        image = sources[int(rng.integers(len(sources)))]
        h, w = image.shape[:2]
        keep = rng.uniform(0.7, 1.0)
        y0, x0 = int(rng.uniform(0, (1 - keep) * h)), int(rng.uniform(0, (1 - keep) * w))
        crop = image[y0 : y0 + int(keep * h), x0 : x0 + int(keep * w)]
        side = int(rng.choice([320, 480, 640, 800]))
        crop = cv2.resize(crop, (side, int(side * crop.shape[0] / crop.shape[1])))
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        crop = np.clip(crop.astype(np.float32) * rng.uniform(0.7, 1.3), 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"photo_{k:03d}.jpg"), crop)
    return folder


def pick_photos(source: Path, folder: Path, count: int = PHOTOS) -> Path:
    """``count`` unrelated photos of ``source``: one per person (the name without its trailing number),
    people evenly spread in name order, copied to ``folder``."""
    people: dict[str, Path] = {}
    for path in sorted(source.glob("*.jpg")):
        people.setdefault(re.sub(r"_?\d+[a-z]?$", "", path.stem), path)
    names = sorted(people)
    if len(names) < count:
        raise SystemExit(f"{source} has photos of {len(names)} people, fewer than {count}")
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(count):
        shutil.copy(people[names[k * len(names) // count]], folder)
    return folder


#: Photos through the Python API, one after another (when the CLI has no --photos).
API_PHOTO_LOOP = """
import sys, time
from pathlib import Path
import au_face
from au_face.errors import AUFaceError
photos = sorted(Path(sys.argv[1]).glob("*.jpg"))
start = time.perf_counter()
for photo in photos:
    try:
        au_face.reconstruct(photo)
    except AUFaceError:  # a crop without a face: reported, as --photos would
        pass
print(time.perf_counter() - start)
"""


def photos_per_second(folder: Path, ckpt: str | None, out: Path, runs: int) -> tuple[str, list[float]]:
    """Photos per second over the photos in ``folder``, whole process, ``runs`` times: ``au-face
    reconstruct DIR --photos --no-overlay`` when the CLI has ``--photos``, else ``au_face.reconstruct``
    on each photo in one process (start-up excluded). Returns how it was measured and the rates."""
    env = {**os.environ, "GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "3"}
    count = len(list(folder.glob("*.jpg")))
    model = ["--ckpt", ckpt] if ckpt else []
    help_text = subprocess.run(
        [sys.executable, "-m", "au_face.cli", "reconstruct", "--help"], capture_output=True, text=True, env=env
    ).stdout
    rates = []
    if "--photos" in help_text:
        how = "au-face reconstruct DIR --photos --no-overlay (whole process)"
        for run in range(runs):
            command = [
                sys.executable,
                "-m",
                "au_face.cli",
                "reconstruct",
                str(folder),
                "--photos",
                "--no-overlay",
                "--out",
                str(out / str(run)),
                *model,
            ]
            rates.append(count / timed(command, env)[0])
    else:
        how = "au_face.reconstruct(photo) in a loop, one process, start-up excluded (this CLI has no --photos)"
        for _ in range(runs):
            done = subprocess.run(
                [sys.executable, "-c", API_PHOTO_LOOP, str(folder)], capture_output=True, text=True, env=env, check=True
            )
            rates.append(count / float(done.stdout.strip().splitlines()[-1]))
    return how, rates


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--ckpt", default=None, help="trained AUFaceTask checkpoint (default: untrained model)")
    parser.add_argument("--whole-only", action="store_true", help="only the whole-process ratios and photos/s")
    parser.add_argument("--photos-only", action="store_true", help="only photos/s")
    parser.add_argument("--runs", type=int, default=3, help="alternating runs of each whole process (default 3)")
    parser.add_argument(
        "--photos", type=Path, default=DEFAULT_PHOTOS, help="folder to pick the 200 photos from (default: muxspace's)"
    )
    parser.add_argument("--stage", choices=sorted(STAGES), help=argparse.SUPPRESS)
    parser.add_argument("--coarse", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        result = STAGES[args.stage](args)
        result["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps(result))
        return
    if not args.video.is_file():
        raise SystemExit(f"video not found: {args.video} (pass --video)")

    stage_refiner = (
        f"checkpoint {args.ckpt}" if args.ckpt else "UNTRAINED AUFaceTask (configs/synthetic.yaml model settings)"
    )
    whole_refiner = f"checkpoint {args.ckpt}" if args.ckpt else "the packaged model"
    print(f"video: {args.video}\nwhole process refiner: {whole_refiner}")
    if not args.whole_only:
        print(f"stage refiner: {stage_refiner}")
    print(f"cpu cores: {os.cpu_count()}, load average before: {os.getloadavg()[0]:.2f}\n")
    if args.whole_only or args.photos_only:
        with tempfile.TemporaryDirectory() as tmp:
            tmp_dir = Path(tmp)
            if not args.photos_only:
                print_whole_process(whole_process(args.video, args.ckpt, tmp_dir / "whole", args.runs), args.runs)
            if args.photos.is_dir():
                photos = pick_photos(args.photos, tmp_dir / "photos")
                print(f"\nphotos: one per person from {args.photos}")
            else:
                photos = make_photos(args.video.parent, tmp_dir / "photos")
                print("\nphotos: made from the shared clips and photo")
            how, rates = photos_per_second(photos, args.ckpt, tmp_dir / "photos_out", args.runs)
            print(
                f"photos: {PHOTOS} photos, {how}: best {max(rates):.1f} photos/s (runs {', '.join(f'{r:.1f}' for r in rates)})"
            )
            print(f"  {verdict(max(rates) >= GOAL_PHOTOS_PER_SECOND)}  >= {GOAL_PHOTOS_PER_SECOND:.0f} photos/s")
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        coarse_npz = tmp_dir / "coarse.npz"
        decode = run_stage("decode", args.video, args.ckpt, coarse_npz)
        coarse = run_stage("coarse", args.video, args.ckpt, coarse_npz)
        refine = run_stage("refine", args.video, args.ckpt, coarse_npz)
        e2e = run_stage("e2e", args.video, args.ckpt, coarse_npz)
        long_video = concat_video(args.video, tmp_dir / "x4.mp4", 4)
        e2e4 = run_stage("e2e", long_video, args.ckpt, coarse_npz)
        whole = whole_process(args.video, args.ckpt, tmp_dir / "whole", args.runs)

    def ms(stage: dict) -> float:
        return 1000.0 * stage["seconds"] / stage["frames"]

    n = decode["frames"]
    share = refine["seconds"] / coarse["seconds"]
    fps = e2e["frames"] / e2e["seconds"]
    growth = e2e4["peak_rss_mb"] / e2e["peak_rss_mb"] - 1.0
    rows = [
        ("decode", f"{ms(decode):.2f} ms/frame", f"{n} frames"),
        ("coarse (decode + MediaPipe)", f"{ms(coarse):.2f} ms/frame", f"face in {coarse['valid']}/{coarse['frames']}"),
        ("MediaPipe alone", f"{ms(coarse) - ms(decode):.2f} ms/frame", "coarse - decode"),
        ("refinement", f"{ms(refine):.2f} ms/frame", f"{100 * share:.0f} % of coarse"),
        ("end to end (1x)", f"{ms(e2e):.2f} ms/frame", f"{fps:.1f} fps, peak RSS {e2e['peak_rss_mb']:.0f} MiB"),
        (
            "end to end (4x)",
            f"{ms(e2e4):.2f} ms/frame",
            f"{e2e4['frames']} frames, peak RSS {e2e4['peak_rss_mb']:.0f} MiB",
        ),
        ("jitter coarse", f"{refine['jitter_coarse']:.4f}", "mean |acceleration|, template units/frame^2"),
        (
            "jitter refined",
            f"{refine['jitter_refined']:.4f}",
            f"{refine['jitter_refined'] / refine['jitter_coarse']:.2f} x coarse",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>16}  {note}")
    print("\nend-to-end stage seconds (1x):", {k: round(v, 2) for k, v in e2e["stages"].items()})
    print("\ngoals:")
    print(f"  {verdict(fps >= GOAL_FPS)}  end to end >= {GOAL_FPS:.0f} fps: {fps:.1f}")
    print(
        f"  {verdict(share <= GOAL_REFINE_SHARE)}  refinement <= {100 * GOAL_REFINE_SHARE:.0f} % of coarse: {100 * share:.0f} %"
    )
    print(
        f"  {verdict(growth <= GOAL_RSS_GROWTH)}  peak RSS at 4x within {100 * GOAL_RSS_GROWTH:.0f} % of 1x: {100 * growth:+.1f} %"
    )
    print()
    print_whole_process(whole, args.runs)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
