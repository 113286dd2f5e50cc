"""Example third-party kaleido plugin: adds the ``span_geometric`` masker."""
