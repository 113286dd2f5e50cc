"""CR and SUB: classification heads on the pooled ``[CLS]`` (dropout 0.1, linear), fine-tuned.

As the authors' scripts: the pooled output, dropout 0.1, one linear layer per task (``pooling =
"mean"`` or ``"text"`` reads a masked mean of the sequence instead, see
:mod:`kaleido.evaluation.pooling`).
The fresh heads train at ``head_lr``, the pre-trained encoder at ``lr``; with ``probe_steps`` the
heads are first fitted alone on the frozen encoder's summaries (LP-FT, see
:mod:`kaleido.evaluation.finetune`). Called with both targets, category and sub-category are
fine-tuned *jointly* on one copy of the pre-trained encoder (the loss is the sum of both
cross-entropies; ``[eval] joint_recognition = true``, the default, half the cost on a CPU); called
once per target, each task gets its own copy, as the paper's two tasks (``full.toml``). The
label space is the train split's; a test label never seen in training cannot be predicted and
simply counts as an error.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from kaleido.evaluation.finetune import finetune, probe
from kaleido.evaluation.pooling import check_pooling, pool, pooled_features

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
    head_lr: float | None = None,
    pooling: str = "cls",
    probe_steps: int = 0,
    name: str = "cr+sub",
) -> tuple[nn.Module, dict[str, ClassifierHead], dict[str, LabelSpace], dict]:
    """Fine-tune a copy of ``model`` (at ``lr``) with one fresh head per target (at ``head_lr``,
    default ``lr``; ``targets`` is ``{"cr": names, "sub": names}``, one name per entry of ``rows``);
    returns the encoder, heads, label spaces and loss summary; ``name`` labels its progress bar."""
    check_pooling(pooling)
    encoder = copy.deepcopy(model)
    spaces = {k: LabelSpace(v) for k, v in targets.items()}
    labels = {k: torch.as_tensor(spaces[k].encode(v)) for k, v in targets.items()}
    heads = {k: ClassifierHead(encoder.hidden_size, len(spaces[k])) for k in targets}
    torch.manual_seed(seed)
    for head in heads.values():
        nn.init.normal_(head.linear.weight, std=0.02)
        nn.init.zeros_(head.linear.bias)

    head_params = [p for h in heads.values() for p in h.parameters()]
    probed: dict[str, float] = {}
    if probe_steps > 0:
        cached = pooled_features(encoder, train_store, encode, rows, rows, batch_size, pooling)

        def probe_loss() -> torch.Tensor:
            return sum(nn.functional.cross_entropy(heads[k](cached), labels[k]) for k in heads)

        probed = probe(head_params, list(heads.values()), probe_loss, probe_steps,
                       lr if head_lr is None else head_lr, seed, name)

    def loss_fn(batch_idx: np.ndarray) -> torch.Tensor:
        r = rows[batch_idx]
        pooled = pool(encoder, encode(train_store, r, r), pooling)
        return sum(nn.functional.cross_entropy(heads[k](pooled).float(), labels[k][batch_idx]) for k in heads)

    summary = finetune(
        encoder.parameters(),
        [encoder, *heads.values()],
        loss_fn,
        len(rows),
        batch_size,
        epochs,
        lr,
        seed,
        name,
        progress,
        head_params=head_params,
        head_lr=head_lr,
    )
    return encoder, heads, spaces, {**probed, **summary}


@torch.inference_mode()
def predict_recognition(
    encoder: nn.Module,
    heads: dict[str, ClassifierHead],
    spaces: dict[str, LabelSpace],
    store: Any,
    encode: Encode,
    rows: np.ndarray,
    batch_size: int,
    pooling: str = "cls",
) -> dict[str, list[str]]:
    """Predicted class names per head for the store rows (each text with its own image)."""
    encoder.eval()
    out: dict[str, list[str]] = {k: [] for k in heads}
    for b in range(0, len(rows), batch_size):
        r = rows[b : b + batch_size]
        pooled = pool(encoder, encode(store, r, r), pooling)
        for k, head in heads.items():
            head.eval()
            out[k] += [spaces[k].names[i] for i in head(pooled).argmax(-1).tolist()]
    return out
