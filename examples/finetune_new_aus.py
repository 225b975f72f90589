"""Fine-tune a trained AU-aware model to your own videos labelled with a different AU list.

The trunk (AU tokenizer, spatial and temporal transformers, image encoder) and the geometry
(topology, expression basis, neutral estimator, masks of the AUs it knows) come from the
checkpoint — by default the packaged default model; the AU-specific head is re-initialised because
the AU list changes; ``--freeze`` keeps chosen parts fixed; labels that are unknown (-1 or empty)
are masked out of the loss.

    au-face preprocess data/my_videos --out data/my_videos_coarse --base data/my_videos
    python examples/finetune_new_aus.py [--ckpt outputs/bp4d_fold1/checkpoints/best.ckpt] \
        --videos data/my_videos --cache data/my_videos_coarse --aus AU01 AU02 AU05 AU25 \
        --freeze tokenizer spatial --out outputs/finetune_folder

It runs ``au-face fit`` with ``configs/finetune_folder.yaml`` and then prints, for one test video,
the AU probabilities the new head predicts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from au_face import default_checkpoint, load_refiner
from au_face.aus import au_label, resolve_aus
from au_face.cli import main as au_face_main
from au_face.data.datamodules.folder import FolderAUDataModule
from au_face.io.checkpoints import load_checkpoint

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "finetune_folder.yaml"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--ckpt", type=Path, default=None, help="checkpoint trained on another AU set (default: the packaged model)"
    )
    parser.add_argument("--videos", type=Path, required=True, help="videos, each with <name>.csv labels")
    parser.add_argument("--cache", type=Path, required=True, help="their coarse cache (au-face preprocess --out)")
    parser.add_argument("--aus", nargs="+", required=True, help="the new AU list, e.g. AU01 AU02 AU25")
    parser.add_argument("--freeze", nargs="*", default=["tokenizer", "spatial"], help="parts kept fixed")
    parser.add_argument("--split-file", type=Path, default=None, help="JSON train/val/test video names")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("outputs/finetune_folder"))
    parser.add_argument("--config", type=Path, default=CONFIG)
    args, extra = parser.parse_known_args(argv)  # the rest goes to au-face fit, e.g. --trainer.accelerator=cpu
    args.extra = extra
    if args.ckpt is None:
        args.ckpt = default_checkpoint()
        if args.ckpt is None:
            parser.error("--ckpt is needed: this installation has no packaged default model")
    return args


def finetune(args: argparse.Namespace) -> Path:
    """Run ``au-face fit`` with the checkpoint as geometry and starting point; return the last checkpoint."""
    aus = [au_label(a) for a in resolve_aus(args.aus)]
    if not args.ckpt.is_file():
        raise SystemExit(f"checkpoint not found: {args.ckpt}")
    source = load_checkpoint(args.ckpt)["hyper_parameters"]  # its architecture and S̄ mode
    overrides = [
        "fit", "--config", str(args.config), f"--run_dir={args.out}",
        f"--geometry.file={args.ckpt}", f"--geometry.aus=[{', '.join(aus)}]",
        f"--model.init_args.net={json.dumps(source['net'])}", f"--model.init_args.calibrated={source['calibrated']}",
        f"--model.init_args.freeze=[{', '.join(args.freeze)}]",
        f"--data.init_args.reference={source['reference']}",
        f"--data.init_args.video_dir={args.videos}", f"--data.init_args.cache_dir={args.cache}",
        f"--trainer.max_epochs={args.epochs}",
    ]  # fmt: skip
    if args.split_file is not None:
        overrides.append(f"--data.init_args.split_file={args.split_file}")
    code = au_face_main(overrides + list(args.extra))
    if code != 0:
        raise SystemExit(code)
    return args.out / "checkpoints" / "last.ckpt"


def show_predictions(ckpt: Path, args: argparse.Namespace) -> None:
    """AU probabilities of the fine-tuned head on the first test video."""
    task = load_refiner(ckpt)
    split_file = None if args.split_file is None else str(args.split_file)
    data = FolderAUDataModule(str(args.videos), str(args.cache), split_file=split_file, geometry=task.geometry)
    sequence = data.sequences("test")[0]
    coarse = data.cache.load(sequence.video)
    refinement = task.refine(coarse)
    print(f"{sequence.name}: {len(coarse)} frames, mean probability per AU")
    for k, au in enumerate(refinement.aus):
        print(f"  {au_label(au)}  {float(refinement.au_probs[:, k].mean()):.3f}")


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    ckpt = finetune(args)
    show_predictions(ckpt, args)
    return ckpt


if __name__ == "__main__":
    main(sys.argv[1:])
