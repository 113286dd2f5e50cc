"""The scale-fixed baseline (FashionBERT / ViT style): one grid of any size."""

from __future__ import annotations

from collections.abc import Sequence

from kaleido import registry
from kaleido.patchers.layout import Layout, grid_layout


@registry.patchers.register("fixed")
class FixedPatcher:
    """One ``grid x grid`` split of the region (8 gives FashionBERT's 64 patches)."""

    def __init__(self, grid: int = 8) -> None:
        if grid < 1:
            raise ValueError(f"fixed patcher: grid must be >= 1, got {grid}")
        self.grid = grid

    @property
    def grids(self) -> tuple[int, ...]:
        return (self.grid,)

    def layout(self, box: Sequence[float], width: int, height: int) -> Layout:
        return grid_layout(box, width, height, self.grids)
