"""The ``random`` masker: the ablation baseline of AGM (Table 4, "Random")."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from kaleido import registry
from kaleido.maskers.base import DEFAULT_QUOTAS, EVERYTHING, Hidden, MaskPlan, check_rates, random_plan


@registry.maskers.register("random")
class RandomMasker:
    """Tokens and patches chosen independently, ignoring alignments."""

    def __init__(self, token_rate: float = 0.15, max_predictions: int = 10,
                 patch_quotas: Mapping[int, int] = DEFAULT_QUOTAS) -> None:
        check_rates(token_rate, max_predictions, patch_quotas)
        self.token_rate = token_rate
        self.max_predictions = max_predictions
        self.patch_quotas = {int(g): int(q) for g, q in patch_quotas.items()}

    def plan(self, n_tokens: int, levels: np.ndarray, grids: Sequence[int],
             alignments: Sequence[tuple[int, int]] | None, rng: np.random.Generator,
             hidden: Hidden = EVERYTHING) -> MaskPlan:
        """``alignments`` are accepted for the common signature and ignored; only what ``hidden``
        names is planned."""
        levels = np.asarray(levels)
        token_count = hidden.token_budget(n_tokens, self.token_rate, self.max_predictions)
        budgets = hidden.patch_budgets(levels, grids, self.patch_quotas)
        return random_plan(n_tokens, levels, token_count, budgets, rng)
