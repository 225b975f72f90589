"""Refine a video's coarse MediaPipe meshes with a trained checkpoint, from Python.

    python examples/refine_video.py VIDEO CHECKPOINT

Prints the frame count, the mean acceleration (jitter) of coarse and refined canonical meshes, and
the frames where each AU is most likely. The checkpoint must be trained on the MediaPipe topology
(the packaged default model, or one trained with configs/default.yaml).
"""

from __future__ import annotations

import sys

import torch

from au_face import CoarseFrames, au_label, load_refiner
from au_face.coarse.mediapipe import MediaPipeReconstructor
from au_face.coarse.stream import reconstruct_video
from au_face.evaluation.metrics import MeanAcceleration


def jitter(vertices: torch.Tensor, valid: torch.Tensor) -> float:
    metric = MeanAcceleration()
    metric.update(vertices[None], valid[None])
    return float(metric.compute())


def main(video: str, checkpoint: str) -> None:
    coarse = CoarseFrames.concat(list(reconstruct_video(video, MediaPipeReconstructor())))
    refined = load_refiner(checkpoint).refine(coarse)
    print(f"{len(coarse)} frames, {coarse.num_valid} with a face")
    print(
        f"jitter (mean vertex acceleration): coarse {jitter(coarse.vertices, coarse.valid):.4f}, refined {jitter(refined.vertices, coarse.valid):.4f}"
    )
    for k, au in enumerate(refined.aus):
        frame = int(refined.au_probs[:, k].argmax())
        print(
            f"{au_label(au)}: max p = {refined.au_probs[frame, k]:.2f} at frame {frame} ({coarse.timestamps[frame]:.2f} s)"
        )


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
