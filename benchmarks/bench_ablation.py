"""What AU-awareness adds: the default model against variants that differ in one config key.

    python benchmarks/bench_ablation.py [--epochs 5] [--seeds 0] [--out outputs/ablation]

Every variant is `au-face fit --config configs/simreal.yaml` (the default model's first stage, on the
synthetic sequences alone: the photos carry no mesh ground truth) plus one override, trained for the
same number of epochs (shorter than the shipped model's, and stated in the output) on the same
sim-to-real data, then evaluated on the held-out test identities with
`bench_simreal.quick_summary`: mean AU F1 over the 19 AUs, expression error, its ratio to the
Gaussian filter at equal smoothness, acceleration and peak AU-region amplitude relative to ground
truth. A variant whose training finished earlier is reused, so an interrupted ablation resumes.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from au_face import load_refiner
from au_face.cli import main as au_face
from bench_simreal import load_datamodule, load_split, quick_summary

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "simreal.yaml"
VARIANTS: dict[str, list[str]] = {
    "default (mesh, AU masks, both transformers, neutral S̄, smoothing only)": [],
    "mesh + video (both)": ["--model.init_args.net.modality=both", "--data.init_args.use_crops=true"],
    "video only (T^t)": ["--model.init_args.net.modality=video", "--data.init_args.use_crops=true"],
    "no AU masks (every token sees the whole face)": ["--model.init_args.net.au_masks=false"],
    "no spatial transformer": ["--model.init_args.net.spatial_layers=0"],
    "no temporal transformer": ["--model.init_args.net.temporal_layers=0"],
    "S̄ = clip mean": ["--data.init_args.reference=mean"],
    "with expression correction B·Δψ": ["--model.init_args.net.expression_correction=true"],
}


def train(name: str, overrides: list[str], seed: int, epochs: int, out: Path) -> Path:
    run = out / f"{hashlib.sha1(name.encode()).hexdigest()[:8]}_s{seed}"
    last = run / "last.ckpt"
    if last.is_file() and torch.load(last, map_location="cpu", weights_only=True).get("epoch") == epochs - 1:
        return last  # finished by an earlier run
    callbacks = f"--trainer.callbacks=[{{class_path: ModelCheckpoint, init_args: {{dirpath: '{run}', filename: latest, save_last: true}}}}]"
    code = au_face(["fit", "--config", str(CONFIG), f"--seed_everything={seed}", f"--trainer.max_epochs={epochs}",
                    f"--run_dir={run}", "--trainer.logger=false", "--trainer.enable_progress_bar=false",
                    callbacks, *overrides])  # fmt: skip
    if code != 0:
        raise SystemExit(f"training {name!r} failed ({code})")
    return last


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/ablation"))
    parser.add_argument("--only", nargs="*", help="variant names to run (default all)")
    args = parser.parse_args()
    start = time.perf_counter()
    dm = load_datamodule(CONFIG)
    test = load_split(dm, "test")
    masks = torch.as_tensor(dm.geometry.masks, dtype=torch.float32)
    rows = []
    for name, overrides in VARIANTS.items():
        if args.only and name not in args.only:
            continue
        results = [
            quick_summary(load_refiner(train(name, overrides, seed, args.epochs, args.out)), test, masks)
            for seed in args.seeds
        ]
        rows.append(
            (name, {k: (np.mean([r[k] for r in results]), np.std([r[k] for r in results])) for k in results[0]})
        )
        print(f"done: {name} ({time.perf_counter() - start:.0f} s)", flush=True)
    seeds = ", ".join(map(str, args.seeds))
    print(f"\n{args.epochs} epochs per variant, seeds {seeds}; {len(test)} held-out sequences; mean ± std over seeds\n")
    print(
        "| variant | mean AU F1 | expression error (cm) | vs Gaussian at equal smoothness | acceleration / GT | peak AU amplitude / GT |"
    )
    print("|---|---|---|---|---|---|")
    for name, m in rows:
        cells = [
            f"{m[k][0]:.3f} ± {m[k][1]:.3f}" if len(args.seeds) > 1 else f"{m[k][0]:.3f}"
            for k in ("f1", "expression", "vs_gaussian", "accel", "amplitude")
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"\n({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
