"""Score every (text, image) pair of the retrieval candidate lists with a match function, batched.

For a list ``[q, n1, ..., nN]`` (store rows, positive first) ITR ranks the texts of all rows
against the image of ``q`` and TIR ranks the images of all rows against the text of ``q``. The
pair (q, q) is shared by both and scored once: 2N + 1 pairs per list. Lists are processed in
chunks; each chunk's rows are read from the store once (:class:`CachedStore`), and its pairs are
flattened into batches of ``batch_size`` regardless of list boundaries.

The evaluation cuts each batch's text block to its longest text
(:func:`kaleido.training.dataset.trim_text_padding`), as pre-training does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from kaleido.evaluation.cached_store import CachedStore

Encode = Callable[[Any, np.ndarray, np.ndarray], dict]  # (store, text_rows, image_rows) -> batch
Match = Callable[[dict], torch.Tensor]  # batch -> (B,) match score


def list_pairs(lst: Sequence[int]) -> tuple[np.ndarray, np.ndarray, int]:
    """(text_rows, image_rows) of one list's 2N + 1 pairs: the ITR pairs first (positive at 0),
    then TIR's N negatives; ``N + 1`` is where TIR's negatives start."""
    rows = np.asarray(lst, dtype=np.int64)
    q = rows[0]
    texts = np.concatenate([rows, np.full(len(rows) - 1, q)])
    images = np.concatenate([np.full(len(rows), q), rows[1:]])
    return texts, images, len(rows)


@torch.inference_mode()
def score_lists(lists: Sequence[Sequence[int]], store: Any, encode: Encode, match: Match, batch_size: int,
                progress: Callable[[int, int], None] | None = None,
                chunk_pairs: int = 4096) -> tuple[list[np.ndarray], list[np.ndarray], dict[str, int]]:
    """ITR and TIR scores per list (positive first) and counters (pairs scored, rows read)."""
    itr: list[np.ndarray] = []
    tir: list[np.ndarray] = []
    stats = {"pairs": 0, "rows_read": 0, "batches": 0}
    start = 0
    while start < len(lists):
        stop, pairs = start, 0
        while stop < len(lists) and (pairs == 0 or pairs + 2 * len(lists[stop]) - 1 <= chunk_pairs):
            pairs += 2 * len(lists[stop]) - 1
            stop += 1
        chunk = lists[start:stop]
        view = CachedStore(store, np.concatenate([np.asarray(lst) for lst in chunk]))
        stats["rows_read"] += view.reads
        per_list = [list_pairs(lst) for lst in chunk]
        texts = np.concatenate([p[0] for p in per_list])
        images = np.concatenate([p[1] for p in per_list])
        scores = np.empty(len(texts), dtype=np.float64)
        for b in range(0, len(texts), batch_size):
            batch = encode(view, texts[b:b + batch_size], images[b:b + batch_size])
            scores[b:b + batch_size] = match(batch).float().cpu().numpy()
            stats["batches"] += 1
        stats["pairs"] += len(texts)
        offset = 0
        for t, _i, n in per_list:
            s = scores[offset:offset + len(t)]
            itr.append(s[:n].copy())
            tir.append(np.concatenate([s[:1], s[n:]]))
            offset += len(t)
        start = stop
        if progress is not None:
            progress(stop, len(lists))
    return itr, tir, stats
