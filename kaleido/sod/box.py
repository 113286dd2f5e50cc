"""From a foreground mask to the box the patcher splits; the no-foreground fallback lives here.

Every SOD component only decides ``mask(image)``; the box, its margin and the fallback to the
whole image (reported as ``found=False`` so that callers count it) are the same for all.
"""

from __future__ import annotations

import numpy as np


def foreground_box(mask: np.ndarray, margin: float = 0.05,
                   min_area: float = 0.001) -> tuple[np.ndarray, bool]:
    """(x1, y1, x2, y2) pixel box of ``mask`` grown by ``margin`` x its size, and whether it was found.

    A mask covering less than ``min_area`` of the image counts as no foreground: the whole image
    is returned with ``found=False``.
    """
    if mask.ndim != 2:
        raise ValueError(f"a foreground mask must be 2-d (H x W), got shape {mask.shape}")
    h, w = mask.shape
    whole = np.array([0, 0, w, h], dtype=np.float32)
    if mask.sum() < max(1.0, min_area * h * w):
        return whole, False
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    x1, x2 = float(cols[0]), float(cols[-1] + 1)
    y1, y2 = float(rows[0]), float(rows[-1] + 1)
    mx, my = margin * (x2 - x1), margin * (y2 - y1)
    box = np.array([max(0.0, x1 - mx), max(0.0, y1 - my), min(float(w), x2 + mx), min(float(h), y2 + my)],
                   dtype=np.float32)
    return box, True


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two x1, y1, x2, y2 boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


class Saliency:
    """Base of the SOD components: subclasses implement ``mask``; ``box`` is shared."""

    margin: float = 0.05

    def mask(self, image: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def box(self, image: np.ndarray) -> tuple[np.ndarray, bool]:
        """The region to split: the foreground box with a margin, or the whole image (found=False)."""
        return foreground_box(self.mask(image), self.margin)
