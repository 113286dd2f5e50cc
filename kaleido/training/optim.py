"""AdamW with BERT's weight-decay exclusions, and the warm-up then linear-decay schedule.

Both settings of the paper fit: a warm-up in steps (2e-5, wd 1e-4, 5K steps) or as a share of
the run (the authors' scripts: 1e-4, 10%). Biases and LayerNorm weights get no weight decay.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for _name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (decay if param.ndim >= 2 else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


FUSED_DEVICES = ("cpu", "cuda")


def fused(params: Iterable[nn.Parameter | dict]) -> bool | None:
    """``fused=`` for torch's Adam / AdamW: True where every parameter (of a list or of parameter
    groups) is on one device type that has the fused kernel. One kernel over all parameters instead
    of several small ops per tensor: on a CUDA device one launch; on a 2-core CPU a sixth of the
    single-tensor loop torch uses there by default (24 vs 115 ms a step for the quickstart's 21M
    parameters: bench/cpu_kernels.py). None (torch's own choice) otherwise."""
    tensors = [t for p in params for t in (p["params"] if isinstance(p, dict) else [p])]
    kinds = {t.device.type for t in tensors}
    return True if len(kinds) == 1 and kinds <= set(FUSED_DEVICES) else None


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, betas: Iterable[float],
                    eps: float) -> torch.optim.AdamW:
    betas = tuple(betas)
    groups = param_groups(model, weight_decay)
    return torch.optim.AdamW(groups, lr=lr, betas=(betas[0], betas[1]), eps=eps, fused=fused(groups))


def warmup_steps(total_steps: int, steps: int | None, ratio: float) -> int:
    """Warm-up length: ``steps`` when given, otherwise ``ratio`` of the run rounded up, so that any
    ratio > 0 warms up for at least one step (0.1 of 5 steps is 1, of 25 is 3, of 30 is 3)."""
    if steps is None:
        # rounded to 9 places first: 0.1 * 30 is 3.0000000000000004 in floating point, not 4 steps
        steps = math.ceil(round(ratio * total_steps, 9)) if ratio > 0 else 0
    return min(total_steps, steps)


def lr_factor(step: int, warmup: int, total: int) -> float:
    """The lr multiplier of optimiser step ``step`` (0-based): ``warmup`` steps below the peak,
    rising linearly, ``(step + 1) / (warmup + 1)``, then 1 at step ``warmup`` decaying linearly
    to 0 at ``total``. So a warm-up of 1 step starts at half the peak (it used to start at the
    peak, as a warm-up of 0 does), and no step trains at lr 0."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    return max(0.0, (total - step) / max(1, total - warmup))


def build_scheduler(optimizer: torch.optim.Optimizer, warmup: int,
                    total: int) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, warmup, total))
