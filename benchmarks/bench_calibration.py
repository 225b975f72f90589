"""How far calibration offsets move when the calibration data are resampled: one choice vs bagged.

    python benchmarks/bench_calibration.py --ckpt CKPT --photos-root data/facial_expressions \\
        --photos-cache CACHE --synthetic-root outputs/simreal --max-per-expression 300 [--aus 4 6 9 10 12 15]

``benchmarks/calibrate.py`` chooses one offset per AU on the validation photos and the synthetic
validation frames. Here the same data are drawn again ``--outer`` times (bootstrap over persons and
sequences, as a different validation set of the same size would be), and on each draw the offsets
are chosen twice: once (``choose_offsets``) and bagged over ``--resamples`` inner resamples
(``bagged_offsets``, what ``calibrate.py`` does by default). Prints, per AU, the offset on all the
data and its standard deviation over the draws for either rule, and their means. Offsets are
relative to the checkpoint's own calibration; only the spread matters here.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from au_face.aus import au_label
from au_face.evaluation.calibration import bagged_offsets, choose_offsets, resample_groups
from au_face.model.refiner import load_refiner

sys.path.insert(0, str(Path(__file__).resolve().parent))
from calibrate import photo_source, synthetic_source


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", type=Path, required=True)
    parser.add_argument("--photos-root", type=Path, required=True)
    parser.add_argument("--photos-cache", type=Path, required=True)
    parser.add_argument("--synthetic-root", type=Path, required=True)
    parser.add_argument("--val-fraction", type=float, default=0.25)
    parser.add_argument("--max-per-expression", type=int, help="as calibrate.py's")
    parser.add_argument("--aus", type=int, nargs="+", help="as calibrate.py's (default: all)")
    parser.add_argument("--outer", type=int, default=20, help="draws of the calibration data")
    parser.add_argument("--resamples", type=int, default=100, help="inner resamples of the bagged rule")
    args = parser.parse_args(argv)

    refiner = load_refiner(args.ckpt)
    logits, labels, neutral, persons = photo_source(
        refiner, args.photos_root, args.photos_cache, args.val_fraction, args.max_per_expression
    )
    synthetic = synthetic_source(refiner, args.synthetic_root)
    chosen = np.ones(len(refiner.aus), dtype=bool) if args.aus is None else np.isin(refiner.aus, args.aus)

    def both_rules(photo_rows: np.ndarray, synthetic_rows: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        sources = [(logits[photo_rows], labels[photo_rows], persons[photo_rows])]
        sources.append(tuple(a[synthetic_rows] for a in synthetic))
        drawn_neutral = neutral[photo_rows]
        single = choose_offsets([(x, y) for x, y, _ in sources], sources[0][0][drawn_neutral], chosen=chosen)
        bagged = bagged_offsets(sources, drawn_neutral, args.resamples, seed, chosen=chosen)
        return single, bagged

    start = time.perf_counter()
    everything = both_rules(np.arange(len(logits)), np.arange(len(synthetic[0])), 0)
    rng = np.random.default_rng(1)
    draws = [
        both_rules(resample_groups(persons, rng), resample_groups(synthetic[2], rng), seed)
        for seed in range(1, args.outer + 1)
    ]
    spread = [np.std([d[i] for d in draws], axis=0) for i in (0, 1)]
    print(
        f"{len(logits)} photos ({int(neutral.sum())} neutral, {len(np.unique(persons))} persons), "
        f"{len(synthetic[0])} synthetic frames ({len(np.unique(synthetic[2]))} sequences); {args.outer} draws, "
        f"{args.resamples} inner resamples; {time.perf_counter() - start:.0f} s\n"
    )
    print("| AU | one choice: offset | sd over draws | bagged: offset | sd over draws |")
    print("|---|---|---|---|---|")
    for k in np.flatnonzero(chosen):
        print(
            f"| {au_label(refiner.aus[k])} | {everything[0][k]:+.2f} | {spread[0][k]:.2f} | "
            f"{everything[1][k]:+.2f} | {spread[1][k]:.2f} |"
        )
    single, bagged = (float(s[chosen].mean()) for s in spread)
    print(f"| mean | | {single:.3f} | | {bagged:.3f} (x{bagged / single:.2f}) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
