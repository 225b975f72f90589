"""Pictures of the results: the overlay video, the AU track plot, the AU mask figure."""

#: How the overlay draws the mesh: ``wire`` (edges only) or ``shaded`` (filled, shaded triangles and
#: edges). Here rather than in :mod:`~au_face.viz.overlay` so the command line lists them without OpenCV.
MESH_STYLES = ("wire", "shaded")
