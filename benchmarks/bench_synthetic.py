"""Synthetic-data acceptance benchmark: train with `au-face fit`, test on held-out identities.

Prints, per modality (both / mesh / video, the supplement's Table 1 rows): training wall time,
mean and per-AU F1 on the test identities, vertex error to ground truth and mean vertex
acceleration of coarse vs refined meshes; then the time of one refinement forward pass on a
20-frame clip (CPU, batch 1).

    export AU_FACE_ICT=/path/to/ict_facekit_light_neutral_expr57_id50.npz
    python benchmarks/bench_synthetic.py --minutes 8 --modalities both mesh video
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from pathlib import Path

import torch

from au_face import load_refiner
from au_face.cli import main

REPO = Path(__file__).resolve().parents[1]


def run_cli(command: str, run_dir: Path, modality: str, extra: list[str]) -> None:
    args = [
        command, "--config", str(REPO / "configs" / "synthetic.yaml"), f"--run_dir={run_dir}",
        f"--model.init_args.net.modality={modality}", "--trainer.enable_progress_bar=false", *extra,
    ]  # fmt: skip
    if main(args) != 0:
        raise SystemExit(f"au-face {command} failed for modality {modality}")


def last_metrics(run_dir: Path, prefix: str) -> dict[str, float]:
    files = sorted(run_dir.rglob("metrics.csv"), key=lambda p: p.stat().st_mtime)
    values: dict[str, float] = {}
    with open(files[-1]) as fh:
        for row in csv.DictReader(fh):
            values.update({k: float(v) for k, v in row.items() if v and k.startswith(prefix)})
    return values


def forward_ms(ckpt: Path, frames: int = 20, repeats: int = 10) -> float:
    task = load_refiner(ckpt)
    batch = {
        "vertices": torch.randn(1, frames, task.geometry.num_vertices, 3),
        "valid": torch.ones(1, frames, dtype=torch.bool),
        "crops": torch.rand(1, frames, 3, 112, 112),
    }
    times = []
    with torch.no_grad():
        task(batch)
        for _ in range(repeats):
            start = time.perf_counter()
            task(batch)
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=8.0, help="training time budget per modality")
    parser.add_argument("--modalities", nargs="+", default=["both", "mesh", "video"])
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "bench_synthetic")
    args = parser.parse_args()
    budget = f"00:00:{int(args.minutes):02d}:{int(60 * (args.minutes % 1)):02d}"
    results = {}
    for modality in args.modalities:
        run_dir = args.out / modality
        start = time.perf_counter()
        run_cli("fit", run_dir, modality, [f"--trainer.max_time={budget}"])
        fit_seconds = time.perf_counter() - start
        ckpt = run_dir / "checkpoints" / "best.ckpt"
        run_cli("test", run_dir / "test", modality, [f"--ckpt_path={ckpt}"])
        metrics = last_metrics(run_dir / "test", "test/")
        results[modality] = (fit_seconds, metrics, forward_ms(ckpt))

    aus = sorted({k.split("/")[-1] for m in results.values() for k in m[1] if k.startswith("test/f1/AU")})
    print("\n## Synthetic AU benchmark (held-out identities)\n")
    print(
        "| modality | fit s | mean F1 | "
        + " | ".join(aus)
        + " | vertex err coarse → refined (cm) | accel coarse → refined (cm/frame²) | accel reduction |"
    )
    print("|---" * (6 + len(aus)) + "|")
    for modality, (seconds, m, _) in results.items():
        per_au = " | ".join(f"{m.get(f'test/f1/{a}', float('nan')):.2f}" for a in aus)
        reduction = 1 - m["test/accel_ratio"]
        print(
            f"| {modality} | {seconds:.0f} | {m['test/f1_mean']:.3f} | {per_au} | "
            f"{m['test/vertex_error_coarse']:.4f} → {m['test/vertex_error_refined']:.4f} | "
            f"{m['test/accel_coarse']:.4f} → {m['test/accel_refined']:.4f} | {100 * reduction:.0f} % |"
        )
    print("\nRefinement forward pass, 20-frame clip, CPU, batch 1:")
    for modality, (_, _, ms) in results.items():
        print(f"  {modality}: {ms:.1f} ms")
    if "both" in results:
        seconds, m, _ = results["both"]
        ok = (
            m["test/f1_mean"] >= 0.80
            and seconds <= 600
            and m["test/vertex_error_refined"] < m["test/vertex_error_coarse"]
            and m["test/accel_ratio"] <= 0.5
        )
        print(
            f"\nAcceptance (both: F1 >= 0.80 within 10 min, lower vertex error, >= 50 % lower acceleration): {'PASS' if ok else 'FAIL'}"
        )


if __name__ == "__main__":
    main_bench()
