"""Small refiners' checkpoints (written as ``AUFaceTask`` writes them) and inputs, for tests of loading,
export and inference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from au_face.model.refiner import AUFaceRefiner


def save_refiner(model: AUFaceRefiner, path: Path) -> Path:
    """A checkpoint as ``AUFaceTask`` writes it: the model's state under ``model.``."""
    torch.save(
        {
            "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
            "hyper_parameters": {
                "net": vars(model.net_config),
                "clip_length": model.clip_length,
                "reference": model.reference_mode,
                "calibrated": model.calibrated,
                "mesh_exclusions": model.mesh_exclusions,
            },
            "geometry": model.geometry.to_state(),
        },
        path,
    )
    return path


def noisy_meshes(
    model: AUFaceRefiner, clips: int, length: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Meshes ``[B,T,V,3]`` near the model's template and ``valid [B,T]`` (a quarter of the frames without
    a face, none in the first clip); frames without a face are zeros. Callers may drop more."""
    template = model.geometry.topology.template.astype(np.float32)
    scale = 0.05 * float(np.ptp(template, axis=0).max())
    vertices = (template + rng.normal(scale=scale, size=(clips, length, *template.shape))).astype(np.float32)
    valid = rng.random((clips, length)) > 0.25
    valid[0] = True
    vertices[~valid] = 0.0
    return vertices, valid
