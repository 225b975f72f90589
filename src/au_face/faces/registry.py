"""Topologies by name, so configs and the CLI can say ``topology: ict``."""

from __future__ import annotations

from pathlib import Path

from au_face.errors import AUFaceError
from au_face.faces.topology import FaceTopology
from au_face.utils.assets import FLAME_LANDMARKS, FLAME_MODEL

TOPOLOGIES = ("ict", "mediapipe", "flame")


class UnknownTopologyError(AUFaceError, ValueError):
    """Raised for a topology name that is not registered."""


def load_topology(
    name: str,
    ict_path: str | Path | None = None,
    flame_path: str | Path | None = None,
    flame_landmarks_path: str | Path | None = None,
) -> FaceTopology:
    """The named topology; ICT and FLAME need their (user-supplied) model files."""
    if name == "ict":
        from au_face.faces.ict import load_face_model

        return load_face_model(ict_path).topology()
    if name == "mediapipe":
        from au_face.faces.mediapipe import mediapipe_topology

        return mediapipe_topology()
    if name == "flame":
        from au_face.faces.flame import FlameModel

        model = FlameModel.load(FLAME_MODEL.resolve(flame_path), FLAME_LANDMARKS.resolve(flame_landmarks_path))
        return model.topology()
    raise UnknownTopologyError(f"unknown topology {name!r}; choose from {', '.join(TOPOLOGIES)}")
