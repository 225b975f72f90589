"""Where user-supplied assets come from: explicit paths first, then environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from au_face.errors import AUFaceError


class MissingAssetError(AUFaceError, FileNotFoundError):
    """A required user-supplied file is missing."""


@dataclass(frozen=True)
class Asset:
    """A user-supplied file: what it is, the variable that may point to it, where to obtain it."""

    description: str
    env_var: str
    source: str

    def resolve(self, path: str | Path | None = None) -> Path:
        """``path`` if given, else ``$env_var``; raise :class:`MissingAssetError` if it does not exist."""
        candidate = path if path is not None else os.environ.get(self.env_var)
        if candidate is None:
            raise MissingAssetError(
                f"{self.description} is needed: pass its path or set {self.env_var}. Obtain it from {self.source}."
            )
        resolved = Path(candidate).expanduser()
        if not resolved.exists():
            raise MissingAssetError(f"{self.description} not found at {resolved}. Obtain it from {self.source}.")
        return resolved


ICT_MODEL = Asset(
    "ICT-FaceKit model (ict_facekit_light_neutral_expr57_id50.npz or the FaceXModel folder)",
    "AU_FACE_ICT",
    "https://github.com/ICT-VGL/ICT-FaceKit (MIT licence; FaceXModel folder, or its npz conversion)",
)
FLAME_MODEL = Asset(
    "FLAME model file generic_model.pkl",
    "AU_FACE_FLAME",
    "https://flame.is.tue.mpg.de (registration required; FLAME 2020 'generic_model.pkl')",
)
FLAME_LANDMARKS = Asset(
    "FLAME landmark embedding landmark_embedding.npy",
    "AU_FACE_FLAME_LANDMARKS",
    "the DECA repository's data folder (https://github.com/yfeng95/DECA, landmark_embedding.npy)",
)
DECA_CHECKPOINT = Asset(
    "DECA model checkpoint deca_model.tar",
    "AU_FACE_DECA",
    "https://github.com/yfeng95/DECA (download link in its README, after accepting the FLAME licence)",
)
