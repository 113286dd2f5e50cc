"""Patchers: split an image region into Kaleido patches (multi-scale) or one fixed grid."""

from kaleido.patchers.layout import Layout, grid_layout

__all__ = ["Layout", "grid_layout"]
