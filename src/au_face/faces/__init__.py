"""Face models and their topologies."""

from au_face.faces.ict import ICTFaceModel
from au_face.faces.topology import FaceTopology, TopologyError

__all__ = ["FaceTopology", "ICTFaceModel", "TopologyError"]
