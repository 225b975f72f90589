"""Fit a model's appearance head on the training photos: appearance descriptors read out per AU, on top of the mesh.

    python benchmarks/fit_appearance.py --ckpt CKPT --out WITH_HEAD.ckpt --photos-root data/facial_expressions \\
        --photos-cache CACHE [--aus 1 2 4 5 6 7 9 10 12 15] [--add] [--max-per-expression 2000]

For the training photos of the expression collection (``split_photos``' train split, at most
``--max-per-expression`` of each expression as the DataModule takes them; the validation photos and
the reserved quarter are never read), each photo's appearance descriptor, from the image and the
cached mesh, is standardised, and per AU of ``--aus`` an L2-regularised logistic regression on the
part of the descriptor from the AU's region (``au_face.faces.appearance.region_of``: the brow patch
for AU1/2/4, its eye rows for AU5/7 (``au_columns``), the mouth patch for AU6/9/10/12/15), over the
photos that have that part (none for a small face or a patch at the image's edge) and within the
part's limit (below), is fitted to the photo's weak label (``au_face.aus.weak_au_labels``; unknown
labels left out), with the frozen model's own logit as a fixed offset, positives and negatives
weighted equally. The L2 strength is chosen by 5-fold cross-validation over persons on the training
photos (AUC). Each part's limit is the 99th percentile, over the training photos with that part, of
the root mean square of its standardised entries: a part above it (a hand over the mouth, a patch
unlike any training face) is left out of the fit and, in the head, counts as absent. The head keeps
the weights only: its offsets average zero over the photos, so the model's calibration still applies; run ``benchmarks/calibrate.py`` on the result all the same, since
the head changes which photos cross the threshold.

``--add`` extends the head ``--ckpt`` already has: only the AUs of ``--aus`` are fitted, on its stored
standardisation and part limits (the same photos give the same ones), and every other AU keeps its
weights. The model's logits are then its network's alone, as for a fresh head.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np
import torch

from au_face.aus import au_label, weak_au_labels
from au_face.coarse.registry import reconstructor_version
from au_face.data.cache import CoarseCache
from au_face.data.datamodules.photos import Photo, cap_per_expression, read_expression_csv, split_photos
from au_face.faces.appearance import EYELID_AUS, REGIONS, au_columns, region_of, region_part
from au_face.io.checkpoints import load_checkpoint, write_checkpoint
from au_face.model.refiner import load_refiner

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_expressions import load_records, roc_auc

#: L2 strengths tried (on the standardised descriptor, per photo).
L2_GRID = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0)
FOLDS = 5
#: A part whose standardised entries' root mean square is above this quantile of the training photos'
#: is unlike them (a hand over the mouth, say): the head leaves it out, and so does the fit.
USUAL_QUANTILE = 0.99


def photo_inputs(refiner, root: Path, cache_dir: Path, photos: list[Photo]) -> tuple[np.ndarray, np.ndarray, list]:
    """Appearance descriptors ``[N,D]`` (NaN where a part is absent) of the photos with a face and a
    descriptor part, the mesh model's logits ``[N,K]`` (any appearance head the model has left out) and
    those photos."""
    cache = CoarseCache(cache_dir, "mediapipe", reconstructor_version("mediapipe"), root)
    records = load_records(cache, root, "images", photos, appearance=True)
    refiner.appearance = None
    # photos whose face is too small or too close to the image's edge have no descriptor: left out
    kept = [photo for photo in photos if photo.image in records and records[photo.image].appearance.isfinite().any()]
    with torch.no_grad():
        probs = [refiner.refine(records[photo.image]).au_probs[0].double().clamp(1e-7, 1 - 1e-7) for photo in kept]
    descriptors = np.stack([records[photo.image].appearance[0].numpy() for photo in kept])
    return descriptors, torch.logit(torch.stack(probs)).numpy(), kept


def fit_weights(x: torch.Tensor, offset: torch.Tensor, y: torch.Tensor, l2: float) -> torch.Tensor:
    """Weights ``w`` of ``logit = offset + x·w + c`` (balanced BCE, ``l2·|w|²``); the intercept ``c`` is dropped."""
    w = torch.zeros(x.shape[1], dtype=x.dtype, requires_grad=True)
    c = torch.zeros(1, dtype=x.dtype, requires_grad=True)
    balance = (1 - y).sum() / y.sum().clamp_min(1)
    optimiser = torch.optim.LBFGS([w, c], max_iter=300, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(offset + x @ w + c, y, pos_weight=balance)
        loss = loss + l2 * (w * w).sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    return w.detach()


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    return roc_auc(scores[labels == 1], scores[labels == 0])


def part_limits(standard: np.ndarray, stored: list[float] | None = None) -> tuple[dict, dict]:
    """Each region's limit on its part's root-mean-square standardised value (:data:`USUAL_QUANTILE` of
    the photos that have the part; ``stored``: a fitted head's limits, in :data:`REGIONS` order), and
    which photos have the part within it."""
    limits, usual = {}, {}
    for i, region in enumerate(REGIONS):
        part = standard[:, region_part(region)]
        present = np.isfinite(part).all(axis=1)
        rms = np.sqrt(np.square(np.where(present[:, None], part, 0.0)).mean(axis=1))
        limits[region] = stored[i] if stored is not None else float(np.quantile(rms[present], USUAL_QUANTILE))
        usual[region] = present & (rms <= limits[region])
        print(f"{region.name} part: {int(present.sum())} photos, limit {limits[region]:.3f}")
    return limits, usual


def person_fold(person: str) -> int:
    return int(hashlib.sha1(person.encode()).hexdigest(), 16) % FOLDS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--photos-root", type=Path, required=True)
    parser.add_argument("--photos-cache", type=Path, required=True)
    parser.add_argument(
        "--aus", type=int, nargs="+", default=[1, 2, 4, 5, 6, 7, 9, 10, 12, 15], help="AUs the head reads out"
    )
    parser.add_argument("--val-fraction", type=float, default=0.25, help="as the DataModule's")
    parser.add_argument("--max-per-expression", type=int, default=2000, help="as the DataModule's training cap")
    parser.add_argument(
        "--add", action="store_true", help="fit only --aus into the head CKPT has; its other AUs keep their weights"
    )
    args = parser.parse_args(argv)

    refiner = load_refiner(args.ckpt)
    head = refiner.appearance
    if args.add and (head is None or not head.parts):
        print(f"error: --add extends an appearance head with part limits, and {args.ckpt} has none", file=sys.stderr)
        return 2
    unknown = sorted(set(args.aus) - set(refiner.aus))
    if unknown:
        print(f"error: the model has no AU {unknown}; its AUs are {refiner.aus}", file=sys.stderr)
        return 2
    regions = {au: region for au in args.aus if (region := region_of(au)) is not None}
    unseen = [au for au in args.aus if au not in regions]
    if unseen:
        shown = "; ".join(f"{region.name}: {list(region.aus)}" for region in REGIONS)
        print(f"error: no region of the descriptor shows AU {unseen} ({shown})", file=sys.stderr)
        return 2
    table = read_expression_csv(args.photos_root / "data" / "legend.csv")
    photos = cap_per_expression(split_photos(table.photos, args.val_fraction)["train"], args.max_per_expression)
    descriptors, logits, kept = photo_inputs(refiner, args.photos_root, args.photos_cache, photos)
    if args.add:
        mean, scale = head.mean.double().numpy(), head.scale.double().numpy()
    else:
        with np.errstate(invalid="ignore"):
            mean, scale = np.nanmean(descriptors, axis=0), np.nanstd(descriptors, axis=0) + 1e-3
    standard = (descriptors - mean) / scale
    limits, usual = part_limits(standard, head.part_limits.tolist() if args.add else None)
    labels = np.array([weak_au_labels(p.expression, refiner.aus) for p in kept])
    folds = np.array([person_fold(p.person) for p in kept])
    print(f"{len(kept)} training photos with a face and a descriptor, descriptor length {descriptors.shape[1]}")
    weight = head.weight.numpy().copy() if args.add else np.zeros((len(refiner.aus), descriptors.shape[1]), np.float32)
    for au in args.aus:
        k, part = refiner.aus.index(au), au_columns(au)
        known = (labels[:, k] >= 0) & usual[regions[au]]
        xs = torch.from_numpy(standard[known][:, part]).double()
        ys, offsets = torch.from_numpy(labels[known, k]).double(), torch.from_numpy(logits[known, k])
        scores = {}
        for l2 in L2_GRID:
            held = np.zeros(int(known.sum()))
            for fold in range(FOLDS):
                test = folds[known] == fold
                w = fit_weights(xs[~test], offsets[~test], ys[~test], l2)
                held[test] = (offsets[test] + xs[test] @ w).numpy()
            scores[l2] = auc(held, ys.numpy())
        l2 = max(scores, key=scores.get)
        weight[k, part] = fit_weights(xs, offsets, ys, l2).float().numpy()
        alone = auc(offsets.numpy(), ys.numpy())
        cv = ", ".join(f"{v}: {a:.3f}" for v, a in scores.items())
        print(
            f"{au_label(au)} ({regions[au].name} patch{', its eye rows' if au in EYELID_AUS else ''}): "
            f"{int(ys.sum())} positives, {int((1 - ys).sum())} "
            f"negatives; model alone AUC {alone:.3f};"
        )
        print(f"   with the head, cross-validated AUC by L2 strength {cv}; chosen {l2}")
    ckpt = load_checkpoint(args.ckpt)
    prefix = "model.appearance."
    ckpt["state_dict"].update(
        {
            f"{prefix}mean": torch.from_numpy(np.nan_to_num(mean).astype(np.float32)),
            f"{prefix}scale": torch.from_numpy(np.nan_to_num(scale, nan=1.0).astype(np.float32)),
            f"{prefix}weight": torch.from_numpy(weight),
            f"{prefix}part_bounds": torch.tensor([[p.start, p.stop] for p in map(region_part, REGIONS)]),
            f"{prefix}part_limits": torch.tensor([limits[region] for region in REGIONS], dtype=torch.float32),
        }
    )
    write_checkpoint(ckpt, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
