"""Pictures of the results: the overlay video, the AU track plot, the AU mask figure."""

#: How the overlay draws the mesh: ``wire`` (edges only) or ``shaded`` (filled, shaded triangles and
#: edges). Here rather than in :mod:`~au_face.viz.overlay` so the command line lists them without OpenCV.
MESH_STYLES = ("wire", "shaded")
#: Longest side of the overlay's picture by default: larger videos are drawn scaled down by a whole
#: divisor (1280x720 to 640x360, 1920x1080 to 960x540): the overlay is a visual check, and drawing and
#: x264 cost grows with the pixels.
OVERLAY_MAX_SIDE = 960
