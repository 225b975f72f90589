"""au_face: AU-aware dynamic 3D face reconstruction from video."""

from au_face.aus import AU_SETS, au_label, parse_au, resolve_aus
from au_face.coarse.base import CoarseFrames, CoarseReconstructor
from au_face.errors import AUFaceError
from au_face.faces import FaceTopology, ICTFaceModel

__version__ = "0.1.0"

__all__ = [
    "AU_SETS",
    "AUFaceError",
    "CoarseFrames",
    "CoarseReconstructor",
    "FaceTopology",
    "ICTFaceModel",
    "__version__",
    "au_label",
    "parse_au",
    "resolve_aus",
]
