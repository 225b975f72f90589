"""``au-face geometry``: build a face geometry (topology, AUs, masks, expression basis, neutral
estimator) once and save it as a content-hashed ``.npz`` that configs give to model and data."""

from __future__ import annotations

import argparse

from au_face.commands import path_arg
from au_face.faces.registry import TOPOLOGIES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``au-face geometry`` (the fields of :class:`au_face.geometry.GeometrySpec`)."""
    parser.add_argument("--out", type=path_arg, required=True, help="the .npz to write")
    parser.add_argument("--topology", choices=TOPOLOGIES, default="mediapipe", help="mesh topology (default mediapipe)")
    parser.add_argument(
        "--aus", default="default", help="AU set (default, bp4d, disfa, affwild2) or list like 'AU1,AU2,12'"
    )
    parser.add_argument(
        "--masks", choices=("auto", "ict", "transfer", "landmarks"), default="auto", help="how the AU masks are made"
    )
    parser.add_argument("--mask-rings", type=int, default=3, help="boundary width of the masks (mesh rings)")
    parser.add_argument("--basis", choices=("auto", "ict", "flame", "pca"), default="auto", help="expression basis")
    parser.add_argument("--expression-dim", type=int, default=32, help="size of a PCA or FLAME basis")
    parser.add_argument("--pca-meshes", help="coarse cache of training videos the PCA basis is fitted to")
    parser.add_argument("--no-neutral", action="store_true", help="leave out the ICT neutral-shape estimator")
    parser.add_argument("--ict", help="ICT-FaceKit npz or FaceXModel folder (default $AU_FACE_ICT)")
    parser.add_argument("--flame", help="FLAME generic_model.pkl (default $AU_FACE_FLAME)")
    parser.add_argument("--flame-landmarks", help="FLAME landmark_embedding.npy (default $AU_FACE_FLAME_LANDMARKS)")


def run(args: argparse.Namespace) -> int:
    """Build, save atomically, print the file, its contents and its hash."""
    from au_face.geometry import GeometrySpec, build

    aus = args.aus if "," not in args.aus else [a.strip() for a in args.aus.split(",") if a.strip()]
    spec = GeometrySpec(
        topology=args.topology, aus=aus, masks=args.masks, mask_rings=args.mask_rings, basis=args.basis,
        expression_dim=args.expression_dim, pca_meshes=args.pca_meshes, neutral=not args.no_neutral,
        ict_path=args.ict, flame_path=args.flame, flame_landmarks_path=args.flame_landmarks,
    )  # fmt: skip
    geometry = build(spec)
    geometry.save(args.out)
    print(f"{args.out}: {geometry.describe()}")
    print(f"use it with --geometry.file {args.out}")
    return 0
