"""Box IoU of a SOD component against ground-truth masks: the number reported in docs/SOD.md."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kaleido.sod.box import Saliency, box_iou, foreground_box


def sod_box_iou(sod: Saliency, images: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> dict:
    """Mean / median IoU between the SOD box and the true mask's box (both without margin).

    Images whose true mask is empty are left out; an image where the SOD finds nothing scores
    the IoU of the whole-image fallback, as it would in ``prepare``.
    """
    ious, fallbacks = [], 0
    for image, mask in zip(images, masks, strict=True):
        truth, ok = foreground_box(np.asarray(mask) > 0, margin=0.0)
        if not ok:
            continue
        pred, found = foreground_box(sod.mask(image), margin=0.0)
        fallbacks += not found
        ious.append(box_iou(pred, truth))
    arr = np.asarray(ious, dtype=np.float64)
    return {"n": int(arr.size), "mean_iou": float(arr.mean()) if arr.size else float("nan"),
            "median_iou": float(np.median(arr)) if arr.size else float("nan"), "fallbacks": fallbacks}
