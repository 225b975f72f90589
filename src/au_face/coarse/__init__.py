"""Coarse per-frame reconstructors."""

from au_face.coarse.base import CoarseFrames, CoarseFramesError, CoarseReconstructor

__all__ = ["CoarseFrames", "CoarseFramesError", "CoarseReconstructor"]
