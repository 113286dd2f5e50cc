"""Maskers decide which text tokens and which Kaleido patches a sample hides (registered ``maskers``)."""

from kaleido.maskers.base import EVERYTHING, Hidden, MaskPlan, level_of_grid

__all__ = ["EVERYTHING", "Hidden", "MaskPlan", "level_of_grid"]
