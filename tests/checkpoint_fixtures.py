"""Checkpoints of small refiners, written as ``AUFaceTask`` writes them, for tests of loading and export."""

from __future__ import annotations

from pathlib import Path

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
            },
            "geometry": model.geometry.to_state(),
        },
        path,
    )
    return path
