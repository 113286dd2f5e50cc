"""``cp``: Camouflage Prediction, AKPM level III (SPEC section 6).

One 3x3 patch is replaced by the same-position 3x3 patch of another product. Which one is the
masker's 3x3 choice (so AGM camouflages an aligned patch first); a uniform position when the
masker chose none. The donor is drawn among rows of a different product.

Same position, because the paper says only "a patch of the same scale from another product": the
donor's patch from the same cell of its own saliency box is the one whose content (a sleeve, a
collar, a background corner) is plausible at that place, so the head must tell products apart,
not spot a patch that is out of place (a shortcut).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from kaleido import registry
from kaleido.tasks.base import LevelClassifierHead, Sample, SampleSource, Task, TaskHead


@registry.tasks.register("cp")
class CPTask(Task):
    """Predict which of the 9 patches of the 3x3 level is camouflaged: 9-way."""

    name = "cp"
    grid = 3
    hides_patches = True
    hides_at_most = 1  # one camouflaged patch: a second planned one would stay visible

    def __init__(self) -> None:
        pass

    def prepare(self, sample: Sample, rng: np.random.Generator, source: SampleSource) -> None:
        planned = self.planned(sample)
        position = int(planned[0]) - self.start if planned.size else int(rng.integers(self.count))
        donor = source.other_product(sample.image_row, rng)
        patch = self.start + position
        sample.features[patch] = source.store.features(donor)[patch]
        sample.labels[self.name] = {"label": position, "donor": donor}

    def collate(self, labels: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return {"cp/label": torch.tensor([x["label"] for x in labels], dtype=torch.long)}

    def build_head(self, model: Any) -> TaskHead:
        return LevelClassifierHead(self.name, self.start, self.count, model.hidden_size, self.count)
