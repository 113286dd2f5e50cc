"""A SpanBERT-style masker: contiguous token spans with geometric lengths, patches as `random`.

It only uses kaleido's public masker helpers, and is found by kaleido through the
``kaleido_maskers`` entry point declared in this package's pyproject.toml.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from kaleido.maskers.base import DEFAULT_QUOTAS, EVERYTHING, Hidden, MaskPlan, check_rates, random_plan


class SpanMasker:
    """Masks whole spans of tokens (length ~ Geometric(p), capped), patches by level quota."""

    def __init__(self, token_rate: float = 0.15, max_predictions: int = 10, span_p: float = 0.3,
                 max_span: int = 5, patch_quotas: Mapping[int, int] = DEFAULT_QUOTAS) -> None:
        check_rates(token_rate, max_predictions, patch_quotas)
        if not 0.0 < span_p <= 1.0 or max_span < 1:
            raise ValueError(f"span_p must lie in (0, 1] and max_span >= 1, got {span_p}, {max_span}")
        self.token_rate, self.max_predictions = token_rate, max_predictions
        self.span_p, self.max_span = span_p, max_span
        self.patch_quotas = {int(g): int(q) for g, q in patch_quotas.items()}

    def plan(self, n_tokens: int, levels: np.ndarray, grids: Sequence[int],
             alignments: Sequence[tuple[int, int]] | None, rng: np.random.Generator,
             hidden: Hidden = EVERYTHING) -> MaskPlan:
        """``hidden`` (what the running tasks hide) limits the budgets: nothing else is planned."""
        levels = np.asarray(levels)
        budget = hidden.token_budget(n_tokens, self.token_rate, self.max_predictions)
        chosen: set[int] = set()
        while len(chosen) < budget:
            length = min(int(rng.geometric(self.span_p)), self.max_span, budget - len(chosen))
            start = int(rng.integers(0, max(1, n_tokens - length + 1)))
            chosen.update(range(start, min(n_tokens, start + length)))
        tokens = np.array(sorted(chosen)[:budget], dtype=np.int64)
        budgets = hidden.patch_budgets(levels, grids, self.patch_quotas)
        patches = random_plan(n_tokens, levels, 0, budgets, rng).patches
        return MaskPlan(tokens, patches)
