"""Turning whatever pixels a file holds into the H x W x 3 uint8 RGB every stage expects."""

from __future__ import annotations

import numpy as np

from kaleido.data.rows import BadRow

MIN_SIDE = 8  # smaller than this cannot be split into 5 x 5 patches of at least one pixel


def to_rgb(array: np.ndarray, index: int) -> np.ndarray:
    """Grey (H, W) or (H, W, 1) is replicated, RGBA is composited on white; anything else is a BadRow.

    White, because product photos are shot on white: dropping alpha would turn a transparent
    background black and make it look like part of the product to saliency detection.
    """
    a = np.asarray(array)
    if a.dtype != np.uint8:
        raise BadRow(index, f"image dtype {a.dtype}, expected uint8")
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise BadRow(index, f"image shape {tuple(a.shape)}, expected H x W x 3 (or grey / RGBA)")
    if min(a.shape[0], a.shape[1]) < MIN_SIDE:
        raise BadRow(index, f"image {a.shape[1]}x{a.shape[0]} is smaller than {MIN_SIDE} pixels")
    if a.shape[2] == 1:
        return np.ascontiguousarray(np.repeat(a, 3, axis=2))
    if a.shape[2] == 4:
        alpha = a[:, :, 3:4].astype(np.uint16)
        rgb = (a[:, :, :3].astype(np.uint16) * alpha + 255 * (255 - alpha) + 127) // 255
        return rgb.astype(np.uint8)
    return np.ascontiguousarray(a)
