"""The geometry shared by every patcher: a region split into grids, level by level.

A level with grid ``g`` tiles the region exactly with ``g x g`` patches (float edges, so no
pixel is lost or counted twice). Patch order is level by level, row-major within a level; the
model, the aligner and the AKPM tasks all index patches in that order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Layout:
    """Patches of one image: pixel boxes, level ids (1..L) and 5-d normalised positions."""

    boxes: np.ndarray  # (P, 4) float32 pixel x1, y1, x2, y2
    levels: np.ndarray  # (P,) int64, level id 1..L
    positions: np.ndarray  # (P, 5) float32 [x1, x2, y1, y2, w*h] / image size
    grids: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def region(self) -> np.ndarray:
        """The box the grids split (the 1x1 patch when level 1 is there): union of all patches."""
        b = self.boxes
        return np.array([b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()], dtype=np.float32)

    def level_slice(self, level: int) -> slice:
        """Patch indices of one level (1-based), contiguous by construction."""
        if not 1 <= level <= len(self.grids):
            raise ValueError(f"level {level} out of range 1..{len(self.grids)}")
        start = sum(g * g for g in self.grids[: level - 1])
        return slice(start, start + self.grids[level - 1] ** 2)


def check_grids(grids: Sequence[int]) -> tuple[int, ...]:
    """Validate grid sizes: a non-empty sequence of positive integers."""
    out = tuple(int(g) for g in grids)
    if not out or any(g < 1 for g in out):
        raise ValueError(f"grids must be positive integers, got {list(grids)}")
    return out


def grid_layout(box: Sequence[float], width: int, height: int, grids: Sequence[int]) -> Layout:
    """Split ``box`` (x1, y1, x2, y2 in pixels) of a ``width`` x ``height`` image into each grid."""
    grids = check_grids(grids)
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    x1, y1, x2, y2 = (float(v) for v in box)
    x1, x2 = max(0.0, x1), min(float(width), x2)
    y1, y2 = max(0.0, y1), min(float(height), y2)
    if not (x2 > x1 and y2 > y1):
        raise ValueError(f"empty region {tuple(box)} in a {width}x{height} image")
    boxes, levels = [], []
    for level, g in enumerate(grids, start=1):
        xs = np.linspace(x1, x2, g + 1)
        ys = np.linspace(y1, y2, g + 1)
        for r in range(g):
            for c in range(g):
                boxes.append((xs[c], ys[r], xs[c + 1], ys[r + 1]))
                levels.append(level)
    b = np.asarray(boxes, dtype=np.float64)
    pos = np.stack([b[:, 0] / width, b[:, 2] / width, b[:, 1] / height, b[:, 3] / height,
                    (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) / (width * height)], axis=1)
    return Layout(boxes=b.astype(np.float32), levels=np.asarray(levels, dtype=np.int64),
                  positions=np.clip(pos, 0.0, 1.0).astype(np.float32), grids=grids)
