"""The masker contract: a :class:`MaskPlan` of text positions and patch indices to hide.

A masker only *chooses*; the tasks own what hiding means (AMLM corrupts the chosen tokens
80/10/10, CP camouflages the chosen 3x3 patch, G2CM greys the chosen 4x4 patches, B2CM blanks
the chosen 5x5 patches). Keeping the choice separate is what lets ``random`` and ``agm`` swap
without touching any task. The tasks in turn tell the masker what they hide (:class:`Hidden`),
so that a plan names nothing that stays visible.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

# Paper (SPEC section 4): 1 patch of the 3x3 level, 2 of 4x4, 3 of 5x5; keys are grid sizes.
DEFAULT_QUOTAS: Mapping[int, int] = MappingProxyType({3: 1, 4: 2, 5: 3})


@dataclass(frozen=True)
class MaskPlan:
    """What one sample hides: ``tokens`` are 0-based text positions without ``[CLS]``,
    ``patches`` are indices into the store's patch order. Both sorted, without duplicates."""

    tokens: np.ndarray
    patches: np.ndarray

    def patches_at(self, levels: np.ndarray, level: int) -> np.ndarray:
        """The planned patches that belong to one level (1-based level id)."""
        return self.patches[levels[self.patches] == level] if self.patches.size else self.patches


@dataclass(frozen=True)
class Hidden:
    """What the running tasks hide of a plan: its tokens when ``tokens`` (AMLM corrupts them), its
    patches of the grid sizes in ``grids`` (CP camouflages 3x3, G2CM greys 4x4, B2CM blanks 5x5).

    A masker plans nothing else. Why: a planned patch no task hides stays visible, and AGM's
    one-side rule would then keep its aligned token visible too, so neither side of the pair is
    masked (SPEC section 4 wants exactly one). ``grids=None`` means every grid the quotas name
    (:data:`EVERYTHING`, for a masker used on its own); the dataset passes what its tasks hide.
    ``limits``: (grid, most patches of it the tasks hide) pairs (CP camouflages one 3x3 patch): a
    larger quota is capped, for the same reason.
    """

    tokens: bool = True
    grids: frozenset[int] | None = None
    limits: tuple[tuple[int, int], ...] = ()

    def token_budget(self, n_tokens: int, token_rate: float, max_predictions: int) -> int:
        """:func:`token_budget`, or 0 when no task hides tokens."""
        return token_budget(n_tokens, token_rate, max_predictions) if self.tokens else 0

    def patch_budgets(self, levels: np.ndarray, grids: Sequence[int],
                      quotas: Mapping[int, int]) -> dict[int, int]:
        """:func:`patch_budgets` over the hidden grids only, each at most its limit."""
        kept = quotas if self.grids is None else {g: q for g, q in quotas.items() if int(g) in self.grids}
        limits = dict(self.limits)
        return patch_budgets(levels, grids, {g: min(q, limits.get(int(g), q)) for g, q in kept.items()})


EVERYTHING = Hidden()


def check_masker(masker: Any) -> None:
    """Fail at build time, in one line, for a masker whose ``plan`` lacks the ``hidden`` keyword
    (written before it existed): otherwise it would fail later, inside a DataLoader worker."""
    params = inspect.signature(masker.plan).parameters.values()
    if not any(p.name == "hidden" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        raise TypeError(f"masker {type(masker).__name__}: plan() must accept the keyword argument "
                        f"`hidden` (a kaleido.maskers.base.Hidden: what the running tasks hide; "
                        f"see docs/ARCHITECTURE.md)")


def level_of_grid(grids: Sequence[int], grid: int) -> int | None:
    """1-based level id of the level with this grid size, or None when the store lacks it."""
    grids = tuple(int(g) for g in grids)
    return grids.index(grid) + 1 if grid in grids else None


def token_budget(n_tokens: int, token_rate: float, max_predictions: int) -> int:
    """How many tokens to mask: the rate of the text length, at least one, at most the cap."""
    if n_tokens <= 0 or max_predictions <= 0 or token_rate <= 0:
        return 0
    return int(min(max_predictions, n_tokens, max(1, round(token_rate * n_tokens))))


def patch_budgets(levels: np.ndarray, grids: Sequence[int], quotas: Mapping[int, int]) -> dict[int, int]:
    """Quota per level id, for the quota grids the store has (a missing grid masks nothing)."""
    out = {}
    for grid, quota in quotas.items():
        level = level_of_grid(grids, int(grid))
        if level is not None and quota > 0:
            out[level] = int(min(quota, int((levels == level).sum())))
    return out


def check_rates(token_rate: float, max_predictions: int, quotas: Mapping[int, int]) -> None:
    """Fail early, in one line, on parameters that cannot make a plan."""
    if not 0.0 <= token_rate <= 1.0:
        raise ValueError(f"masker token_rate must lie in [0, 1], got {token_rate}")
    if max_predictions < 0:
        raise ValueError(f"masker max_predictions must be >= 0, got {max_predictions}")
    bad = {g: q for g, q in quotas.items() if int(g) < 1 or int(q) < 0}
    if bad:
        raise ValueError(f"masker patch_quotas need grid >= 1 and quota >= 0, got {dict(bad)}")


def random_plan(n_tokens: int, levels: np.ndarray, token_count: int, budgets: Mapping[int, int],
                rng: np.random.Generator) -> MaskPlan:
    """Tokens and patches chosen independently and uniformly (the VL-BERT / UNITER strategy)."""
    tokens = rng.choice(n_tokens, size=token_count, replace=False) if token_count else np.empty(0, np.int64)
    patches = [rng.choice(np.flatnonzero(levels == level), size=count, replace=False)
               for level, count in sorted(budgets.items()) if count]
    return MaskPlan(np.sort(tokens).astype(np.int64),
                    np.sort(np.concatenate(patches)).astype(np.int64) if patches else np.empty(0, np.int64))
