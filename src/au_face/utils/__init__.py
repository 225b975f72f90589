"""Small helpers every layer uses: atomic files, concurrency, quiet native logs, user-supplied assets."""
