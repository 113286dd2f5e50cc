"""``amlm``: Aligned Masked Language Modeling (SPEC section 6).

The masker picks the text positions (AGM prefers aligned tokens); this task corrupts them the
BERT way, 80% ``[MASK]``, 10% a random token, 10% unchanged, and predicts the original token
over the vocabulary with a decoder tied to the word embeddings.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from kaleido import registry
from kaleido.tasks.base import (
    Sample,
    SampleSource,
    Task,
    TaskHead,
    accuracy,
    masked_slots,
    pad_stack,
    weighted_mean,
    zero_loss,
)

IGNORE = -100


class MLMHead(TaskHead):
    """BERT's prediction head: dense, GELU, LayerNorm, then the tied word-embedding decoder."""

    def __init__(self, hidden_size: int, vocab_size: int, eps: float = 1e-12) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.norm = nn.LayerNorm(hidden_size, eps=eps)
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def transform(self, hidden: torch.Tensor) -> torch.Tensor:
        """Dense, GELU, LayerNorm: the states the tied decoder reads (..., H) -> (..., H)."""
        return self.norm(nn.functional.gelu(self.dense(hidden)))

    def logits(self, hidden: torch.Tensor, model: Any) -> torch.Tensor:
        """Vocabulary logits of any hidden states (..., H) -> (..., V)."""
        return nn.functional.linear(self.transform(hidden), model.word_embeddings.weight, self.bias)

    def loss_items(self, batch):
        """The masked tokens with a label (a negative's are not)."""
        return (batch["amlm/labels"] != IGNORE).sum()

    def forward(self, sequence, pooled, batch, model):
        positions, labels = batch["amlm/positions"], batch["amlm/labels"]
        rows, slots, weight = masked_slots(labels != IGNORE)
        if rows.numel() == 0:
            # every head parameter in the graph (DDP without find_unused_parameters needs them all)
            return zero_loss(*self.parameters()), {"acc": sequence.new_zeros(())}
        logits = self.logits(sequence[rows, positions[rows, slots]], model).float()
        target = labels[rows, slots]
        per_slot = nn.functional.cross_entropy(logits, target, ignore_index=IGNORE, reduction="none")
        loss = weighted_mean(per_slot, weight)
        return loss, {"acc": accuracy(logits, target, weight)}


@registry.tasks.register("amlm")
class AMLMTask(Task):
    """Predict the original tokens at the masked text positions (cross-entropy over the vocabulary)."""

    name = "amlm"
    hides_tokens = True

    def __init__(self, mask_prob: float = 0.8, random_prob: float = 0.1) -> None:
        if mask_prob < 0 or random_prob < 0 or mask_prob + random_prob > 1:
            raise ValueError(f"amlm: mask_prob, random_prob must be >= 0 with sum <= 1, "
                             f"got {mask_prob}, {random_prob}")
        self.mask_prob = mask_prob
        self.random_prob = random_prob

    def prepare(self, sample: Sample, rng: np.random.Generator, source: SampleSource) -> None:
        chosen = sample.plan.tokens[sample.plan.tokens < sample.n_tokens] + 1  # +1: after [CLS]
        original = sample.input_ids[chosen].copy()
        draw = rng.random(chosen.size)
        replace = rng.choice(source.random_token_ids, size=chosen.size)
        to_mask = draw < self.mask_prob
        to_random = (draw >= self.mask_prob) & (draw < self.mask_prob + self.random_prob)
        sample.input_ids[chosen[to_mask]] = source.mask_token_id
        sample.input_ids[chosen[to_random]] = replace[to_random]
        labels = original if sample.matched else np.full_like(original, IGNORE)
        sample.labels[self.name] = {"positions": chosen.astype(np.int64), "labels": labels.astype(np.int64)}

    def collate(self, labels: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return {"amlm/positions": pad_stack([x["positions"] for x in labels], 0, torch.long),
                "amlm/labels": pad_stack([x["labels"] for x in labels], IGNORE, torch.long)}

    def build_head(self, model: Any) -> TaskHead:
        """BERT's MLM head, from the init checkpoint's ``cls.predictions`` when it has one."""
        from kaleido.models.kaleido import copy_pretrained

        head = MLMHead(model.hidden_size, model.vocab_size)
        copy_pretrained(head, model, {"dense.weight": "predictions.transform.dense.weight",
                                      "dense.bias": "predictions.transform.dense.bias",
                                      "norm.weight": "predictions.transform.LayerNorm.weight",
                                      "norm.bias": "predictions.transform.LayerNorm.bias",
                                      "bias": "predictions.bias"}, "amlm")
        return head
