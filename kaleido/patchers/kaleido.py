"""The Kaleido patcher: the region split at 1x1, 2x2, ... LxL (default L=5: 55 patches)."""

from __future__ import annotations

from collections.abc import Sequence

from kaleido import registry
from kaleido.patchers.layout import Layout, grid_layout


@registry.patchers.register("kaleido")
class KaleidoPatcher:
    """Multi-scale Kaleido patches: grids 1..levels (5 gives the paper's 1+4+9+16+25 = 55)."""

    def __init__(self, levels: int = 5) -> None:
        if levels < 1:
            raise ValueError(f"kaleido patcher: levels must be >= 1, got {levels}")
        self.levels = levels

    @property
    def grids(self) -> tuple[int, ...]:
        return tuple(range(1, self.levels + 1))

    def layout(self, box: Sequence[float], width: int, height: int) -> Layout:
        return grid_layout(box, width, height, self.grids)
