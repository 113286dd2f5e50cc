"""``rr``: Rotation Recognition, AKPM level I (SPEC section 6).

The 1x1 patch's feature is swapped for the store's feature of the same patch rotated by 90, 180
or 270 degrees (computed from pixels at preparation time, as the authors did); label 0 keeps it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from kaleido import registry
from kaleido.tasks.base import LevelClassifierHead, Sample, SampleSource, Task, TaskHead


@registry.tasks.register("rr")
class RRTask(Task):
    """Predict the rotation (0/90/180/270 degrees) of the 1x1 patch: 4-way."""

    name = "rr"
    grid = 1

    def __init__(self) -> None:
        pass

    def prepare(self, sample: Sample, rng: np.random.Generator, source: SampleSource) -> None:
        rotation = int(rng.integers(4))
        if rotation:
            sample.features[self.start] = source.store.rotations(sample.image_row)[rotation - 1]
        sample.labels[self.name] = {"label": rotation}

    def collate(self, labels: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return {"rr/label": torch.tensor([x["label"] for x in labels], dtype=torch.long)}

    def build_head(self, model: Any) -> TaskHead:
        return LevelClassifierHead(self.name, self.start, self.count, model.hidden_size, 4)
