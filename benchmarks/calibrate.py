"""Calibrate a model's AU probabilities on validation photos and synthetic validation together.

    python benchmarks/calibrate.py --ckpt CKPT --out CALIBRATED.ckpt --photos-root data/facial_expressions \\
        --photos-cache CACHE --synthetic-root outputs/simreal

A calibrated model (``calibrated: true``) reads ``p = sigmoid(logit − log w)``, ``w`` the stored
per-AU offsets (at training: the BCE's positive weights). This script fits one more offset per AU,
``b``, that minimises the binary cross-entropy of ``sigmoid(logit − log w − b)`` over the known
labels of the validation photos (weak labels from their expressions, ``au_face.aus.weak_au_labels``;
the reserved quarter is never read) and the synthetic validation frames, the two sources weighted
equally; then stores ``w·exp(b)``. Occurrence stays ``p >= 0.5`` on the calibrated output. The
ranking of scores (every AUC) does not change. Prints the offsets and writes the checkpoint with
``au_face.models.export_checkpoint``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from au_face.aus import au_label, weak_au_labels
from au_face.coarse.base import CoarseFrames
from au_face.coarse.registry import reconstructor_version
from au_face.data.cache import CoarseCache
from au_face.data.datamodules.photos import cap_per_expression, read_expression_csv, split_photos
from au_face.data.labels import read_folder_csv
from au_face.data.synthetic.config import INDEX_NAME
from au_face.io.checkpoints import export_checkpoint, load_checkpoint
from au_face.model.refiner import load_refiner


def logits_of(probs: np.ndarray) -> np.ndarray:
    p = np.clip(probs.astype(np.float64), 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def fit_offsets(sources: list[tuple[np.ndarray, np.ndarray]], iterations: int = 50) -> np.ndarray:
    """Per-AU ``b`` minimising the mean (per source) BCE of ``sigmoid(logit − b)`` over known labels.

    ``sources``: ``(logits [N,K], labels [N,K] with −1 unknown)``; each source's loss is its mean
    over its known labels, so a large source does not drown a small one. Newton steps (convex in b).
    """
    k = sources[0][0].shape[1]
    b = np.zeros(k)
    for _ in range(iterations):
        grad, hess = np.zeros(k), np.zeros(k)
        for logits, labels in sources:
            known = labels >= 0
            n = np.maximum(known.sum(0), 1)
            p = 1 / (1 + np.exp(-(logits - b)))
            grad += (((labels == 1) - p) * known).sum(0) / n  # d/db of the BCE
            hess += (p * (1 - p) * known).sum(0) / n
        step = grad / np.maximum(hess, 1e-9)
        b -= step
        if np.abs(step).max() < 1e-6:
            break
    return b


def photo_source(
    refiner, root: Path, cache_dir: Path, val_fraction: float, cap: int | None
) -> tuple[np.ndarray, np.ndarray]:
    photos = cap_per_expression(
        split_photos(read_expression_csv(root / "data" / "legend.csv").photos, val_fraction)["val"], cap
    )
    cache = CoarseCache(cache_dir, "mediapipe", reconstructor_version("mediapipe"), root)
    manifest = cache.manifest()
    logits, labels = [], []
    for photo in photos:
        path = root / "images" / photo.image
        if not cache.has_face(path, manifest):
            continue
        probs = refiner.refine(CoarseFrames.load(cache.path(path))).au_probs[0].numpy()
        logits.append(logits_of(probs))
        labels.append(weak_au_labels(photo.expression, refiner.aus))
    return np.stack(logits), np.array(labels)


def synthetic_source(refiner, root: Path) -> tuple[np.ndarray, np.ndarray]:
    import json

    index = json.loads((root / INDEX_NAME).read_text())
    logits, labels = [], []
    for seq_id in index["splits"]["val"]:
        coarse = CoarseFrames.load(root / "coarse" / f"{seq_id}.npz")
        probs = refiner.refine(coarse).au_probs.numpy()
        track = read_folder_csv(root / "labels" / f"{seq_id}.csv", refiner.aus)
        keep = coarse.valid.numpy()
        logits.append(logits_of(probs[keep]))
        labels.append(track.labels[keep])
    return np.concatenate(logits), np.concatenate(labels)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--photos-root", type=Path, required=True)
    parser.add_argument("--photos-cache", type=Path, required=True)
    parser.add_argument("--synthetic-root", type=Path, required=True)
    parser.add_argument("--val-fraction", type=float, default=0.25)
    parser.add_argument("--max-per-expression", type=int, help="at most this many validation photos of each expression")
    args = parser.parse_args(argv)

    refiner = load_refiner(args.ckpt)
    if not refiner.calibrated:
        print(
            "error: the checkpoint is not calibrated (calibrated: true); its offsets are not applied", file=sys.stderr
        )
        return 2
    sources = [
        photo_source(refiner, args.photos_root, args.photos_cache, args.val_fraction, args.max_per_expression),
        synthetic_source(refiner, args.synthetic_root),
    ]
    offsets = fit_offsets(sources)
    for name, (logits, labels) in zip(("photos", "synthetic"), sources):
        known = labels >= 0
        before = ((logits >= 0) == (labels == 1))[known].mean()
        after = ((logits - offsets >= 0) == (labels == 1))[known].mean()
        print(f"{name}: {len(logits)} frames; accuracy of p >= 0.5 over known labels {before:.3f} -> {after:.3f}")
    print("offsets b (logit units): " + ", ".join(f"{au_label(a)} {b:+.2f}" for a, b in zip(refiner.aus, offsets)))
    ckpt = load_checkpoint(args.ckpt)
    key = "model.pos_weight"
    ckpt["state_dict"][key] = ckpt["state_dict"][key] * torch.exp(
        torch.as_tensor(offsets, dtype=ckpt["state_dict"][key].dtype)
    )
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "calibrated.ckpt"
        torch.save(ckpt, staged)
        export_checkpoint(staged, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
