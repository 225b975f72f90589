"""Calibrate a model's AU probabilities on validation photos and synthetic validation together.

    python benchmarks/calibrate.py --ckpt CKPT --out CALIBRATED.ckpt --photos-root data/facial_expressions \\
        --photos-cache CACHE --synthetic-root outputs/simreal

A calibrated model (``calibrated: true``) reads ``p = sigmoid(logit − log w)``, ``w`` the stored
per-AU offsets (at training: the BCE's positive weights). This script chooses one more offset per AU,
``b`` (occurrence: ``logit − log w ≥ b``), on the validation photos (weak labels from their
expressions, ``au_face.aus.weak_au_labels``; the reserved quarter is never read) and the synthetic
validation frames together:

- **bounds**: at most ``--max-neutral-rate`` (default 10 %) of the neutral validation photos may have
  the AU on (neutral photos are negatives of every AU), and at most ``--max-neutral-aus`` (0.4) AUs
  may be on per neutral photo on average;
- **objective**: the best mean F1 over the sources where the AU has positives (synthetic frames, and
  photos for the AUs the expressions label), each source's F1 counted once however large it is;
  ``au_face.evaluation.calibration.choose_offsets`` says how the bounds and the objective meet;
- **bagging**: each AU's offset is the median choice over ``--resamples`` (default 100) bootstrap
  resamples of persons (photos) and sequences (synthetic frames), then held to the bounds on all the
  data (``bagged_offsets``; ``--resamples 0``: the single choice). ``benchmarks/bench_calibration.py``
  measures how far either moves when the data are resampled.

``--lip-press-from-mesh`` labels the photos' AU24 as the training data's ``lip_press_from_mesh`` does
(absent where the photo's mesh shows the lips parted, ``au_face.data.lips.clear_lip_press``).

It then stores ``w·exp(b)``. Occurrence stays ``p >= 0.5`` on the calibrated output; the ranking of
scores (every AUC) does not change. Prints the offsets and each source's F1 and neutral on-rate before
and after, and writes the checkpoint with ``au_face.io.checkpoints.write_checkpoint``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from au_face.aus import au_label, parse_expression, weak_au_labels
from au_face.coarse.base import CoarseFrames
from au_face.coarse.registry import reconstructor_version
from au_face.data.cache import CoarseCache
from au_face.data.datamodules.photos import cap_per_expression, read_expression_csv, split_photos
from au_face.data.labels import read_folder_csv
from au_face.data.lips import clear_lip_press
from au_face.data.synthetic.config import INDEX_NAME
from au_face.evaluation.calibration import bagged_offsets, choose_offsets, f1_at
from au_face.io.checkpoints import load_checkpoint, write_checkpoint
from au_face.model.refiner import load_refiner

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_expressions import load_records


def logits_of(probs: np.ndarray) -> np.ndarray:
    p = np.clip(probs.astype(np.float64), 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def photo_source(
    refiner, root: Path, cache_dir: Path, val_fraction: float, cap: int | None, lip_press_from_mesh: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Logits, weak labels, a neutral flag and the person of the validation photos with a face (AU24
    absent where the lips are parted, with ``lip_press_from_mesh``)."""
    photos = cap_per_expression(
        split_photos(read_expression_csv(root / "data" / "legend.csv").photos, val_fraction)["val"], cap
    )
    cache = CoarseCache(cache_dir, "mediapipe", reconstructor_version("mediapipe"), root)
    records = load_records(cache, root, "images", photos, "appearance" in refiner.frame_inputs)
    logits, labels, neutral, persons = [], [], [], []
    for photo in photos:
        if photo.image not in records:
            continue
        probs = refiner.refine(records[photo.image]).au_probs[0].numpy()
        logits.append(logits_of(probs))
        weak = np.array([weak_au_labels(photo.expression, refiner.aus)], dtype=np.int8)
        if lip_press_from_mesh:
            vertices = records[photo.image].vertices.numpy()
            weak = clear_lip_press(weak, refiner.aus, vertices, refiner.geometry.topology.landmarks68)
        labels.append(weak[0])
        neutral.append(parse_expression(photo.expression) == "neutral")
        persons.append(photo.person)
    return np.stack(logits), np.array(labels), np.array(neutral), np.array(persons)


def synthetic_source(refiner, root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits, labels and the sequence of the synthetic validation frames with a face."""
    import json

    index = json.loads((root / INDEX_NAME).read_text())
    logits, labels, sequences = [], [], []
    for seq_id in index["splits"]["val"]:
        coarse = CoarseFrames.load(root / "coarse" / f"{seq_id}.npz")
        probs = refiner.refine(coarse).au_probs.numpy()
        track = read_folder_csv(root / "labels" / f"{seq_id}.csv", refiner.aus)
        keep = coarse.valid.numpy()
        logits.append(logits_of(probs[keep]))
        labels.append(track.labels[keep])
        sequences += [seq_id] * int(keep.sum())
    return np.concatenate(logits), np.concatenate(labels), np.array(sequences)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--photos-root", type=Path, required=True)
    parser.add_argument("--photos-cache", type=Path, required=True)
    parser.add_argument("--synthetic-root", type=Path, required=True)
    parser.add_argument("--val-fraction", type=float, default=0.25)
    parser.add_argument("--max-per-expression", type=int, help="at most this many validation photos of each expression")
    parser.add_argument(
        "--max-neutral-rate", type=float, default=0.10, help="bound on each AU's on-rate in neutral photos"
    )
    parser.add_argument("--max-neutral-aus", type=float, default=0.4, help="bound on AUs on per neutral photo")
    parser.add_argument("--max-offset", type=float, default=3.0, help="largest |offset| tried, in logits")
    parser.add_argument(
        "--aus", type=int, nargs="+", help="choose offsets for these AUs only; the others keep theirs (default: all)"
    )
    parser.add_argument("--resamples", type=int, default=100, help="bootstrap resamples bagged (0: one choice)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the resamples")
    parser.add_argument(
        "--lip-press-from-mesh", action="store_true", help="photos' AU24 absent where their mesh shows the lips parted"
    )
    args = parser.parse_args(argv)

    refiner = load_refiner(args.ckpt)
    if not refiner.calibrated:
        print(
            "error: the checkpoint is not calibrated (calibrated: true); its offsets are not applied", file=sys.stderr
        )
        return 2
    photo_logits, photo_labels, neutral, persons = photo_source(
        refiner,
        args.photos_root,
        args.photos_cache,
        args.val_fraction,
        args.max_per_expression,
        args.lip_press_from_mesh,
    )
    grouped = {
        "photos": (photo_logits, photo_labels, persons),
        "synthetic": synthetic_source(refiner, args.synthetic_root),
    }
    rule = dict(
        max_neutral_rate=args.max_neutral_rate,
        max_neutral_aus=args.max_neutral_aus,
        max_offset=args.max_offset,
        chosen=None if args.aus is None else np.isin(refiner.aus, args.aus),
    )
    sources = {name: (logits, labels) for name, (logits, labels, _) in grouped.items()}
    if args.resamples > 0:
        offsets = bagged_offsets(list(grouped.values()), neutral, args.resamples, args.seed, **rule)
    else:
        offsets = choose_offsets(list(sources.values()), photo_logits[neutral], **rule)
    for name, (logits, labels) in sources.items():
        before, after = (
            np.nanmean(f1_at(logits, labels, np.atleast_1d(b)[None])[0]) for b in (np.zeros_like(offsets), offsets)
        )
        print(f"{name}: {len(logits)} frames; mean F1 over AUs with positives {before:.3f} -> {after:.3f}")
    on_before, on_after = ((photo_logits[neutral] >= b).sum(1).mean() for b in (0.0, offsets))
    print(f"neutral photos ({int(neutral.sum())}): AUs on per face {on_before:.2f} -> {on_after:.2f}")
    print("offsets b (logit units): " + ", ".join(f"{au_label(a)} {b:+.2f}" for a, b in zip(refiner.aus, offsets)))
    ckpt = load_checkpoint(args.ckpt)
    key = "model.pos_weight"
    ckpt["state_dict"][key] = ckpt["state_dict"][key] * torch.exp(
        torch.as_tensor(offsets, dtype=ckpt["state_dict"][key].dtype)
    )
    write_checkpoint(ckpt, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
