"""LightningModules."""

from au_face.tasks.au_face import AUFaceTask, CheckpointError, Refinement

__all__ = ["AUFaceTask", "CheckpointError", "Refinement"]
