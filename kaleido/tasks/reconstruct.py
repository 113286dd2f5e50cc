"""What G2CM and B2CM share: hide the masker's patches of one level, reconstruct their features."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from kaleido.tasks.base import FeatureRegressionHead, Sample, SampleSource, Task, TaskHead, pad_stack


class ReconstructionTask(Task):
    """Subclasses say what a hidden patch's input becomes (:meth:`hide`)."""

    def hide(self, sample: Sample, patches: np.ndarray, source: SampleSource) -> None:
        raise NotImplementedError

    def prepare(self, sample: Sample, rng: np.random.Generator, source: SampleSource) -> None:
        patches = self.planned(sample)
        if patches.size:
            self.hide(sample, patches, source)
        sample.labels[self.name] = {
            "index": patches.astype(np.int64),
            "target": sample.original[patches],
            "valid": np.full(patches.size, sample.matched, dtype=bool),
        }

    def collate(self, labels: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return {f"{self.name}/index": pad_stack([x["index"] for x in labels], 0, torch.long),
                f"{self.name}/target": pad_stack([x["target"] for x in labels], 0.0, torch.float32),
                f"{self.name}/valid": pad_stack([x["valid"] for x in labels], False, torch.bool)}

    def build_head(self, model: Any) -> TaskHead:
        return FeatureRegressionHead(self.name, model.hidden_size, model.feature_dim)
