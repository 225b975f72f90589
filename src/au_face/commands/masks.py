"""``au-face masks``: build the AU vertex masks of a topology, draw them, optionally save them."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from au_face.aus import AU_NAMES, au_label, resolve_aus
from au_face.commands import path_arg
from au_face.faces.ict import has_ict_shapes, load_face_model
from au_face.faces.registry import TOPOLOGIES, load_topology
from au_face.geometry.masks import (
    DEFAULT_ICT_THRESHOLD,
    DEFAULT_RINGS,
    MASK_METHODS,
    MaskError,
    MaskMethod,
    build_masks,
    save_masks,
)
from au_face.utils.assets import ICT_MODEL


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``au-face masks``."""
    parser.add_argument("--topology", choices=TOPOLOGIES, default="ict", help="mesh topology (default: ict)")
    parser.add_argument("--aus", default="bp4d", help="AU set name (bp4d, disfa, affwild2) or list like 'AU1,AU2,12'")
    parser.add_argument("--out", type=path_arg, default=Path("masks.png"), help="figure to write (default: masks.png)")
    parser.add_argument(
        "--method",
        choices=("auto", *MASK_METHODS),
        default="auto",
        help="ict: from ICT-FaceKit shapes (ict topology only); landmarks: iBUG-68 anchored regions; "
        "transfer: ICT masks registered onto the topology; auto: ict on ict, transfer when an ICT "
        "model is available and every AU has ICT shapes, else landmarks",
    )
    parser.add_argument("--rings", type=int, default=DEFAULT_RINGS, help="graph rings of the boundary falloff")
    parser.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_ICT_THRESHOLD,
        help="ICT methods: relative displacement above which a vertex is active",
    )
    parser.add_argument("--npz", type=path_arg, default=None, help="also save the masks to this npz file")
    parser.add_argument("--ict", default=None, help=f"ICT-FaceKit npz or FaceXModel folder (or ${ICT_MODEL.env_var})")
    parser.add_argument("--flame", default=None, help="FLAME generic_model.pkl (for --topology flame)")
    parser.add_argument("--flame-landmarks", default=None, help="FLAME landmark_embedding.npy (for --topology flame)")


def _choose_method(args: argparse.Namespace, aus: list[int], have_ict: bool) -> MaskMethod:
    if args.method != "auto":
        return args.method
    mapped = all(has_ict_shapes(a) for a in aus)
    if have_ict and mapped:
        return "ict" if args.topology == "ict" else "transfer"
    return "landmarks"


def run(args: argparse.Namespace) -> int:
    """Build, draw and optionally save the masks; print one line per AU."""
    from au_face.viz.mask_figure import draw_masks  # matplotlib: only when drawing

    aus = resolve_aus(args.aus)
    ict_given = args.ict is not None or os.environ.get(ICT_MODEL.env_var) is not None
    needs_ict = args.topology == "ict" or args.method in ("ict", "transfer") or (args.method == "auto" and ict_given)
    ict_model = load_face_model(args.ict) if needs_ict else None
    if args.topology == "ict" and ict_model is not None:
        topology = ict_model.topology()  # what load_topology("ict") returns, without a second read
    else:
        topology = load_topology(args.topology, flame_path=args.flame, flame_landmarks_path=args.flame_landmarks)
    method = _choose_method(args, aus, ict_model is not None)
    if method == "ict" and args.topology != "ict":
        raise MaskError("--method ict works on the ict topology only; use transfer or landmarks")
    masks = build_masks(topology, aus, method, ict_model=ict_model, rings=args.rings, threshold=args.threshold)
    title = f"AU masks, {method} method, on {topology.name} ({topology.num_vertices} vertices)"
    draw_masks(topology, masks, aus, args.out, title=title)
    if args.npz is not None:
        save_masks(args.npz, masks, aus, topology.name)
    for au, mask in zip(aus, masks):
        print(
            f"{au_label(au)} {AU_NAMES[au]:<22} active {int((mask >= 1.0).sum()):>6}  "
            f"nonzero {int((mask > 0).sum()):>6}  sum {float(mask.sum()):9.1f}"
        )
    written = f"{args.out} and {args.npz}" if args.npz is not None else f"{args.out}"
    print(f"wrote {written}: {method} masks on {topology.name} ({topology.num_vertices} vertices)")
    return 0
