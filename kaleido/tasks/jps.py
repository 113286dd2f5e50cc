"""``jps``: Jigsaw Puzzle Solving, AKPM level II (SPEC section 6).

The four 2x2 patch features are shuffled by one of the 4! = 24 permutations while their
position features stay: slot ``k`` shows the content of patch ``PERMUTATIONS[label][k]``.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import torch

from kaleido import registry
from kaleido.tasks.base import LevelClassifierHead, Sample, SampleSource, Task, TaskHead

PERMUTATIONS: np.ndarray = np.array(list(itertools.permutations(range(4))), dtype=np.int64)  # (24, 4)


@registry.tasks.register("jps")
class JPSTask(Task):
    """Predict which of the 24 permutations shuffled the 2x2 patches."""

    name = "jps"
    grid = 2

    def __init__(self) -> None:
        pass

    def prepare(self, sample: Sample, rng: np.random.Generator, source: SampleSource) -> None:
        label = int(rng.integers(len(PERMUTATIONS)))
        block = slice(self.start, self.start + self.count)
        sample.features[block] = sample.features[block][PERMUTATIONS[label]]
        sample.labels[self.name] = {"label": label}

    def collate(self, labels: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return {"jps/label": torch.tensor([x["label"] for x in labels], dtype=torch.long)}

    def build_head(self, model: Any) -> TaskHead:
        return LevelClassifierHead(self.name, self.start, self.count, model.hidden_size, len(PERMUTATIONS))
