"""One small fine-tuning loop shared by the downstream tasks (ITM, CR, SUB, captioning).

The paper fine-tunes the pre-trained encoder with a task head on the training split. Every task
here uses the same recipe: AdamW (betas 0.9/0.98, eps 1e-6, as the authors' scripts), 10% linear
warm-up then linear decay, gradient clipping at 1.0, batches drawn in a seeded order. The task
supplies only ``loss_fn(rows) -> loss`` over a batch of its training row indices.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)


def batches(n: int, batch_size: int, epochs: float, seed: int) -> list[np.ndarray]:
    """Seeded shuffled batches over ``n`` items for ``epochs`` (a fraction of an epoch allowed)."""
    rng = np.random.default_rng(seed)
    per_epoch = math.ceil(n / batch_size)
    total = max(1, math.ceil(per_epoch * epochs))
    out: list[np.ndarray] = []
    while len(out) < total:
        order = rng.permutation(n)
        out.extend(order[i:i + batch_size] for i in range(0, n, batch_size))
    return out[:total]


def finetune(params: Iterable[nn.Parameter], modules: list[nn.Module],
             loss_fn: Callable[[np.ndarray], torch.Tensor], n: int, batch_size: int, epochs: float,
             lr: float, seed: int, name: str,
             progress: Callable[[str, int, int, float], None] | None = None) -> dict[str, float]:
    """Train ``params`` to lower ``loss_fn`` over batches of ``range(n)``; returns the loss summary."""
    torch.manual_seed(seed)
    plan = batches(n, batch_size, epochs, seed)
    params = [p for p in params if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01)
    warmup = max(1, int(0.1 * len(plan)))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (len(plan) - step) / max(1, len(plan) - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    for m in modules:
        m.train()
    losses: list[float] = []
    start = time.perf_counter()
    try:
        for step, rows in enumerate(plan):
            loss = loss_fn(rows)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{name} fine-tuning: non-finite loss at step {step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
            if progress is not None:
                progress(name, step + 1, len(plan), losses[-1])
    finally:
        for m in modules:
            m.eval()
    head = float(np.mean(losses[: max(1, len(losses) // 10)]))
    tail = float(np.mean(losses[-max(1, len(losses) // 10):]))
    log.info("%s fine-tuning: %d steps, loss %.4f -> %.4f in %.1fs", name, len(plan), head, tail,
             time.perf_counter() - start)
    return {"steps": len(plan), "loss_first": head, "loss_last": tail}
