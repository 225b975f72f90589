"""LightningModules."""

from au_face.refinement import Refinement
from au_face.tasks.au_face import AUFaceTask
from au_face.checkpoints import CheckpointError

__all__ = ["AUFaceTask", "CheckpointError", "Refinement"]
