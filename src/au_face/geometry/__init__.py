"""Face geometry as an artefact: topology, AU list, AU masks, expression basis and neutral estimator,
built once from a recipe (:func:`build`, ``au-face geometry``), saved as a content-hashed ``.npz``,
and given to both the model and the DataModule."""

from au_face.geometry.artefact import FaceGeometry, GeometryError
from au_face.geometry.build import GeometrySpec, build, from_checkpoint, resolve_geometry

__all__ = ["FaceGeometry", "GeometryError", "GeometrySpec", "build", "from_checkpoint", "resolve_geometry"]
