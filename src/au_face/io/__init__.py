"""File formats in and out: video and image frames, mesh sequences, the AU CSV, checkpoints."""
