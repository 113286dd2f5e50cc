"""Optional ITM fine-tuning on the train split (``[eval] finetune_itm``) before ranking again.

Each batch pairs every row with its own text (match) and, for half of the rows, replaces the text
or the image (a fair coin) by another product's: with probability ``hard`` one of the same
sub-category when it has one (the hard negatives of the candidate lists), otherwise any other
product (the easy negatives that fill the lists where a sub-category is small). Never another pose
of the same product.

The tuned scorer reads the pooled ``[CLS]`` with the pre-trained ITM head (as the authors), or
with ``pooling = "mean"`` / ``"text"`` a masked mean of the sequence (text and patches balanced, or
the text positions) with a fresh 2-way head (see :mod:`kaleido.evaluation.pooling`: for a backbone
trained with mean pooling).
"""

from __future__ import annotations

import copy
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from kaleido.evaluation.finetune import finetune, probe
from kaleido.evaluation.pooling import check_pooling, pool, pooled_features
from kaleido.tasks.itm import match_score

log = logging.getLogger(__name__)

Encode = Callable[[Any, np.ndarray, np.ndarray], dict]


def negative_sampler(product_ids: Sequence[str], subcategories: Sequence[str], hard: float = 1.0) -> Callable:
    """``draw(row, rng) -> row`` of another product: with probability ``hard`` from the row's
    sub-category (any product when it holds no other), else from any other product."""
    if not 0.0 <= hard <= 1.0:
        raise ValueError(f"hard negative share must lie in [0, 1], got {hard}")
    pids = np.asarray(product_ids).astype(str)
    subs = np.asarray(subcategories).astype(str)
    if len(np.unique(pids)) < 2:
        raise ValueError("ITM fine-tuning needs at least two products in the train split")
    by_sub: dict[str, list[int]] = defaultdict(list)
    for r, s in enumerate(subs):
        by_sub[s].append(r)
    # per (sub-category, product): the rows of the sub-category's *other* products
    same_sub = {(s, p): np.asarray([r for r in by_sub[s] if pids[r] != p], dtype=np.int64)
                for s, p in set(zip(subs.tolist(), pids.tolist(), strict=True))}

    def draw(row: int, rng: np.random.Generator) -> int:
        if rng.random() < hard:
            pool = same_sub[(subs[row], pids[row])]
            if len(pool):
                return int(pool[rng.integers(len(pool))])
        while True:  # an easy negative, or the sub-category holds no other product
            other = int(rng.integers(len(pids)))
            if pids[other] != pids[row]:
                return other

    return draw


class MatchScorer(nn.Module):
    """An encoder, a pooling and a 2-way match head; ``match_scores`` as ``PretrainObjective``'s."""

    def __init__(self, model: nn.Module, head: nn.Module, pooling: str) -> None:
        super().__init__()
        self.model, self.head, self.pooling = model, head, check_pooling(pooling)

    def itm_logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, 2) logits; class 1 = the text describes the image."""
        return self.head(pool(self.model, batch, self.pooling))

    def match_scores(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B,) the retrieval score, the log-odds of "match" (as the pre-trained objective's)."""
        return match_score(self.itm_logits(batch))


def match_scorer(objective: Any, pooling: str, seed: int) -> MatchScorer:
    """A trainable copy: the pre-trained encoder and, for ``"cls"``, its ITM head (a linear layer
    on the pooled ``[CLS]``); for a mean a fresh linear head (std 0.02, zero bias)."""
    model = copy.deepcopy(objective.model)
    if check_pooling(pooling) == "cls":
        head = copy.deepcopy(objective._head("itm").classifier)
    else:
        torch.manual_seed(seed)
        head = nn.Linear(model.hidden_size, 2)
        nn.init.normal_(head.weight, std=0.02)
        nn.init.zeros_(head.bias)
    return MatchScorer(model, head, pooling)


def finetune_itm(
    objective: Any,
    train_store: Any,
    encode: Encode,
    rows: np.ndarray,
    product_ids: Sequence[str],
    subcategories: Sequence[str],
    batch_size: int,
    epochs: float,
    lr: float,
    seed: int,
    progress: Callable | None = None,
    head_lr: float | None = None,
    hard: float = 1.0,
    pooling: str = "cls",
    probe_steps: int = 0,
) -> tuple[MatchScorer, dict]:
    """A fine-tuned scorer from ``objective`` (encoder at ``lr``, match head at ``head_lr``);
    ``product_ids`` and ``subcategories`` are given per entry of ``rows``; ``hard`` is the share of
    negatives drawn from the same sub-category. With ``probe_steps``, a fresh (mean-pooled) head is
    first fitted alone on the frozen encoder's summaries of every row with its own text and with one
    negative; ``head_lr`` and ``probe_steps`` are for fresh heads: the pre-trained ``[CLS]`` head
    trains with the encoder at ``lr``."""
    tuned = match_scorer(objective, pooling, seed)
    if pooling == "cls":  # the pre-trained head: it trains with the encoder, no probe (for fresh heads)
        if head_lr is not None or probe_steps:
            log.info("itm fine-tuning on [CLS] keeps the pre-trained head: head_lr and probe_steps "
                     "(settings for a fresh head) are not used")
        head_lr, probe_steps = None, 0
    draw = negative_sampler(product_ids, subcategories, hard)
    rng = np.random.default_rng(seed + 1)

    def pairs(batch_idx: np.ndarray, negative: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(text rows, image rows): the rows themselves, a negative text or image where asked."""
        texts, images = rows[batch_idx].copy(), rows[batch_idx].copy()
        for k in np.flatnonzero(negative):
            other = rows[draw(int(batch_idx[k]), rng)]
            if rng.random() < 0.5:
                texts[k] = other
            else:
                images[k] = other
        return texts, images

    probed: dict[str, float] = {}
    if probe_steps > 0:
        idx = np.concatenate([np.arange(len(rows)), np.arange(len(rows))])
        negative = np.arange(len(idx)) >= len(rows)
        texts, images = pairs(idx, negative)
        cached = pooled_features(tuned.model, train_store, encode, texts, images, batch_size, pooling)
        target = torch.as_tensor(~negative, dtype=torch.long)
        probed = probe(tuned.head.parameters(), [tuned.head],
                       lambda: nn.functional.cross_entropy(tuned.head(cached), target), probe_steps,
                       lr if head_lr is None else head_lr, seed, "itm")

    def loss_fn(batch_idx: np.ndarray) -> torch.Tensor:
        negative = rng.random(len(batch_idx)) < 0.5
        texts, images = pairs(batch_idx, negative)
        logits = tuned.itm_logits(encode(train_store, texts, images)).float()
        return nn.functional.cross_entropy(logits, torch.as_tensor(~negative, dtype=torch.long))

    summary = finetune(tuned.model.parameters(), [tuned], loss_fn, len(rows), batch_size, epochs, lr, seed,
                       "itm", progress, head_params=tuned.head.parameters(), head_lr=head_lr)
    return tuned, {**probed, **summary}
