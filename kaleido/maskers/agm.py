"""The ``agm`` masker: Alignment-Guided Masking (SPEC section 4).

Aligned ``<token, patch>`` pairs are visited in random order; for each, exactly one side is
hidden (token or patch, a fair coin; the other side when the coin's side has no budget left),
so the model must recover it from the other modality. The partner of a hidden item is never
hidden too, not even by the random fill that completes the budgets when pairs run out. A
sample without alignments therefore gets exactly the ``random`` masker's plan.

Only what the running tasks hide counts as a side (:class:`~kaleido.maskers.base.Hidden`): a
pair whose patch lies on a level no task hides (no CP / G2CM / B2CM for it) or whose quota is
0 can only take its text side; otherwise the coin could "hide" a patch that stays visible and
bar its token, leaving neither side masked.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kaleido import registry
from kaleido.maskers.base import EVERYTHING, Hidden, MaskPlan, random_plan
from kaleido.maskers.random import RandomMasker


@registry.maskers.register("agm")
class AGMMasker(RandomMasker):
    """Alignment-guided: aligned pairs first, one side each, random fill after.

    Same parameters as ``random`` (token rate, prediction cap, level quotas): only the choice differs.
    """

    def plan(self, n_tokens: int, levels: np.ndarray, grids: Sequence[int],
             alignments: Sequence[tuple[int, int]] | None, rng: np.random.Generator,
             hidden: Hidden = EVERYTHING) -> MaskPlan:
        levels = np.asarray(levels)
        token_left = hidden.token_budget(n_tokens, self.token_rate, self.max_predictions)
        budgets = hidden.patch_budgets(levels, grids, self.patch_quotas)  # hidden levels with quota > 0
        # A pair keeps whichever of its sides can be hidden; one with neither constrains nothing.
        pairs = [(int(t), int(p)) for t, p in (alignments or ())
                 if 0 <= int(t) < n_tokens and 0 <= int(p) < len(levels)
                 and (token_left > 0 or int(levels[int(p)]) in budgets)]
        if not pairs:
            return random_plan(n_tokens, levels, token_left, budgets, rng)

        token_partners: dict[int, set[int]] = {}
        patch_partners: dict[int, set[int]] = {}
        for tok, patch in pairs:
            token_partners.setdefault(tok, set()).add(patch)
            patch_partners.setdefault(patch, set()).add(tok)

        left = dict(budgets)
        tokens: set[int] = set()
        patches: set[int] = set()

        def token_ok(tok: int) -> bool:
            return tok not in tokens and not (token_partners.get(tok, set()) & patches)

        def patch_ok(patch: int) -> bool:
            return patch not in patches and not (patch_partners.get(patch, set()) & tokens)

        for k in rng.permutation(len(pairs)):
            tok, patch = pairs[k]
            if tok in tokens or patch in patches:  # this pair already has one side hidden
                continue
            level = int(levels[patch])
            sides = ("token", "patch") if rng.random() < 0.5 else ("patch", "token")
            for side in sides:
                if side == "token" and token_left > 0 and token_ok(tok):
                    tokens.add(tok)
                    token_left -= 1
                    break
                if side == "patch" and left.get(level, 0) > 0 and patch_ok(patch):
                    patches.add(patch)
                    left[level] -= 1
                    break

        # Random fill, never the partner of something already hidden (the one-side rule).
        if token_left > 0:
            free = np.array([t for t in range(n_tokens) if token_ok(t)], dtype=np.int64)
            take = min(token_left, free.size)
            if take:
                tokens.update(int(t) for t in rng.choice(free, size=take, replace=False))
        for level in sorted(left):
            free = np.array([p for p in np.flatnonzero(levels == level) if patch_ok(int(p))], dtype=np.int64)
            take = min(left[level], free.size)
            if take:
                patches.update(int(p) for p in rng.choice(free, size=take, replace=False))
        return MaskPlan(np.array(sorted(tokens), dtype=np.int64), np.array(sorted(patches), dtype=np.int64))
