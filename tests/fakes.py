"""An in-memory feature store with the FeatureStore API (random features), for fast tests."""

from __future__ import annotations

import numpy as np

from kaleido.data.rows import RowMeta
from kaleido.tasks.base import patch_layout

TEXTS = [
    "black leather biker jacket with silver zip",
    "white cotton crew neck t-shirt",
    "blue slim fit denim jeans with five pockets",
    "red floral print midi dress",
    "grey wool knit sweater with ribbed cuffs",
    "brown suede ankle boots with block heel",
]


class FakeStore:
    """``n`` rows of random features; ``poses`` consecutive rows share one product."""

    def __init__(self, n: int = 12, feature_dim: int = 16, grids: tuple[int, ...] = (1, 2, 3, 4, 5),
                 poses: int = 2, seed: int = 0, texts: list[str] | None = None,
                 product_ids: list[str] | None = None) -> None:
        rng = np.random.default_rng(seed)
        self.grids = tuple(grids)
        self.levels = patch_layout(self.grids)
        self.feature_dim = feature_dim
        p = len(self.levels)
        self._features = rng.normal(size=(n, p, feature_dim)).astype(np.float16)
        self._rotations = rng.normal(size=(n, 3, feature_dim)).astype(np.float16)
        grey_count = 16 if 4 in self.grids else 0
        self._grey = rng.normal(size=(n, grey_count, feature_dim)).astype(np.float16)
        self._positions = rng.random(size=(n, p, 5)).astype(np.float16)
        texts = texts or TEXTS
        pids = product_ids or [f"p{i // poses}" for i in range(n)]
        self._meta = [RowMeta(index=i, text=texts[i % len(texts)], category="c", subcategory="s",
                              product_id=pids[i], pose=str(i % poses)) for i in range(n)]

    def __len__(self) -> int:
        return len(self._meta)

    def features(self, i: int) -> np.ndarray:
        return self._features[i]

    def rotations(self, i: int) -> np.ndarray:
        return self._rotations[i]

    def grey(self, i: int) -> np.ndarray:
        return self._grey[i]

    def positions(self, i: int) -> np.ndarray:
        return self._positions[i]

    def meta(self, i: int) -> RowMeta:
        return self._meta[i]

    def product_ids(self) -> np.ndarray:
        return np.array([m.product_id for m in self._meta])


class FakeAlignments:
    """Fixed ``(token_position, patch_index)`` pairs per row."""

    def __init__(self, pairs: dict[int, list[tuple[int, int]]]) -> None:
        self._pairs = pairs

    def pairs(self, i: int) -> list[tuple[int, int]]:
        return self._pairs.get(i, [])
