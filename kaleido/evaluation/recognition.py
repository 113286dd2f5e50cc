"""CR and SUB: classification heads on the pooled ``[CLS]`` (dropout 0.1, linear), fine-tuned.

As the authors' scripts: the pooled output, dropout 0.1, one linear layer per task. To fit a CPU
budget, category and sub-category are fine-tuned *jointly* on one copy of the pre-trained encoder
(the loss is the sum of both cross-entropies) instead of one encoder copy per task; each task
keeps its own head. The label space is the train split's; a test label never seen in training
cannot be predicted and simply counts as an error.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from kaleido.evaluation.finetune import finetune

Encode = Callable[[Any, np.ndarray, np.ndarray], dict]


class ClassifierHead(nn.Module):
    """Dropout then a linear layer on the pooled ``[CLS]`` output."""

    def __init__(self, hidden_size: int, classes: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(hidden_size, classes)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.linear(self.dropout(pooled))


class LabelSpace:
    """Class names of the train split <-> ids; an unseen name maps to -1."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = sorted(set(names))
        self.ids = {n: i for i, n in enumerate(self.names)}

    def encode(self, names: Sequence[str]) -> np.ndarray:
        return np.array([self.ids.get(n, -1) for n in names], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.names)


def train_recognition(
    model: nn.Module,
    train_store: Any,
    encode: Encode,
    targets: dict[str, Sequence[str]],
    rows: np.ndarray,
    batch_size: int,
    epochs: float,
    lr: float,
    seed: int,
    progress: Callable | None = None,
) -> tuple[nn.Module, dict[str, ClassifierHead], dict[str, LabelSpace], dict]:
    """Fine-tune a copy of ``model`` with one head per target (``{"cr": names, "sub": names}``,
    one name per entry of ``rows``); returns the encoder, heads, label spaces and loss summary."""
    encoder = copy.deepcopy(model)
    spaces = {k: LabelSpace(v) for k, v in targets.items()}
    labels = {k: torch.as_tensor(spaces[k].encode(v)) for k, v in targets.items()}
    heads = {k: ClassifierHead(encoder.hidden_size, len(spaces[k])) for k in targets}
    torch.manual_seed(seed)
    for head in heads.values():
        nn.init.normal_(head.linear.weight, std=0.02)
        nn.init.zeros_(head.linear.bias)

    def loss_fn(batch_idx: np.ndarray) -> torch.Tensor:
        r = rows[batch_idx]
        _, pooled = encoder(encode(train_store, r, r))
        return sum(nn.functional.cross_entropy(heads[k](pooled).float(), labels[k][batch_idx]) for k in heads)

    params = list(encoder.parameters()) + [p for h in heads.values() for p in h.parameters()]
    summary = finetune(
        params,
        [encoder, *heads.values()],
        loss_fn,
        len(rows),
        batch_size,
        epochs,
        lr,
        seed,
        "cr+sub",
        progress,
    )
    return encoder, heads, spaces, summary


@torch.inference_mode()
def predict_recognition(
    encoder: nn.Module,
    heads: dict[str, ClassifierHead],
    spaces: dict[str, LabelSpace],
    store: Any,
    encode: Encode,
    rows: np.ndarray,
    batch_size: int,
) -> dict[str, list[str]]:
    """Predicted class names per head for the store rows (each text with its own image)."""
    encoder.eval()
    out: dict[str, list[str]] = {k: [] for k in heads}
    for b in range(0, len(rows), batch_size):
        r = rows[b : b + batch_size]
        _, pooled = encoder(encode(store, r, r))
        for k, head in heads.items():
            head.eval()
            out[k] += [spaces[k].names[i] for i in head(pooled).argmax(-1).tolist()]
    return out
