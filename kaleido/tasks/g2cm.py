"""``g2cm``: Grey-to-Colour Modeling, AKPM level IV (SPEC section 6).

The masker's 4x4 patches (2 by default) show the store's feature of the greyed patch; the head
reconstructs the colour feature (KL over softmaxed feature dimensions).
"""

from __future__ import annotations

import numpy as np

from kaleido import registry
from kaleido.tasks.base import Sample, SampleSource
from kaleido.tasks.reconstruct import ReconstructionTask


@registry.tasks.register("g2cm")
class G2CMTask(ReconstructionTask):
    """Reconstruct the colour feature of the greyed 4x4 patches."""

    name = "g2cm"
    grid = 4
    hides_patches = True

    def __init__(self) -> None:
        pass

    def hide(self, sample: Sample, patches: np.ndarray, source: SampleSource) -> None:
        sample.features[patches] = source.store.grey(sample.image_row)[patches - self.start]
