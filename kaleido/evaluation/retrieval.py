"""Rank@K for ITR and TIR from scores grouped by query, and SumR.

Each query has a list of candidate scores with the positive first. Tie rule (one, documented):
**a tie counts against the positive**. The positive's rank is ``1 + #(negatives scoring >= it)``,
so a constant scorer ranks every positive last and can never look better than chance.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kaleido.evaluation.intervals import share_interval

KS: tuple[int, ...] = (1, 5, 10)


def positive_ranks(scores: Sequence[Sequence[float] | np.ndarray] | np.ndarray) -> np.ndarray:
    """1-based rank of the positive (element 0) in each query's candidate scores (lists may differ
    in length). A NaN score is an error: it would silently rank anywhere."""
    ranks = np.empty(len(scores), dtype=np.int64)
    for q, row in enumerate(scores):
        row = np.asarray(row, dtype=np.float64)
        if row.ndim != 1 or row.size < 1:
            raise ValueError(f"query {q}: expected a 1-d list of candidate scores, got shape {row.shape}")
        if np.isnan(row).any():
            raise ValueError(f"query {q}: NaN score among its candidates")
        ranks[q] = 1 + int(np.count_nonzero(row[1:] >= row[0]))
    return ranks


def recall_at(ranks: np.ndarray, ks: Sequence[int] = KS) -> dict[str, float]:
    """Share of queries whose positive is within the top K, as a percentage (the paper's unit)."""
    ranks = np.asarray(ranks)
    if ranks.size == 0:
        raise ValueError("no queries to rank")
    return {f"R@{k}": float(100.0 * np.mean(ranks <= k)) for k in ks}


def recall_interval(ranks: np.ndarray, ks: Sequence[int] = KS) -> dict[str, list[float]]:
    """Each R@K's 95% interval over the queries (Wilson, :mod:`kaleido.evaluation.intervals`)."""
    ranks = np.asarray(ranks)
    if ranks.size == 0:
        raise ValueError("no queries to rank")
    return {f"R@{k}": share_interval(int(np.count_nonzero(ranks <= k)), ranks.size) for k in ks}


def chance_recall(list_sizes: Sequence[int], ks: Sequence[int] = KS) -> dict[str, float]:
    """Expected Rank@K of a random scorer with no ties: ``min(K, n) / n`` averaged, in percent."""
    sizes = np.asarray(list_sizes, dtype=np.float64)
    return {f"R@{k}": float(100.0 * np.mean(np.minimum(k, sizes) / sizes)) for k in ks}


def sum_r_per_query(itr_ranks: np.ndarray, tir_ranks: np.ndarray, ks: Sequence[int] = KS) -> np.ndarray:
    """Each query's share of SumR: 100 x its hits within each K, ITR and TIR together (0 to 600
    for K = 1, 5, 10), so that the mean over the queries is SumR. Ablations compare two runs on
    the same lists query by query with it."""
    itr_ranks, tir_ranks = np.asarray(itr_ranks), np.asarray(tir_ranks)
    if itr_ranks.shape != tir_ranks.shape:
        raise ValueError(f"ITR and TIR ranks of different queries: {itr_ranks.shape} vs {tir_ranks.shape}")
    return 100.0 * sum((itr_ranks <= k).astype(float) + (tir_ranks <= k) for k in ks)


def sum_r(itr: dict[str, float], tir: dict[str, float], ks: Sequence[int] = KS) -> float:
    """SumR = R@1 + R@5 + R@10 of ITR plus the same of TIR (percentages)."""
    return float(sum(itr[f"R@{k}"] for k in ks) + sum(tir[f"R@{k}"] for k in ks))
