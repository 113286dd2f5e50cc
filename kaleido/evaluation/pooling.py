"""The sequence summary a downstream head reads: the pooled ``[CLS]`` (the paper's), or a mean read
before the pooler: the balanced mean of text and patches (``"mean"``) or the text positions'
mean (``"text"``) (why a mean, for the offline MiniLM: see :mod:`kaleido.models.pooling`).

Measured on the quickstart's pre-trained model (logistic regression on the frozen summaries, train
split -> test split, CR / SUB accuracy %), synthetic data v1: pooled ``[CLS]`` 11.9 / 4.0 (the
majority class is 16.3); plain mean 80.2 / 64.9; balanced mean 91.6 / 76.7; text positions alone
96.5 / 88.6. Data v2: ``[CLS]`` 9.5 / 4.0, balanced mean 72.1 / 64.2, text 90.0 / 80.1
(docs/EVALUATION.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from kaleido.models.pooling import check_pooling, summary

__all__ = ["check_pooling", "pool", "pooled_features"]


def pool(encoder: nn.Module, batch: dict[str, torch.Tensor], pooling: str) -> torch.Tensor:
    """(B, H): ``encoder(batch)``'s pooled ``[CLS]``, or a mean read before the pooler (the balanced
    mean of text and patches, or the text positions' mean)."""
    sequence, pooled = encoder(batch)
    if pooling == "cls":
        return pooled
    return summary(sequence, batch["attention_mask"], pooling)


@torch.no_grad()
def pooled_features(encoder: nn.Module, store: Any, encode: Callable[[Any, np.ndarray, np.ndarray], dict],
                    texts: np.ndarray, images: np.ndarray, batch_size: int, pooling: str) -> torch.Tensor:
    """(N, H) float summaries of the pairs (``texts[i]``, ``images[i]``) by the frozen encoder, in
    eval mode: the cached inputs of a head-only probe."""
    encoder.eval()
    spans = [slice(b, b + batch_size) for b in range(0, len(texts), batch_size)]
    return torch.cat([pool(encoder, encode(store, texts[s], images[s]), pooling) for s in spans]).float()
