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
    """``features(i)`` and ``positions(i)`` of ``rows`` from RAM (float32); everything else is the
    wrapped store's. Asking for a row outside ``rows`` is an error, never a silent disk read."""

    def __init__(self, store: Any, rows: Sequence[int] | np.ndarray) -> None:
        self._store = store
        rows = np.unique(np.asarray(rows, dtype=np.int64))
        self._slot = {int(r): i for i, r in enumerate(rows)}
        self._features = np.asarray(store.features(rows), dtype=np.float32)
        self._positions = np.asarray(store.positions(rows), dtype=np.float32)
        self.reads = len(rows)

    def _index(self, i: Any) -> Any:
        if np.ndim(i) == 0:
            try:
                return self._slot[int(i)]
            except KeyError:
                raise KeyError(f"row {int(i)} was not loaded into this evaluation chunk") from None
        return np.array([self._index(j) for j in np.asarray(i).ravel()], dtype=np.int64)

    def features(self, i: Any) -> np.ndarray:
        return self._features[self._index(i)]

    def positions(self, i: Any) -> np.ndarray:
        return self._positions[self._index(i)]

    def __len__(self) -> int:
        return len(self._store)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)
