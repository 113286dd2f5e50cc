"""Ablation changes of SumR with their interval over the test queries: per-query SumR, the pairing
of two runs on the same candidate lists, and the paired bootstrap."""

from __future__ import annotations

import numpy as np
import pytest

from kaleido.ablation.table import Row, build_table, paired_interval, scores, to_markdown
from kaleido.evaluation.retrieval import recall_at, sum_r, sum_r_per_query


def test_per_query_sum_r_averages_to_sum_r():
    itr, tir = np.array([1, 4, 9, 30, 2]), np.array([6, 1, 11, 10, 3])
    per_query = sum_r_per_query(itr, tir)
    assert per_query.tolist() == [400.0, 500.0, 100.0, 100.0, 400.0]  # query 0: 3 ITR hits (1, 5, 10) + 1 TIR
    assert per_query.mean() == pytest.approx(sum_r(recall_at(itr), recall_at(tir)))
    with pytest.raises(ValueError, match="different queries"):
        sum_r_per_query(itr, tir[:4])


def _results(itr, tir, lists="abc"):
    per = sum_r_per_query(np.array(itr), np.array(tir))
    scorer = {"sum_r": float(per.mean()), "itr_ranks": itr, "tir_ranks": tir}
    return {"retrieval": {"scorers": {"pre-trained ITM": scorer}, "lists_sha": lists}}


def _row(label, results, factor="masker"):
    return Row(factor, label, list(range(len(results))), [scores(r) for r in results])


def test_a_change_on_the_same_lists_gets_an_interval_over_the_queries():
    rng = np.random.default_rng(0)
    base_itr, base_tir = rng.integers(1, 40, 30).tolist(), rng.integers(1, 40, 30).tolist()
    base = _row("agm", [_results(base_itr, base_tir)], "base")
    # every query's positive moved to rank 1: a clearly better variant
    better = _row("better", [_results([1] * 30, [1] * 30)])
    lo, hi = better.sum_r_interval(base)
    gain = 600.0 - np.mean(sum_r_per_query(np.array(base_itr), np.array(base_tir)))
    assert 0 < lo < gain < hi
    same = _row("same", [_results(base_itr, base_tir)])
    assert same.sum_r_interval(base) == [0.0, 0.0]
    # another draw of lists (another test split): no pairing, no interval
    other = _row("other", [_results([1] * 30, [1] * 30, lists="xyz")])
    assert other.sum_r_interval(base) is None
    # results from before the ranks were saved: no interval either
    old = Row("masker", "old", [0], [{"sum_r": 10.0, "sum_cls": None, "sum_cap": None}])
    assert old.sum_r_interval(base) is None

    md = to_markdown(build_table(base, [better, other]))
    better_line = next(line for line in md.splitlines() if "| better |" in line)
    assert f"; 95% [{lo:+.2f}, {hi:+.2f}])" in better_line
    assert "95% [" not in next(line for line in md.splitlines() if "| other |" in line)


def test_paired_interval_is_a_bootstrap_of_the_mean_difference():
    diffs = [100.0] * 10 + [-100.0] * 10
    lo, hi = paired_interval(diffs)
    assert lo < 0 < hi and lo > -100 and hi < 100
    assert paired_interval(diffs) == [lo, hi]  # seeded: the same table every time
    assert paired_interval([5.0]) is None


def test_seeds_on_the_same_lists_are_averaged_per_query_not_counted_twice():
    """Two seeds ranking the same 20 queries are 20 resampling units, not 40: the interval equals
    that of the per-query mean change."""
    rng = np.random.default_rng(1)
    ranks = [(rng.integers(1, 40, 20).tolist(), rng.integers(1, 40, 20).tolist()) for _ in range(4)]
    base = _row("agm", [_results(*ranks[0]), _results(*ranks[1])], "base")
    variant = _row("random", [_results(*ranks[2]), _results(*ranks[3])])
    def per_query(r):
        return sum_r_per_query(np.array(r[0]), np.array(r[1]))

    per_seed = [per_query(ranks[2]) - per_query(ranks[0]), per_query(ranks[3]) - per_query(ranks[1])]
    assert variant.sum_r_interval(base) == paired_interval(((per_seed[0] + per_seed[1]) / 2).tolist())
