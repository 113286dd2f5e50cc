"""Train the `unet` SOD on (image, mask) pairs, e.g. the synthetic data's ``input_mask``.

Images and masks are resized to ``size``; random horizontal flips; loss = BCE + soft Dice
(Dice keeps small products from being drowned by the background). Saves a safetensors file
atomically, loadable by ``UNetSaliency(weights=...)``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from kaleido.atomic import atomic_file
from kaleido.sod.unet import UNet, check_size, to_input
from kaleido.training.optim import fused

log = logging.getLogger(__name__)


def _mask_tensor(masks: list[np.ndarray], size: int) -> torch.Tensor:
    t = torch.from_numpy(np.stack([(m > 0).astype(np.float32) for m in masks]))[:, None]
    return F.interpolate(t, size=(size, size), mode="area")


def train_unet(images: Sequence[np.ndarray], masks: Sequence[np.ndarray], out: str | Path, steps: int = 300,
               batch_size: int = 16, size: int = 128, width: int = 16, lr: float = 3e-3, seed: int = 0,
               log_every: int = 50) -> dict:
    """Fit a UNet on the pairs and write ``out``; returns {steps, final_loss, seconds}."""
    from safetensors.torch import save_file

    check_size(size)
    if len(images) != len(masks) or not len(images):
        raise ValueError(f"need as many masks as images (got {len(images)} images, {len(masks)} masks)")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    # pre-resize everything once: the training set is small and this keeps steps cheap
    x_all = torch.cat([to_input(list(images[i:i + 64]), size) for i in range(0, len(images), 64)])
    y_all = torch.cat([_mask_tensor(list(masks[i:i + 64]), size) for i in range(0, len(masks), 64)])
    net = UNet(width=width)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4, fused=fused(net.parameters()))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    net.train()
    start, loss_value = time.perf_counter(), float("nan")
    for step in range(1, steps + 1):
        idx = torch.from_numpy(rng.integers(0, len(x_all), size=min(batch_size, len(x_all))))
        x, y = x_all[idx], y_all[idx]
        if rng.random() < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        logits = net(x)
        prob = torch.sigmoid(logits)
        dice = 1 - (2 * (prob * y).sum((1, 2, 3)) + 1) / (prob.sum((1, 2, 3)) + y.sum((1, 2, 3)) + 1)
        loss = F.binary_cross_entropy_with_logits(logits, y) + dice.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        loss_value = float(loss.detach())
        if step % log_every == 0 or step == steps:
            log.info("sod train step %d/%d loss %.4f", step, steps, loss_value)
    with atomic_file(out) as tmp:
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp),
                  metadata={"width": str(width), "size": str(size), "steps": str(steps)})
    return {"steps": steps, "final_loss": loss_value, "seconds": time.perf_counter() - start}
