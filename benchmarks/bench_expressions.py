"""AU scores against the AUs that real photos' expression labels imply (muxspace/facial_expressions).

    python benchmarks/bench_expressions.py --root data/facial_expressions --cache CACHE \\
        [--landmarker-model face_landmarker.task] [--ckpt NAME=PATH ...] [--split val|reserved] [--out results.json]

The photos are those of :class:`~au_face.data.datamodules.photos.ExpressionPhotoDataModule`'s
validation split (``--split val``, the default), or the reserved quarter (``--split reserved``:
measured apart, never used to choose anything), at most ``--max-per-expression`` of each expression
(the first in SHA-1 order of their names). Contempt is left out. For each system:

* per-AU ROC AUC with the positive and negative expressions of issue 15's table, and for AU5 and
  AU7 those where the weak labels say 1 and 0 (:data:`AUC_TABLE`), with stratified bootstrap 95 %
  intervals (positives and negatives resampled apart);
* on-rates at ``p >= 0.5``: AU12 on happy vs neutral faces and on the expressions that rule it out
  (:data:`NOT_SMILING`: a stretched or teeth-baring mouth read as a smile, as in crying), AU4 on
  angry vs neutral faces, the mean
  number of AUs on per neutral face, the share of neutral faces with none, and the AUs most often
  on in neutral faces;
* per expression, how often each AU that belongs to it (``au_face.aus.EXPRESSION_AUS``) is on in
  its photos: what a user reading one photo sees.

Systems: each ``--ckpt`` (default: the packaged model) through the public refiner
(:meth:`AUFaceRefiner.refine` on the photo's one-frame coarse record, S̄ fitted to it), the analytic
readout (``au_face.evaluation.baselines``, the first checkpoint's neutral fit; needs ``$AU_FACE_ICT``),
and, with ``--landmarker-model face_landmarker.task``, Face Landmarker's blendshapes (IMAGE mode, one
face per photo) mapped to AUs (:data:`LANDMARKER_AUS`). Only photos where every system found a face are scored.

**AU24 (Lip Pressor) by the lips' state** in the photo's mesh (``au_face.data.lips.lip_parting``): how
often each system has AU24 on where the lips are parted (≥ ``LIPS_PARTED``: pressed lips cannot be
apart, so every one is a false alarm), and where they are together (≤ ``LIPS_AT_REST``) in angry and
in neutral photos.

``--matrix`` adds, per system, every AU's on-rate in each expression's photos: an AU that is on
where its expression rules it out stands out there (AU24 beside AU25 in surprised faces, say).

``--by-yaw`` adds AU12 and AU6 by the head's |yaw| (the CSV's ``pose_Ry``): AUC, on-rate in happy
photos and in neutral ones, per system.

``--reference person`` scores the models as they run on video instead: S̄ is fitted over all the
photos of the photo's person (those where every system found a face) as a video's S̄ is fitted
over its frames (:meth:`AUFaceRefiner.reference`), and only the photos of persons with two or more such photos are scored; beside
each model, the same model on the same photos with S̄ fitted to each (the readout and Face
Landmarker on the same photos, as always).

``--reference still`` scores the models on each photo as a still video of it would be read: S̄ is
a video's (:meth:`AUFaceRefiner.reference`) over :data:`~au_face.model.reference.REFERENCE_WARMUP`
copies of the photo (a video's first fit), and the photo is refined as a window of ``clip_length``
copies (the middle frame's AUs); beside it, the same photos with S̄ fitted to each.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from au_face.aus import EXPRESSION_AUS, au_label
from au_face.coarse.base import CoarseFrames
from au_face.coarse.landmarker import BLENDSHAPE_NAMES
from au_face.coarse.registry import reconstructor_version
from au_face.data.appearance import with_appearance
from au_face.data.cache import CoarseCache
from au_face.data.datamodules.photos import Photo, cap_per_expression, read_expression_csv, split_photos
from au_face.data.lips import LIPS_AT_REST, LIPS_PARTED, lip_parting
from au_face.io.au_csv import HEAD_TO_CAMERA, euler_angles
from au_face.io.checkpoints import default_checkpoint
from au_face.model.reference import REFERENCE_WARMUP
from au_face.model.refiner import load_refiner

#: AU -> (positive expressions, negative expressions): issue 15's table, then AU5 and AU7.
AUC_TABLE: dict[int, tuple[tuple[str, ...], tuple[str, ...]]] = {
    12: (("happiness",), ("neutral", "sadness", "surprise", "fear", "anger", "disgust")),
    6: (("happiness",), ("neutral", "surprise")),
    4: (("anger", "sadness", "fear"), ("happiness", "neutral", "surprise")),
    1: (("surprise", "fear"), ("happiness", "neutral", "anger")),
    2: (("surprise",), ("happiness", "neutral", "anger")),
    26: (("surprise",), ("neutral",)),
    9: (("disgust",), ("neutral", "happiness")),
    10: (("disgust",), ("neutral", "happiness")),
    15: (("sadness",), ("neutral", "happiness")),
    # beyond issue 15's table: the eyelid AUs, each expression where the weak labels say 1 against those
    # where they say 0 (docs/aus.md)
    5: (("surprise", "fear"), ("neutral", "sadness", "disgust")),
    7: (("anger",), ("neutral", "surprise")),
}
#: Edges (degrees of |yaw|) of ``--by-yaw``'s bands.
YAW_BINS = (0, 5, 10, 15, 20, 25, 90)
#: AU -> Face Landmarker (ARKit) blendshapes whose mean is its score.
LANDMARKER_AUS: dict[int, tuple[str, ...]] = {
    1: ("browInnerUp",), 2: ("browOuterUpLeft", "browOuterUpRight"), 4: ("browDownLeft", "browDownRight"),
    5: ("eyeWideLeft", "eyeWideRight"), 6: ("cheekSquintLeft", "cheekSquintRight"), 7: ("eyeSquintLeft", "eyeSquintRight"),
    9: ("noseSneerLeft", "noseSneerRight"), 10: ("mouthUpperUpLeft", "mouthUpperUpRight"),
    12: ("mouthSmileLeft", "mouthSmileRight"), 14: ("mouthDimpleLeft", "mouthDimpleRight"),
    15: ("mouthFrownLeft", "mouthFrownRight"), 17: ("mouthShrugLower",), 18: ("mouthPucker",),
    20: ("mouthStretchLeft", "mouthStretchRight"), 23: ("mouthRollLower", "mouthRollUpper"),
    24: ("mouthPressLeft", "mouthPressRight"), 25: ("mouthLowerDownLeft", "mouthLowerDownRight"), 26: ("jawOpen",),
    45: ("eyeBlinkLeft", "eyeBlinkRight"),
}  # fmt: skip


def roc_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counting half (Mann-Whitney)."""
    scores = np.concatenate([positive, negative])
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # average ranks of ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts - 1) / 2.0 + 1
    ranks[order] = np.repeat(average, counts)
    n_pos, n_neg = len(positive), len(negative)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def bootstrap_auc(positive: np.ndarray, negative: np.ndarray, rounds: int, seed: int = 0) -> tuple[float, float, float]:
    """AUC and its stratified bootstrap 95 % interval."""
    rng = np.random.default_rng(seed)
    values = [
        roc_auc(
            positive[rng.integers(0, len(positive), len(positive))],
            negative[rng.integers(0, len(negative), len(negative))],
        )
        for _ in range(rounds)
    ]
    low, high = np.percentile(values, [2.5, 97.5])
    return roc_auc(positive, negative), float(low), float(high)


def landmarker_scores(blendshapes: np.ndarray, aus: list[int]) -> np.ndarray:
    """``[N,K]`` AU scores from Face Landmarker blendshapes ``[N,52]`` (NaN for AUs it has no shape for)."""
    index = {name: i for i, name in enumerate(BLENDSHAPE_NAMES)}
    out = np.full((len(blendshapes), len(aus)), np.nan, dtype=np.float32)
    for k, au in enumerate(aus):
        if au in LANDMARKER_AUS:
            out[:, k] = blendshapes[:, [index[n] for n in LANDMARKER_AUS[au]]].mean(1)
    return out


def landmarker_blendshapes(model: Path, images: dict[str, Path]) -> dict[str, np.ndarray]:
    """Face Landmarker's 52 blendshape scores per photo (IMAGE mode, one face; photos without a face left out)."""
    import cv2
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    options = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(model)),
        running_mode=vision.RunningMode.IMAGE,
        num_faces=1,
        output_face_blendshapes=True,
    )
    out = {}
    with vision.FaceLandmarker.create_from_options(options) as landmarker:
        for name, path in images.items():
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                continue
            result = landmarker.detect(
                mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(bgr[:, :, ::-1]))
            )
            if result.face_blendshapes:
                scores = np.zeros(len(BLENDSHAPE_NAMES), dtype=np.float32)
                for category in result.face_blendshapes[0]:
                    scores[category.index] = category.score
                out[name] = scores
    return out


def load_records(
    cache: CoarseCache, root: Path, image_dir: str, photos: list[Photo], appearance: bool = False
) -> dict[str, CoarseFrames]:
    """The cached one-frame records of the photos that have a face there; with ``appearance``, with their
    brow descriptors (what ``au-face reconstruct`` computes for a model with an appearance head)."""
    manifest = cache.manifest()
    out = {}
    for photo in photos:
        path = root / image_dir / photo.image
        if cache.has_face(path, manifest) and cache.is_current(path, manifest[cache.key(path)]):
            record = CoarseFrames.load(cache.path(path))
            if appearance:
                rgb = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
                record = with_appearance(record, [rgb])
            out[photo.image] = record
    return out


#: Expressions whose weak labels rule AU12 out and whose mouths are often stretched (``docs/aus.md``).
NOT_SMILING = ("sadness", "anger", "disgust", "fear")


def on_rates(probs: np.ndarray, expressions: np.ndarray, aus: list[int], threshold: float = 0.5) -> dict:
    """The on-rates at ``threshold`` (module docstring)."""
    on = probs >= threshold
    neutral = on[expressions == "neutral"]
    per_au = neutral.mean(0)
    k12, k4 = aus.index(12), aus.index(4)
    return {
        "AU12_on_happy": float(on[expressions == "happiness", k12].mean()),
        "AU12_on_neutral": float(neutral[:, k12].mean()),
        "AU12_on_not_smiling": float(on[np.isin(expressions, NOT_SMILING), k12].mean()),
        "AU4_on_angry": float(on[expressions == "anger", k4].mean()),
        "AU4_on_neutral": float(neutral[:, k4].mean()),
        "neutral_mean_aus_on": float(neutral.sum(1).mean()),
        "neutral_none_on": float((neutral.sum(1) == 0).mean()),
        "neutral_max_au_rate": float(per_au.max()),
        "neutral_false_aus": {
            au_label(aus[k]): round(float(per_au[k]), 3) for k in np.argsort(-per_au)[:5] if per_au[k] > 0
        },
        "expression_aus_on": {
            expression: {
                au_label(au): float(on[expressions == expression, aus.index(au)].mean())
                for au in sorted(own)
                if au in aus
            }
            for expression, (own, _) in EXPRESSION_AUS.items()
            if own and (expressions == expression).any()
        },
    }


def score_systems(
    args: argparse.Namespace, photos: list[Photo]
) -> tuple[dict[str, np.ndarray], list[int], np.ndarray, np.ndarray, np.ndarray]:
    """``{system: [N,K] scores}``, the AU list, the photos' expressions, their head yaw (|degrees|, the
    CSV's ``pose_Ry``) and their meshes' lip parting — the photos with a face for every system."""
    checkpoints = args.ckpt or [f"default={default_checkpoint()}"]
    refiners = {name or path: load_refiner(path) for name, _, path in (spec.rpartition("=") for spec in checkpoints)}
    appearance = any("appearance" in refiner.frame_inputs for refiner in refiners.values())
    cache = CoarseCache(args.cache, "mediapipe", reconstructor_version("mediapipe"), args.root)
    coarse = load_records(cache, args.root, args.image_dir, photos, appearance)
    blend = None
    if args.landmarker_model is not None:
        blend = landmarker_blendshapes(
            args.landmarker_model, {p.image: args.root / args.image_dir / p.image for p in photos if p.image in coarse}
        )
        coarse = {name: rec for name, rec in coarse.items() if name in blend}
    kept = [p for p in photos if p.image in coarse]
    print(f"{len(kept)} of {len(photos)} photos with a face for every system", file=sys.stderr)
    persons: dict[str, list[Photo]] = {}
    if args.reference == "person":
        persons = person_groups(kept)
        kept = [p for p in kept if p.person in persons]
        print(f"{len(kept)} of them by {len(persons)} persons with two or more", file=sys.stderr)
    scores: dict[str, np.ndarray] = {}
    for name, refiner in refiners.items():
        if args.reference == "still":
            scores[name] = np.stack([still_video_probs(refiner, coarse[p.image]) for p in kept])
            with torch.no_grad():
                scores[f"{name} (S̄ per photo)"] = np.stack(
                    [refiner.refine(coarse[p.image]).au_probs[0].numpy() for p in kept]
                )
            continue
        references = {
            person: refiner.reference(
                CoarseFrames.from_canonical(
                    torch.cat([coarse[p.image].vertices for p in group]).float(),
                    torch.cat([coarse[p.image].valid for p in group]),
                    1.0,
                    refiner.topology_name,
                )
            )
            for person, group in persons.items()
        }
        with torch.no_grad():
            scores[name] = np.stack(
                [refiner.refine(coarse[p.image], references.get(p.person)).au_probs[0].numpy() for p in kept]
            )
            if persons:  # the same photos with S̄ fitted to each, beside
                scores[f"{name} (S̄ per photo)"] = np.stack(
                    [refiner.refine(coarse[p.image]).au_probs[0].numpy() for p in kept]
                )
    first = next(iter(refiners.values()))
    aus = first.aus
    if not args.no_readout:
        from au_face.evaluation.baselines import analytic_readout
        from au_face.faces.ict import ICTFaceModel
        from au_face.geometry.basis import ict_expression_basis
        from au_face.geometry.neutral import fit_shape_indices
        from au_face.utils.assets import ICT_MODEL

        basis_names = ict_expression_basis(ICTFaceModel.load(ICT_MODEL.resolve(None)).restrict("narrow"))[1]
        shape_names = [basis_names[i] for i in fit_shape_indices(basis_names)]
        scores["analytic readout"] = np.stack(
            [
                analytic_readout(
                    first.neutral, coarse[p.image].vertices.float(), coarse[p.image].valid, aus, shape_names
                )[0].numpy()
                for p in kept
            ]
        )
    if blend is not None:
        scores["Face Landmarker"] = landmarker_scores(np.stack([blend[p.image] for p in kept]), aus)
    yaw = np.array(
        [abs(math.degrees(euler_angles(coarse[p.image].rotation[:1].numpy() @ HEAD_TO_CAMERA)[0, 1])) for p in kept]
    )
    landmarks68 = first.geometry.topology.landmarks68
    parting = np.array([float(lip_parting(coarse[p.image].vertices.numpy(), landmarks68)[0]) for p in kept])
    return scores, aus, np.array([p.expression for p in kept]), yaw, parting


def on_rate_matrix(probs: np.ndarray, aus: list[int], expressions: np.ndarray, threshold: float = 0.5) -> str:
    """Markdown table of each AU's on-rate (``p >= threshold``) in each expression's photos."""
    lines = ["| expression (photos) | " + " | ".join(au_label(au) for au in aus) + " |", "|---|" + "---|" * len(aus)]
    for expression in sorted(set(expressions)):
        on = probs[expressions == expression] >= threshold
        cells = " | ".join(f"{rate:.0%}" for rate in on.mean(axis=0))
        lines.append(f"| {expression} ({len(on)}) | {cells} |")
    return "\n".join(lines)


def lip_press_table(scores: dict[str, np.ndarray], aus: list[int], expressions: np.ndarray, parting: np.ndarray) -> str:
    """AU24 on-rates (p ≥ 0.5) by the lips' state in the mesh (module docstring)."""
    parted, closed = parting >= LIPS_PARTED, parting <= LIPS_AT_REST
    groups = {
        "lips parted": parted,
        "lips together, angry": closed & (expressions == "anger"),
        "lips together, neutral": closed & (expressions == "neutral"),
    }
    lines = [
        "| system | " + " | ".join(f"{name} ({int(mask.sum())})" for name, mask in groups.items()) + " |",
        "|---|" + "---|" * len(groups),
    ]
    k = aus.index(24)
    for name, values in scores.items():
        on = values[:, k] >= 0.5
        lines.append(f"| {name} | " + " | ".join(f"{on[mask].mean():.0%}" for mask in groups.values()) + " |")
    return "\n".join(lines)


def yaw_table(scores: dict[str, np.ndarray], aus: list[int], expressions: np.ndarray, yaw: np.ndarray) -> str:
    """AU12 and AU6 by |yaw| (:data:`YAW_BINS`): each system's AUC with issue 15's sets, and how often
    the AU is on (p ≥ 0.5) in the happy photos and in the neutral ones."""
    lines = [
        "| AU | \\|yaw\\| | happy photos | system | AUC | on, happy | on, neutral |",
        "|---|---|---|---|---|---|---|",
    ]
    for au in (12, 6):
        if au not in aus:
            continue
        k, (positive, negative) = aus.index(au), AUC_TABLE[au]
        for low, high in zip(YAW_BINS[:-1], YAW_BINS[1:]):
            band = (yaw >= low) & (yaw < high)
            pos, neg = band & np.isin(expressions, positive), band & np.isin(expressions, negative)
            neutral = band & (expressions == "neutral")
            for name, values in scores.items():
                x = values[:, k]
                lines.append(
                    f"| {au_label(au)} | {low}–{high}° | {int(pos.sum())} | {name} | {roc_auc(x[pos], x[neg]):.3f} | "
                    f"{np.mean(x[pos] >= 0.5):.0%} | {np.mean(x[neutral] >= 0.5):.1%} |"
                )
    return "\n".join(lines)


def repeated(photo: CoarseFrames, count: int) -> CoarseFrames:
    """``count`` copies of a one-frame record: a still video of the photo."""
    arrays = photo.to_numpy()
    frames = {k: np.repeat(v, count, axis=0) for k, v in arrays.items() if k not in ("fps", "topology")}
    frames["timestamps"] = np.arange(count, dtype=np.float64) / photo.fps
    return CoarseFrames.from_numpy({**frames, "fps": arrays["fps"], "topology": arrays["topology"]})


@torch.no_grad()
def still_video_probs(refiner, photo: CoarseFrames) -> np.ndarray:
    """``[K]`` AU probabilities of a photo read as a still video of it (module docstring)."""
    copies = repeated(photo, REFERENCE_WARMUP)
    reference = refiner.reference(copies)
    window = refiner.clip_length
    return refiner.refine(repeated(photo, window), reference).au_probs[window // 2].numpy()


def person_groups(photos: list[Photo]) -> dict[str, list[Photo]]:
    """The photos of each person with two or more of ``photos``."""
    groups: dict[str, list[Photo]] = {}
    for photo in photos:
        groups.setdefault(photo.person, []).append(photo)
    return {person: group for person, group in groups.items() if len(group) >= 2}


def auc_table(scores: dict[str, np.ndarray], aus: list[int], expressions: np.ndarray, rounds: int) -> dict:
    """``{system: {AUxx: {auc, low, high, varies}}}`` plus the counts per AU."""
    table: dict = {"counts": {}}
    for au, (pos, neg) in AUC_TABLE.items():
        k = aus.index(au)
        is_pos, is_neg = np.isin(expressions, pos), np.isin(expressions, neg)
        table["counts"][au_label(au)] = [int(is_pos.sum()), int(is_neg.sum())]
        for system, values in scores.items():
            column = values[:, k]
            if np.isnan(column).all() or not is_pos.any() or not is_neg.any():
                continue
            auc, low, high = bootstrap_auc(column[is_pos], column[is_neg], rounds)
            varies = float(np.std(column[is_pos | is_neg])) > 1e-3
            table.setdefault(system, {})[au_label(au)] = {"auc": auc, "low": low, "high": high, "varies": varies}
    return table


def markdown(table: dict, rates: dict[str, dict], split: str) -> str:
    systems = [s for s in table if s != "counts"]
    lines = [f"AUC on the {split} photos (95 % bootstrap interval)", "",
             "| AU | positives / negatives | " + " | ".join(systems) + " |", "|---|---|" + "---|" * len(systems)]  # fmt: skip
    for au, (pos, neg) in AUC_TABLE.items():
        label = au_label(au)
        n_pos, n_neg = table["counts"][label]
        cells = []
        for s in systems:
            cell = table[s].get(label)
            cells.append(
                "–"
                if cell is None
                else f"{cell['auc']:.3f} [{cell['low']:.2f}, {cell['high']:.2f}]"
                + ("" if cell["varies"] else " (constant)")
            )
        lines.append(
            f"| {label} | {', '.join(pos)} ({n_pos}) / {', '.join(neg)} ({n_neg}) | " + " | ".join(cells) + " |"
        )
    lines += ["", "On-rates at p >= 0.5", "", "| system | AU12 happy | AU12 neutral | AU12 sad, angry, disgusted, afraid | AU4 angry | AU4 neutral | AUs on per neutral face | neutral with none | most frequent AU on neutral | AUs most often on in neutral faces |",
              "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for s, r in rates.items():
        false = ", ".join(f"{k} {v:.0%}" for k, v in r["neutral_false_aus"].items())
        lines.append(
            f"| {s} | {r['AU12_on_happy']:.1%} | {r['AU12_on_neutral']:.1%} | {r['AU12_on_not_smiling']:.1%} | "
            f"{r['AU4_on_angry']:.1%} | {r['AU4_on_neutral']:.1%} | "
            f"{r['neutral_mean_aus_on']:.2f} | {r['neutral_none_on']:.1%} | {r['neutral_max_au_rate']:.1%} | {false} |"
        )
    shown = list(next(iter(rates.values()))["expression_aus_on"]) if rates else []
    lines += ["", "Each expression's own AUs on (p >= 0.5) in its photos", "",
              "| system | " + " | ".join(shown) + " |", "|---|" + "---|" * len(shown)]  # fmt: skip
    for s, r in rates.items():
        cells = [", ".join(f"{au} {v:.0%}" for au, v in row.items()) for row in r["expression_aus_on"].values()]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="the facial_expressions clone")
    parser.add_argument("--cache", type=Path, required=True, help="coarse cache (mediapipe) of its photos")
    parser.add_argument(
        "--landmarker-model", type=Path, help="face_landmarker.task: add Face Landmarker's blendshapes mapped to AUs"
    )
    parser.add_argument("--csv", default="data/legend.csv")
    parser.add_argument("--image-dir", default="images")
    parser.add_argument(
        "--val-fraction", type=float, default=0.25, help="as the DataModule's (configs/data/simreal_photos.yaml)"
    )
    parser.add_argument("--split", choices=("val", "reserved"), default="val")
    parser.add_argument(
        "--max-per-expression", type=int, help="at most this many photos of each expression (cap_per_expression)"
    )
    parser.add_argument(
        "--ckpt",
        action="append",
        metavar="NAME=PATH",
        help="a model to score (repeatable; default: the packaged model)",
    )
    parser.add_argument(
        "--no-readout", action="store_true", help="leave out the analytic readout (it needs $AU_FACE_ICT)"
    )
    parser.add_argument(
        "--reference",
        choices=("photo", "person", "still"),
        default="photo",
        help="S̄ of a model: fitted to each photo, over all photos of its person (as in video), or as a still "
        "video of the photo gets it",
    )
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap rounds")
    parser.add_argument("--matrix", action="store_true", help="also every AU's on-rate in each expression's photos")
    parser.add_argument("--by-yaw", action="store_true", help="also AU12 and AU6 by |head yaw| (turned heads)")
    parser.add_argument("--out", type=Path, help="also write the numbers as JSON")
    args = parser.parse_args(argv)

    table_csv = read_expression_csv(args.root / args.csv)
    chosen = cap_per_expression(split_photos(table_csv.photos, args.val_fraction)[args.split], args.max_per_expression)
    photos = [p for p in chosen if p.expression != "contempt"]
    scores, aus, expressions, yaw, parting = score_systems(args, photos)
    table = auc_table(scores, aus, expressions, args.bootstrap)
    rates = {s: on_rates(v, expressions, aus) for s, v in scores.items() if not np.isnan(v).all(1).any()}
    where = {
        "photo": args.split,
        "person": f"{args.split} (S̄ over each person's photos)",
        "still": f"{args.split} (each photo as a still video)",
    }[args.reference]
    print(markdown(table, rates, where))
    if 24 in aus:
        print("\n### AU24 (Lip Pressor) on, by the lips in the mesh\n")
        print(lip_press_table(scores, aus, expressions, parting))
    if args.matrix:
        for name, values in scores.items():
            print(f"\n### {name}: AUs on (p >= 0.5) in each expression's photos\n")
            print(on_rate_matrix(values, aus, expressions))
    if args.by_yaw:
        print("\n### AU12 and AU6 by head yaw\n")
        print(yaw_table(scores, aus, expressions, yaw))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        counts = {e: int((expressions == e).sum()) for e in np.unique(expressions)}
        args.out.write_text(
            json.dumps(
                {"split": args.split, "reference": args.reference, "photos": counts, "auc": table, "on_rates": rates},
                indent=1,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
