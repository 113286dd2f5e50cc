"""Optional ITM fine-tuning on the train split (``[eval] finetune_itm``) before ranking again.

Each batch pairs every row with its own text (match) and, for half of the rows, replaces the text
or the image (a fair coin) by another product's from the same sub-category when it has one,
else any other product: the hard negatives retrieval is scored on. Never another pose of the
same product.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from kaleido.evaluation.finetune import finetune

Encode = Callable[[Any, np.ndarray, np.ndarray], dict]


def negative_sampler(product_ids: Sequence[str], subcategories: Sequence[str]) -> Callable:
    """``draw(row, rng) -> row`` of another product, same sub-category first."""
    pids = np.asarray(product_ids).astype(str)
    subs = np.asarray(subcategories).astype(str)
    by_sub: dict[str, list[int]] = defaultdict(list)
    for r, s in enumerate(subs):
        by_sub[s].append(r)
    by_sub_arr = {k: np.asarray(v) for k, v in by_sub.items()}
    if len(np.unique(pids)) < 2:
        raise ValueError("ITM fine-tuning needs at least two products in the train split")

    def draw(row: int, rng: np.random.Generator) -> int:
        pool = by_sub_arr[subs[row]]
        for _ in range(8):
            other = int(pool[rng.integers(len(pool))])
            if pids[other] != pids[row]:
                return other
        while True:  # the sub-category holds (almost) only this product: any other product
            other = int(rng.integers(len(pids)))
            if pids[other] != pids[row]:
                return other

    return draw


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
) -> tuple[Any, dict]:
    """A fine-tuned copy of ``objective`` (its encoder and ITM head); ``product_ids`` and
    ``subcategories`` are given per entry of ``rows``."""
    tuned = copy.deepcopy(objective)
    head = tuned._head("itm")
    draw = negative_sampler(product_ids, subcategories)
    rng = np.random.default_rng(seed + 1)

    def loss_fn(batch_idx: np.ndarray) -> torch.Tensor:
        texts, images = rows[batch_idx].copy(), rows[batch_idx].copy()
        negative = rng.random(len(batch_idx)) < 0.5
        for k in np.flatnonzero(negative):
            other = rows[draw(int(batch_idx[k]), rng)]
            if rng.random() < 0.5:
                texts[k] = other
            else:
                images[k] = other
        logits = tuned.itm_logits(encode(train_store, texts, images)).float()
        return nn.functional.cross_entropy(logits, torch.as_tensor(~negative, dtype=torch.long))

    params = list(tuned.model.parameters()) + list(head.parameters())
    summary = finetune(params, [tuned], loss_fn, len(rows), batch_size, epochs, lr, seed, "itm", progress)
    return tuned, summary
