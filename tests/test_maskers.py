"""Maskers: budgets, level quotas, AGM's alignment priority and one-side rule, what the tasks hide."""

from __future__ import annotations

import numpy as np
import pytest

from kaleido import registry
from kaleido.maskers.agm import AGMMasker
from kaleido.maskers.base import Hidden, check_masker
from kaleido.maskers.random import RandomMasker
from kaleido.tasks.base import patch_layout

GRIDS = (1, 2, 3, 4, 5)
LEVELS = patch_layout(GRIDS)
START = {g: int(np.flatnonzero(LEVELS == i + 1)[0]) for i, g in enumerate(GRIDS)}


def _per_level(patches: np.ndarray) -> dict[int, int]:
    return {g: int((LEVELS[patches] == i + 1).sum()) for i, g in enumerate(GRIDS)}


def test_registered_by_name() -> None:
    assert registry.maskers.get("random") is RandomMasker
    assert registry.maskers.get("agm") is AGMMasker


@pytest.mark.parametrize("masker", [RandomMasker(), AGMMasker()])
def test_budgets_and_quotas(masker) -> None:
    rng = np.random.default_rng(0)
    # 15% rounded to the nearest count: 10 tokens -> 1.5 -> 2, 17 -> 2.55 -> 3 (not cut to 1 and 2)
    for n_tokens, expected in [(40, 6), (100, 10), (3, 1), (0, 0), (10, 2), (17, 3)]:
        plan = masker.plan(n_tokens, LEVELS, GRIDS, None, rng)
        assert plan.tokens.size == expected
        assert len(set(plan.tokens.tolist())) == plan.tokens.size
        assert plan.tokens.size == 0 or (plan.tokens.min() >= 0 and plan.tokens.max() < n_tokens)
        assert _per_level(plan.patches) == {1: 0, 2: 0, 3: 1, 4: 2, 5: 3}


def test_configurable_rates_and_missing_grid() -> None:
    masker = RandomMasker(token_rate=0.5, max_predictions=4, patch_quotas={"4": 5, "6": 2})
    plan = masker.plan(20, LEVELS, GRIDS, None, np.random.default_rng(1))
    assert plan.tokens.size == 4
    assert _per_level(plan.patches) == {1: 0, 2: 0, 3: 0, 4: 5, 5: 0}  # no 6x6 level: nothing there


def test_bad_parameters_fail_in_one_line() -> None:
    with pytest.raises(ValueError, match="token_rate"):
        AGMMasker(token_rate=1.5)
    with pytest.raises(ValueError, match="patch_quotas"):
        RandomMasker(patch_quotas={3: -1})


def test_agm_without_alignments_is_the_random_masker() -> None:
    for seed in range(20):
        a = AGMMasker().plan(30, LEVELS, GRIDS, [], np.random.default_rng(seed))
        r = RandomMasker().plan(30, LEVELS, GRIDS, None, np.random.default_rng(seed))
        assert np.array_equal(a.tokens, r.tokens) and np.array_equal(a.patches, r.patches)


def test_agm_masks_exactly_one_side_of_every_aligned_pair_first() -> None:
    # Few pairs, within every budget: each must get exactly one side hidden (a random masker
    # would hit a given aligned item only now and then).
    pairs = [(0, START[3] + 4), (5, START[4] + 3), (9, START[5] + 7), (12, START[5] + 20)]
    sides = {"token": 0, "patch": 0}
    for seed in range(300):
        plan = AGMMasker().plan(40, LEVELS, GRIDS, pairs, np.random.default_rng(seed))
        tokens, patches = set(plan.tokens.tolist()), set(plan.patches.tolist())
        for tok, patch in pairs:
            assert (tok in tokens) != (patch in patches), (seed, tok, patch)
            sides["token" if tok in tokens else "patch"] += 1
        assert _per_level(plan.patches) == {1: 0, 2: 0, 3: 1, 4: 2, 5: 3}
        assert plan.tokens.size == 6
    # the side is a fair coin
    share = sides["token"] / (sides["token"] + sides["patch"])
    assert 0.4 < share < 0.6


def test_agm_one_side_rule_and_quotas_under_dense_alignments() -> None:
    rng = np.random.default_rng(7)
    for _ in range(200):
        n_tokens = int(rng.integers(1, 50))
        count = int(rng.integers(1, 60))
        pairs = [(int(rng.integers(n_tokens)), int(rng.integers(len(LEVELS)))) for _ in range(count)]
        plan = AGMMasker().plan(n_tokens, LEVELS, GRIDS, pairs, rng)
        tokens, patches = set(plan.tokens.tolist()), set(plan.patches.tolist())
        assert not any(t in tokens and p in patches for t, p in pairs)
        counts = _per_level(plan.patches)
        assert counts[1] == counts[2] == 0 and counts[3] <= 1 and counts[4] <= 2 and counts[5] <= 3
        assert plan.tokens.size <= min(10, max(1, round(0.15 * n_tokens)))



def test_agm_pairs_on_a_level_no_task_hides_take_the_text_side() -> None:
    # Only B2CM runs: a pair on the 3x3 or 4x4 level must hide its token (its patch would stay
    # visible); the 5x5 pair keeps the coin. Nothing is planned on levels no task hides.
    pairs = [(0, START[3] + 4), (5, START[4] + 3), (9, START[5] + 7)]
    hidden = Hidden(tokens=True, grids=frozenset({5}))
    sides = {"token": 0, "patch": 0}
    for seed in range(200):
        plan = AGMMasker().plan(40, LEVELS, GRIDS, pairs, np.random.default_rng(seed), hidden=hidden)
        tokens, patches = set(plan.tokens.tolist()), set(plan.patches.tolist())
        assert {0, 5} <= tokens
        assert _per_level(plan.patches) == {1: 0, 2: 0, 3: 0, 4: 0, 5: 3}
        assert (9 in tokens) != (START[5] + 7 in patches)
        sides["token" if 9 in tokens else "patch"] += 1
    assert 0.35 < sides["token"] / 200 < 0.65


def test_agm_pairs_on_a_level_with_quota_0_take_the_text_side() -> None:
    # A 4x4 quota of 0 used to drop the 4x4 pairs altogether: their tokens were left to chance.
    masker = AGMMasker(patch_quotas={3: 1, 4: 0, 5: 3})
    pairs = [(2, START[4] + 1), (7, START[4] + 9)]
    for seed in range(100):
        plan = masker.plan(40, LEVELS, GRIDS, pairs, np.random.default_rng(seed))
        assert {2, 7} <= set(plan.tokens.tolist())
        assert _per_level(plan.patches) == {1: 0, 2: 0, 3: 1, 4: 0, 5: 3}


def test_agm_pairs_take_the_patch_side_when_no_task_hides_tokens() -> None:
    pairs = [(0, START[3] + 4), (5, START[5] + 3)]
    hidden = Hidden(tokens=False, grids=frozenset({3, 4, 5}))
    for seed in range(50):
        plan = AGMMasker().plan(40, LEVELS, GRIDS, pairs, np.random.default_rng(seed), hidden=hidden)
        assert plan.tokens.size == 0
        assert {START[3] + 4, START[5] + 3} <= set(plan.patches.tolist())


@pytest.mark.parametrize("masker", [RandomMasker(), AGMMasker()])
def test_a_plan_names_only_what_the_tasks_hide(masker) -> None:
    rng = np.random.default_rng(3)
    only_4x4 = Hidden(tokens=False, grids=frozenset({4}))
    plan = masker.plan(40, LEVELS, GRIDS, [(1, START[4])], rng, hidden=only_4x4)
    assert plan.tokens.size == 0 and _per_level(plan.patches) == {1: 0, 2: 0, 3: 0, 4: 2, 5: 0}
    plan = masker.plan(40, LEVELS, GRIDS, None, rng, hidden=Hidden(tokens=True, grids=frozenset()))
    assert plan.tokens.size == 6 and plan.patches.size == 0


def test_a_masker_without_the_hidden_keyword_fails_at_build_time() -> None:
    class Old:
        def plan(self, n_tokens, levels, grids, alignments, rng):
            return RandomMasker().plan(n_tokens, levels, grids, alignments, rng)

    class Open:
        def plan(self, n_tokens, levels, grids, alignments, rng, **options):
            return RandomMasker().plan(n_tokens, levels, grids, alignments, rng)

    with pytest.raises(TypeError, match="Old: plan\\(\\) must accept the keyword argument `hidden`"):
        check_masker(Old())
    for ok in (Open(), RandomMasker(), AGMMasker()):
        check_masker(ok)


@pytest.mark.parametrize("masker", [cls(patch_quotas={3: 3, 4: 2}) for cls in (RandomMasker, AGMMasker)])
def test_a_tasks_limit_caps_a_larger_quota(masker) -> None:
    # CP camouflages one 3x3 patch: a quota of 3 must plan one, else two planned patches stay
    # visible and AGM bars their aligned tokens too (neither side of those pairs masked).
    hidden = Hidden(tokens=True, grids=frozenset({3, 4}), limits=((3, 1),))
    pairs = [(0, START[3]), (2, START[3] + 4), (4, START[3] + 8)]
    for seed in range(30):
        plan = masker.plan(40, LEVELS, GRIDS, pairs, np.random.default_rng(seed), hidden=hidden)
        assert _per_level(plan.patches) == {1: 0, 2: 0, 3: 1, 4: 2, 5: 0}
        if isinstance(masker, AGMMasker):  # one side of every pair, the capped 3x3 ones included
            tokens, patches = set(plan.tokens.tolist()), set(plan.patches.tolist())
            assert all((t in tokens) != (p in patches) for t, p in pairs)


@pytest.mark.parametrize("masker", [cls(patch_quotas={1: 3, 2: 9}) for cls in (RandomMasker, AGMMasker)])
def test_a_quota_larger_than_its_level_plans_the_whole_level(masker) -> None:
    plan = masker.plan(20, LEVELS, GRIDS, None, np.random.default_rng(0))
    assert _per_level(plan.patches) == {1: 1, 2: 4, 3: 0, 4: 0, 5: 0}


def test_agm_ignores_alignments_to_tokens_cut_off_by_truncation() -> None:
    # The aligner saw the whole description; the dataset passes the truncated length. A pair on
    # position n_tokens (the first cut-off one) must neither take a token slot nor bar its patch.
    n_tokens = 12
    pairs = [(n_tokens, START[5] + k) for k in range(5)] + [(n_tokens + 3, START[4])]
    for seed in range(50):
        plan = AGMMasker().plan(n_tokens, LEVELS, GRIDS, pairs, np.random.default_rng(seed))
        assert plan.tokens.size == 2 and plan.tokens.max() < n_tokens
        r = RandomMasker().plan(n_tokens, LEVELS, GRIDS, None, np.random.default_rng(seed))
        assert np.array_equal(plan.tokens, r.tokens) and np.array_equal(plan.patches, r.patches)
