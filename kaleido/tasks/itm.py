"""``itm``: Image-Text Matching (SPEC section 6) from the pooled ``[CLS]``, 2-way softmax.

A negative replaces the text or the image (a fair coin) with another product's. Products, not
rows: another pose of the same product is never a negative, it shows the very same item.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from kaleido import registry
from kaleido.tasks.base import Sample, SampleSource, Task, TaskHead, accuracy


def match_score(logits: torch.Tensor) -> torch.Tensor:
    """(B,) retrieval score of (B, 2) ITM logits: the log-odds of "match", ``l1 - l0``.

    It ranks as the log-probability of "match" does (SPEC section 9; ``log p = -softplus(l0 - l1)``
    rises with ``l1 - l0``), but in float32 that log-probability is exactly 0.0 for every margin
    above about 17, so a confident positive tied its confident negatives (and ties count against
    the positive); the difference of the logits never saturates.
    """
    logits = logits.float()
    return logits[:, 1] - logits[:, 0]


class ITMHead(TaskHead):
    """Linear layer on the pooled output; class 1 means "the text describes the image"."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.classifier = nn.Linear(hidden_size, 2)

    def logits(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.classifier(pooled)

    def forward(self, sequence, pooled, batch, model):
        logits = self.logits(pooled).float()
        labels = batch["itm/label"]
        return nn.functional.cross_entropy(logits, labels), {"acc": accuracy(logits, labels)}


@registry.tasks.register("itm")
class ITMTask(Task):
    """Does the text describe the image? ``negative_ratio`` of the examples are mismatched."""

    name = "itm"

    def __init__(self, negative_ratio: float = 0.5) -> None:
        if not 0.0 <= negative_ratio < 1.0:
            raise ValueError(f"itm negative_ratio must lie in [0, 1), got {negative_ratio}")
        self.negative_ratio = negative_ratio

    def pair(self, index: int, rng: np.random.Generator, source: SampleSource) -> tuple[int, int] | None:
        if rng.random() >= self.negative_ratio:
            return None
        other = source.other_product(index, rng)
        return (other, index) if rng.random() < 0.5 else (index, other)

    def prepare(self, sample: Sample, rng: np.random.Generator, source: SampleSource) -> None:
        sample.labels[self.name] = {"label": int(sample.matched)}

    def collate(self, labels: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return {"itm/label": torch.tensor([x["label"] for x in labels], dtype=torch.long)}

    def build_head(self, model: Any) -> TaskHead:
        """From the init checkpoint's next-sentence head when it has one: its "B follows A" (class
        0) becomes "the text describes the image" (class 1), as both read the pooled ``[CLS]``."""
        from kaleido.models.kaleido import copy_pretrained

        head = ITMHead(model.hidden_size)
        copy_pretrained(head, model, {"classifier.weight": "seq_relationship.weight",
                                      "classifier.bias": "seq_relationship.bias"}, "itm", rows=[1, 0])
        return head
