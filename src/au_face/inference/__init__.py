"""Running a model on videos and photos: the public API, the streaming pipeline, results on disk."""
