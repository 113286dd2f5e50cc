"""Stage 1: saliency, patching and extraction into a memory-mapped feature store."""

from kaleido.features.store import FeatureStore, ShardWriter

__all__ = ["FeatureStore", "ShardWriter"]
