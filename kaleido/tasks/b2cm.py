"""``b2cm``: Blank-to-Colour Modeling, AKPM level V (SPEC section 6).

The masker's 5x5 patches (3 by default) are zeroed; the head reconstructs their feature (KL over
softmaxed feature dimensions). The 5-d position and the level embedding still say where they are.
"""

from __future__ import annotations

import numpy as np

from kaleido import registry
from kaleido.tasks.base import Sample, SampleSource
from kaleido.tasks.reconstruct import ReconstructionTask


@registry.tasks.register("b2cm")
class B2CMTask(ReconstructionTask):
    """Reconstruct the feature of the blanked 5x5 patches."""

    name = "b2cm"
    grid = 5
    hides_patches = True

    def __init__(self) -> None:
        pass

    def hide(self, sample: Sample, patches: np.ndarray, source: SampleSource) -> None:
        sample.features[patches] = 0.0
