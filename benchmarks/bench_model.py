"""Model throughput: clips per second of a trained refiner (the packaged default model unless
``--ckpt``) on the CPU and, where there is one, a CUDA GPU.

A clip is one inference window (the checkpoint's ``clip_length`` frames, with its S̄); ``au-face
reconstruct`` steps windows by half their length, so frames/s = clips/s x clip_length / 2. The
clips are real coarse meshes: the windows of ``--meshes`` (an npz with ``vertices [T,V,3]`` and
optional ``valid [T]``, such as a coarse-cache file or the ``npz`` mesh output of ``au-face
reconstruct``), else the shared clip tracked with MediaPipe. On CUDA it also runs bf16 autocast and
prints how far its AU probabilities are from fp32 (the library runs fp32; bf16 is not used).

    python benchmarks/bench_model.py                     # CPU (and CUDA when available)
    python benchmarks/bench_model.py --meshes coarse.npz --device cuda --batch 1 64 1024
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

import numpy as np
import torch

from au_face import load_refiner
from au_face.coarse.base import CoarseFrames
from au_face.model.refiner import AUFaceRefiner

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CKPT = REPO / "src" / "au_face" / "resources" / "models" / "default.ckpt"
SHARED_CLIP = REPO.parent / "shared" / "data" / "video" / "WolfgangLanger_Pexels.mp4"


def load_meshes(path: Path | None, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Canonical vertices ``[T,V,3]`` and validity ``[T]`` from ``path``, else from the shared clip."""
    if path is not None:
        with np.load(path) as data:
            vertices = np.asarray(data["vertices"], dtype=np.float32)
            valid = np.asarray(data["valid"], dtype=bool) if "valid" in data.files else np.ones(len(vertices), bool)
        return vertices, valid
    if not SHARED_CLIP.is_file():
        raise SystemExit(f"no --meshes given and the shared clip is missing: {SHARED_CLIP}")
    from au_face.coarse.registry import build_reconstructor
    from au_face.coarse.stream import reconstruct_video_arrays

    chunks = list(reconstruct_video_arrays(SHARED_CLIP, build_reconstructor("mediapipe"), max_frames=frames))
    vertices = np.concatenate([c["vertices"] for c in chunks]).astype(np.float32)
    return vertices, np.concatenate([c["valid"] for c in chunks]).astype(bool)


def make_batch(model: AUFaceRefiner, vertices: np.ndarray, valid: np.ndarray, size: int) -> dict[str, torch.Tensor]:
    """``size`` windows of ``clip_length`` frames cycling over the sequence, each with the sequence's S̄."""
    length = model.clip_length
    coarse = CoarseFrames.from_canonical(torch.from_numpy(vertices), torch.from_numpy(valid), 25.0, model.topology_name)
    reference = model.reference(coarse)
    starts = [(i * length // 2) % max(len(coarse) - length + 1, 1) for i in range(size)]
    return model._batch([coarse.slice(s, s + length) for s in starts], [reference] * size, length)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_forward(model: AUFaceRefiner, batch: dict[str, torch.Tensor], bf16: bool, seconds: float) -> float:
    """Seconds per forward pass (after warm-up), timed over at least ``seconds``."""
    device = batch["vertices"].device
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with torch.inference_mode(), autocast:
        for _ in range(3):
            model(batch)
        synchronize(device)
        runs, start = 0, time.perf_counter()
        while runs < 3 or time.perf_counter() - start < seconds:
            model(batch)
            runs += 1
            synchronize(device)
        return (time.perf_counter() - start) / runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", type=Path, default=DEFAULT_CKPT)
    parser.add_argument("--meshes", type=Path, help="npz with vertices [T,V,3] (default: the shared clip)")
    parser.add_argument("--frames", type=int, default=96, help="frames of the shared clip to track")
    parser.add_argument("--device", nargs="+", default=None, help="cpu and/or cuda (default: both where present)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 16, 128])
    parser.add_argument("--seconds", type=float, default=2.0, help="time each setting for at least this long")
    args = parser.parse_args()

    devices = args.device or ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
    vertices, valid = load_meshes(args.meshes, args.frames)
    base = load_refiner(args.ckpt)
    print(f"checkpoint {args.ckpt}; clip_length {base.clip_length}; meshes {vertices.shape} ({valid.sum()} valid)")
    print(f"torch {torch.__version__}; CPU threads {torch.get_num_threads()}")
    if torch.cuda.is_available():
        print(f"GPU: {torch.cuda.get_device_name(0)}")
    print(
        f"\n{'device':6} {'precision':9} {'batch':>6} {'ms/batch':>9} {'clips/s':>10} {'frames/s':>10}  max |dp| vs fp32"
    )
    for name in devices:
        device = torch.device(name)
        model = load_refiner(args.ckpt).to(device)
        for size in args.batch:
            batch = {k: v.to(device) for k, v in make_batch(base, vertices, valid, size).items()}
            with torch.inference_mode():
                reference = model(batch)["probs"].float()
            for bf16 in (False, True) if device.type == "cuda" else (False,):
                seconds = time_forward(model, batch, bf16, args.seconds)
                drift = ""
                if bf16:
                    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
                        drift = f"{(model(batch)['probs'].float() - reference).abs().max().item():.4f}"
                clips = size / seconds
                print(
                    f"{name:6} {'bf16' if bf16 else 'fp32':9} {size:6d} {seconds * 1e3:9.2f} {clips:10.1f}"
                    f" {clips * base.clip_length / 2:10.0f}  {drift}"
                )


if __name__ == "__main__":
    main()
