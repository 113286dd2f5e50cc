"""Candidate lists: same sub-category, never the query's product (any pose), reproducible, saved."""

import numpy as np
import pytest

from kaleido.evaluation.candidates import CandidateLists, build_candidates


def _split(n_products=60, poses=3, seed=1):
    rng = np.random.default_rng(seed)
    pids, cats, subs = [], [], []
    for p in range(n_products):
        cat = f"cat{p % 3}"
        sub = f"{cat}-sub{p % 2}"  # 6 sub-categories of 10 products
        for _ in range(int(rng.integers(1, poses + 1))):
            pids.append(f"P{p}")
            cats.append(cat)
            subs.append(sub)
    return np.array(pids), np.array(cats), np.array(subs)


def test_negatives_share_the_subcategory_and_never_the_product():
    pids, cats, subs = _split()
    c = build_candidates(pids, cats, subs, queries=20, negatives=5, seed=3)
    assert len(c.lists) == 20 and c.counts["from_category"] == 0 and c.counts["from_any"] == 0
    for lst in c.lists:
        q, negs = lst[0], lst[1:]
        assert len(negs) == 5
        assert all(subs[n] == subs[q] for n in negs)
        assert all(pids[n] != pids[q] for n in negs)
        assert len({pids[n] for n in negs}) == 5  # distinct products
    assert len({pids[lst[0]] for lst in c.lists}) == 20  # distinct query products


def test_query_and_negative_rows_are_random_poses_of_their_products():
    # Always a product's first row (often its front view) would make the benchmark one pose's.
    pids, cats, subs = _split()
    first = {p: int(np.flatnonzero(pids == p)[0]) for p in set(pids)}
    c = build_candidates(pids, cats, subs, queries=60, negatives=5, seed=0)
    several = [lst[0] for lst in c.lists if (pids == pids[lst[0]]).sum() > 1]
    assert sum(q != first[pids[q]] for q in several) > len(several) / 4
    negs = [n for lst in c.lists for n in lst[1:] if (pids == pids[n]).sum() > 1]
    assert sum(n != first[pids[n]] for n in negs) > len(negs) / 4


def test_fallback_to_category_then_any_product():
    pids, cats, subs = _split()
    c = build_candidates(pids, cats, subs, queries=10, negatives=25, seed=0)
    for lst in c.lists:
        q, negs = lst[0], lst[1:]
        assert len(negs) == 25 and all(pids[n] != pids[q] for n in negs)
        same_sub = sum(subs[n] == subs[q] for n in negs)
        same_cat = sum(cats[n] == cats[q] for n in negs)
        assert same_sub == 9  # all 9 other products of the sub-category come first
        assert same_cat == 19  # then the 10 of the category's other sub-category
    assert c.counts["from_category"] == 10 * 10 and c.counts["from_any"] == 10 * 6


def test_short_split_gives_shorter_lists_and_counts_them():
    pids, cats, subs = _split(n_products=8)
    c = build_candidates(pids, cats, subs, queries=100, negatives=100, seed=0)
    assert len(c.lists) == 8 and all(len(lst) == 8 for lst in c.lists)
    assert c.counts["short_lists"] == 8


def test_same_seed_same_lists_and_json_round_trip(tmp_path):
    pids, cats, subs = _split()
    a = build_candidates(pids, cats, subs, queries=15, negatives=7, seed=11)
    b = build_candidates(pids, cats, subs, queries=15, negatives=7, seed=11)
    other = build_candidates(pids, cats, subs, queries=15, negatives=7, seed=12)
    assert a.lists == b.lists and a.lists != other.lists
    a.save(tmp_path / "c.json")
    assert CandidateLists.load(tmp_path / "c.json").lists == a.lists
    assert not list(tmp_path.glob(".c.json.*"))  # no temporary left behind


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 2 products"):
        build_candidates(["a", "a"], ["c", "c"], ["s", "s"])
    with pytest.raises(ValueError, match="one entry per row"):
        build_candidates(["a", "b"], ["c"], ["s", "s"])


def test_fingerprint_names_the_lists_and_the_share_of_hard_negatives_is_counted(tmp_path):
    """Runs compare query by query only on the same lists: a saved and reloaded copy has the same
    fingerprint, another seed's lists another; the same-sub-category share is what the counts leave."""
    pids, cats, subs = _split()
    c = build_candidates(pids, cats, subs, queries=10, negatives=25, seed=0)
    c.save(tmp_path / "c.json")
    assert CandidateLists.load(tmp_path / "c.json").fingerprint() == c.fingerprint()
    other = build_candidates(pids, cats, subs, queries=10, negatives=25, seed=1)
    assert other.fingerprint() != c.fingerprint()
    negatives = sum(len(lst) - 1 for lst in c.lists)
    same_sub = sum(subs[n] == subs[lst[0]] for lst in c.lists for n in lst[1:])
    assert c.same_subcategory_share() == pytest.approx(same_sub / negatives)
    assert 0 < c.same_subcategory_share() < 1  # the fallbacks were needed (25 negatives)
