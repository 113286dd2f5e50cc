"""No saliency: the whole image is the region ("Kaleido" without SOD in Table 4)."""

from __future__ import annotations

import numpy as np

from kaleido import registry
from kaleido.sod.box import Saliency


@registry.sod.register("none")
class NoSaliency(Saliency):
    """Whole image as foreground: the patcher splits the full frame."""

    def __init__(self) -> None:
        self.margin = 0.0

    def mask(self, image: np.ndarray) -> np.ndarray:
        return np.ones(image.shape[:2], dtype=bool)
