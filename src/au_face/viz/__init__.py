"""Pictures of the results: the overlay video, the AU track plot, the AU mask figure."""
