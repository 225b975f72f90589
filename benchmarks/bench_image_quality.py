"""AU scores on the expression-labelled validation photos after changes to the images: blur, JPEG, light, noise, size, roll, mirror.

    python benchmarks/bench_image_quality.py --root data/facial_expressions [--ckpt NAME=PATH ...] \\
        [--landmarker-model face_landmarker.task] [--changes none blur ...] [--max-per-expression 300]

The validation photos of ``bench_expressions.py`` (contempt left out; the reserved quarter is never
read), each changed (:data:`CHANGES`) and then reconstructed afresh (no cache; the MediaPipe
reconstructor with appearance descriptors, each photo on its own). With ``--landmarker-model``, Face
Landmarker's blendshapes on the same changed photo (au_face's Face Landmarker reconstructor, IMAGE
mode) mapped to AUs as in ``bench_expressions.py`` stand beside. Only photos where every system finds a
face after the change are scored, so the count can differ per change. Per change and model: the AUC of
each AU of issue 15's table (:data:`bench_expressions.AUC_TABLE`) and the on-rates at ``p >= 0.5``
(AUs on per neutral face and the most frequent one, AU12 on happy faces, AU4 on angry faces).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

from au_face.aus import au_label
from au_face.coarse.base import CoarseFrames
from au_face.coarse.landmarker import FaceLandmarkerReconstructor
from au_face.coarse.mediapipe import MediaPipeReconstructor
from au_face.data.datamodules.photos import cap_per_expression, read_expression_csv, split_photos
from au_face.io.checkpoints import default_checkpoint
from au_face.model.refiner import load_refiner

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_expressions import AUC_TABLE, landmarker_scores, on_rates, roc_auc


def _jpeg(bgr: np.ndarray, quality: int) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


def _roll(bgr: np.ndarray, degrees: float) -> np.ndarray:
    h, w = bgr.shape[:2]
    turn = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(bgr, turn, (w, h), borderMode=cv2.BORDER_REPLICATE)


def _shrunk_and_enlarged(bgr: np.ndarray, scale: float) -> np.ndarray:
    small = cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return cv2.resize(small, bgr.shape[1::-1], interpolation=cv2.INTER_LINEAR)


def _noisy(bgr: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(bgr + rng.normal(0.0, sigma, bgr.shape), 0, 255).astype(np.uint8)


#: Name -> change of a BGR uint8 image (``rng`` for the random ones).
CHANGES: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "none": lambda bgr, rng: bgr,
    "blur": lambda bgr, rng: cv2.GaussianBlur(bgr, (0, 0), 2.0),
    "jpeg15": lambda bgr, rng: _jpeg(bgr, 15),
    "light": lambda bgr, rng: np.clip(255 * (bgr / 255.0) ** 0.6 * 0.7 + 60, 0, 255).astype(np.uint8),
    "noise": lambda bgr, rng: _noisy(bgr, 12.0, rng),
    "small": lambda bgr, rng: _shrunk_and_enlarged(bgr, 0.35),
    "roll20": lambda bgr, rng: _roll(bgr, 20.0),
    "mirror": lambda bgr, rng: np.ascontiguousarray(bgr[:, ::-1]),
}


def scores(
    change: str, photos: list, root: Path, refiners: dict, seed: int, landmarker_model: Path | None = None
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``{system: [N,K] scores}`` and the expressions of the photos where every system finds a face after
    ``change``: each model, and with ``landmarker_model`` Face Landmarker's blendshapes mapped to AUs."""
    rng = np.random.default_rng(seed)
    reconstructor = MediaPipeReconstructor(crop_size=0, appearance=True)
    landmarker = FaceLandmarkerReconstructor(landmarker_model, crop_size=0) if landmarker_model else None
    probs: dict[str, list[np.ndarray]] = {
        name: [] for name in [*refiners, *(["Face Landmarker"] if landmarker else [])]
    }
    expressions = []
    for photo in photos:
        bgr = cv2.imread(str(root / "images" / photo.image))
        if bgr is None:
            continue
        rgb = cv2.cvtColor(CHANGES[change](bgr, rng), cv2.COLOR_BGR2RGB)
        arrays = reconstructor.reconstruct_still(rgb, 30.0)
        blendshapes = landmarker.reconstruct_still(rgb, 30.0) if landmarker else None
        if not arrays["valid"][0] or (blendshapes is not None and not blendshapes["valid"][0]):
            continue
        record = CoarseFrames.from_numpy(arrays)
        with torch.no_grad():
            for name, refiner in refiners.items():
                probs[name].append(refiner.refine(record).au_probs[0].numpy())
        if blendshapes is not None:
            probs["Face Landmarker"].append(
                landmarker_scores(blendshapes["expression"], list(refiners.values())[0].aus)[0]
            )
        expressions.append(photo.expression)
    reconstructor.close()
    if landmarker:
        landmarker.close()
    return {name: np.stack(values) for name, values in probs.items()}, np.array(expressions)


def row(change: str, name: str, values: np.ndarray, expressions: np.ndarray, aus: list[int]) -> str:
    aucs = []
    for au, (positive, negative) in AUC_TABLE.items():
        column = values[:, aus.index(au)]
        aucs.append(f"{roc_auc(column[np.isin(expressions, positive)], column[np.isin(expressions, negative)]):.3f}")
    rates = on_rates(values, expressions, aus)
    most = next(iter(rates["neutral_false_aus"]), "none")
    cells = [
        f"{rates['neutral_mean_aus_on']:.2f} ({rates['neutral_max_au_rate']:.1%} {most})",
        f"{rates['AU12_on_happy']:.1%}",
        f"{rates['AU4_on_angry']:.1%}",
    ]
    return f"| {change} | {name} | {len(values)} | " + " | ".join(aucs + cells) + " |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="the facial_expressions clone")
    parser.add_argument("--ckpt", action="append", metavar="NAME=PATH", help="a model (repeatable; default: packaged)")
    parser.add_argument("--changes", nargs="+", choices=list(CHANGES), default=list(CHANGES))
    parser.add_argument(
        "--landmarker-model", type=Path, help="face_landmarker.task: add Face Landmarker's blendshapes mapped to AUs"
    )
    parser.add_argument("--max-per-expression", type=int, default=300)
    parser.add_argument("--val-fraction", type=float, default=0.25, help="as the DataModule's")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    specs = args.ckpt or [f"default={default_checkpoint()}"]
    refiners = {name or path: load_refiner(path) for name, _, path in (spec.rpartition("=") for spec in specs)}
    aus = next(iter(refiners.values())).aus
    table = read_expression_csv(args.root / "data" / "legend.csv")
    chosen = cap_per_expression(split_photos(table.photos, args.val_fraction)["val"], args.max_per_expression)
    photos = [p for p in chosen if p.expression != "contempt"]
    header = [au_label(au) for au in AUC_TABLE] + ["AUs on / neutral (most)", "AU12 on, happy", "AU4 on, angry"]
    print("| change | model | photos | " + " | ".join(header) + " |")
    print("|---|---|---|" + "---|" * len(header))
    for change in args.changes:
        probs, expressions = scores(change, photos, args.root, refiners, args.seed, args.landmarker_model)
        for name, values in probs.items():
            print(row(change, name, values, expressions, aus), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
