"""AlignmentStore: the ``(token_position, patch_index)`` pairs of every row of a feature store split.

On disk a folder holding ``pairs.npy`` (M, 2) int32 (all rows' pairs, concatenated),
``offsets.npy`` (N + 1,) int64 (row i owns ``pairs[offsets[i]:offsets[i+1]]``) and ``meta.json``
(settings and counts). The folder is written under a temporary name and renamed into place, so
a store that exists is complete. Arrays are memory-mapped: workers read them without copies.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kaleido.atomic import atomic_folder

META = "meta.json"


class AlignmentStore:
    """Read side: ``AlignmentStore.open(path).pairs(i)``."""

    def __init__(self, path: Path, pairs: np.ndarray, offsets: np.ndarray, meta: dict) -> None:
        self.path, self._pairs, self._offsets, self.meta = path, pairs, offsets, meta

    @classmethod
    def open(cls, path: str | Path) -> AlignmentStore:
        path = Path(path)
        if not (path / META).is_file():
            raise FileNotFoundError(f"no alignment store at {path} (run `kaleido align RECIPE` first)")
        meta = json.loads((path / META).read_text(encoding="utf-8"))
        pairs = np.load(path / "pairs.npy", mmap_mode="r")
        offsets = np.load(path / "offsets.npy", mmap_mode="r")
        if offsets.shape != (meta["rows"] + 1,) or pairs.shape != (int(offsets[-1]), 2):
            raise ValueError(f"alignment store {path} is inconsistent: offsets {offsets.shape}, "
                             f"pairs {pairs.shape}, rows {meta['rows']}")
        return cls(path, pairs, offsets, meta)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def pairs(self, i: int) -> list[tuple[int, int]]:
        """Row ``i``'s pairs: token position (in the text's wordpieces, no specials), patch index."""
        if not 0 <= i < len(self):
            raise IndexError(f"row {i} out of range for an alignment store of {len(self)} rows")
        block = self._pairs[int(self._offsets[i]):int(self._offsets[i + 1])]
        return [(int(t), int(p)) for t, p in block]

    def rows_with_pairs(self) -> int:
        return int(np.count_nonzero(np.diff(np.asarray(self._offsets))))


def write_store(path: str | Path, rows: Sequence[Sequence[tuple[int, int]]], meta: dict) -> AlignmentStore:
    """Write every row's pairs atomically (an older store of the same key is replaced whole) and
    open the result."""
    path = Path(path)
    with atomic_folder(path) as tmp:
        counts = np.array([len(r) for r in rows], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        flat = np.array([pair for r in rows for pair in r], dtype=np.int32).reshape(-1, 2)
        np.save(tmp / "pairs.npy", flat)
        np.save(tmp / "offsets.npy", offsets)
        full = {**meta, "rows": len(rows), "pairs": int(offsets[-1]),
                "rows_with_pairs": int(np.count_nonzero(counts))}
        (tmp / META).write_text(json.dumps(full, indent=2, sort_keys=True), encoding="utf-8")
    return AlignmentStore.open(path)
