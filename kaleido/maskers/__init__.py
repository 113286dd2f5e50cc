"""Maskers decide which text tokens and which Kaleido patches a sample hides (registered ``maskers``)."""

from kaleido.maskers.base import MaskPlan, level_of_grid

__all__ = ["MaskPlan", "level_of_grid"]
