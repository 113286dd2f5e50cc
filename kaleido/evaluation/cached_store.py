"""A feature store view that reads a chosen set of rows from disk once and serves them from memory.

Retrieval pairs one image with 101 texts and one text with 101 images: going back to the
memory-mapped store for every pair would read each image row dozens of times. The evaluation
reads the rows of a chunk of candidate lists in one vectorised call, then the unchanged
``encode_pairs`` of the training code builds its batches from this view.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


class CachedStore:
    """``meta(i)``, and with ``features=True`` also ``features(i)`` and ``positions(i)`` (float32),
    of ``rows`` from RAM; everything else is the wrapped store's. With features cached, asking for
    a row outside ``rows`` is an error, never a silent disk read."""

    def __init__(self, store: Any, rows: Sequence[int] | np.ndarray, features: bool = True) -> None:
        self._store = store
        rows = np.unique(np.asarray(rows, dtype=np.int64))
        self._slot = {int(r): i for i, r in enumerate(rows)}
        metas = store.meta(rows)
        self._meta = list(metas) if isinstance(metas, list | tuple) else [store.meta(int(r)) for r in rows]
        self._cached = features
        if features:
            self._features = np.asarray(store.features(rows), dtype=np.float32)
            self._positions = np.asarray(store.positions(rows), dtype=np.float32)
        self.reads = len(rows) if features else 0

    def _index(self, i: Any) -> Any:
        if np.ndim(i) == 0:
            try:
                return self._slot[int(i)]
            except KeyError:
                raise KeyError(f"row {int(i)} was not loaded into this evaluation chunk") from None
        return np.array([self._index(j) for j in np.asarray(i).ravel()], dtype=np.int64)

    def meta(self, i: Any) -> Any:
        idx = self._index(i)
        return self._meta[idx] if np.ndim(idx) == 0 else [self._meta[j] for j in idx]

    def features(self, i: Any) -> np.ndarray:
        return self._features[self._index(i)] if self._cached else self._store.features(i)

    def positions(self, i: Any) -> np.ndarray:
        return self._positions[self._index(i)] if self._cached else self._store.positions(i)

    def __len__(self) -> int:
        return len(self._store)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)
