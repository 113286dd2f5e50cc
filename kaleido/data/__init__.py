"""Data sources: Fashion-Gen HDF5, JSONL folders (e.g. myntra-500) and the synthetic fashion set, as rows."""
