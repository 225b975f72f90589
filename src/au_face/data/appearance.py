"""Appearance descriptors for records made without them: photos whose image is still on disk."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from au_face.coarse.base import CoarseFrames
from au_face.faces.appearance import DESCRIPTOR_SIZE, appearance_descriptor


def with_appearance(frames: CoarseFrames, images: list[np.ndarray]) -> CoarseFrames:
    """``frames`` with each frame's appearance descriptor (:mod:`au_face.faces.appearance`) computed from its
    image (RGB or grey, as the reconstructor saw it) and the record's posed points; zeros without a face.

    What a MediaPipe reconstructor asked for descriptors gives, for a record cached without them.
    """
    if len(images) != len(frames):
        raise ValueError(f"{len(frames)} frames but {len(images)} images")
    descriptors = np.zeros((len(frames), DESCRIPTOR_SIZE), dtype=np.float32)
    points = frames.posed_vertices().numpy()
    for i in np.flatnonzero(frames.valid.numpy()):
        descriptors[i] = appearance_descriptor(images[i], points[i])
    return replace(frames, appearance=torch.from_numpy(descriptors))
