"""From a word's attention grid to a Kaleido patch, and from a word to its wordpiece positions.

The grid (h x w attention weights) covers ``region`` (the pixels the captioner saw). It is
resampled bilinearly to a fine raster over the region and normalised to a distribution; the mass
inside any box is then read exactly from its summed-area table (the table is bilinear inside a
raster cell, so fractional box edges cost nothing extra).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Literal

import numpy as np
import torch
from torch.nn import functional as F

from kaleido.aligners.vocab import STOPWORDS, word_spans

Select = Literal["mass", "density", "per_level"]


def upsample(grid: np.ndarray | torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resampling of an (h, w) attention grid to ``size`` = (H, W), normalised to sum 1."""
    t = torch.as_tensor(np.asarray(grid, dtype=np.float32))[None, None]
    if not torch.isfinite(t).all():  # a NaN map would otherwise come out uniform, i.e. a silent guess
        raise ValueError("attention map has non-finite values (a diverged captioner?)")
    up = F.interpolate(t, size=size, mode="bilinear", align_corners=False)[0, 0].clamp_min(0).numpy()
    total = up.sum()
    return up / total if total > 0 else np.full(size, 1.0 / (size[0] * size[1]), dtype=np.float32)


def box_mass(heat: np.ndarray, region: Sequence[float], boxes: np.ndarray) -> np.ndarray:
    """Mass of the distribution ``heat`` (H, W) spread over ``region`` (x1, y1, x2, y2 pixels)
    inside each of ``boxes`` (P, 4 pixels). Parts of a box outside the region hold no mass."""
    rows, cols = heat.shape
    table = np.zeros((rows + 1, cols + 1), dtype=np.float64)
    table[1:, 1:] = heat.astype(np.float64).cumsum(0).cumsum(1)
    x0, y0, x1, y1 = (float(v) for v in region)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    # box edges in raster units, clipped to the region
    bx1 = np.clip((boxes[:, 0] - x0) / max(x1 - x0, 1e-9) * cols, 0, cols)
    bx2 = np.clip((boxes[:, 2] - x0) / max(x1 - x0, 1e-9) * cols, 0, cols)
    by1 = np.clip((boxes[:, 1] - y0) / max(y1 - y0, 1e-9) * rows, 0, rows)
    by2 = np.clip((boxes[:, 3] - y0) / max(y1 - y0, 1e-9) * rows, 0, rows)

    def cum(y: np.ndarray, x: np.ndarray) -> np.ndarray:
        iy, ix = np.minimum(np.floor(y).astype(int), rows - 1), np.minimum(np.floor(x).astype(int), cols - 1)
        fy, fx = y - iy, x - ix
        return ((1 - fy) * (1 - fx) * table[iy, ix] + (1 - fy) * fx * table[iy, ix + 1]
                + fy * (1 - fx) * table[iy + 1, ix] + fy * fx * table[iy + 1, ix + 1])

    mass = cum(by2, bx2) - cum(by1, bx2) - cum(by2, bx1) + cum(by1, bx1)
    return np.clip(mass, 0.0, None)


def density(mass: np.ndarray, region: Sequence[float], boxes: np.ndarray) -> np.ndarray:
    """Each box's share of the attention per unit of its share of ``region``'s area: 1 for a
    uniform map, higher where the attention is sharper than that."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    area = np.clip((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 1e-9, None)
    x1, y1, x2, y2 = (float(v) for v in region)
    return mass / area * max((x2 - x1) * (y2 - y1), 1e-9)


def choose_patches(heat: np.ndarray, region: Sequence[float], boxes: np.ndarray, levels: np.ndarray,
                   candidate_levels: Sequence[int], select: Select = "density") -> list[int]:
    """The patch(es) a heat map points at, among the patches of ``candidate_levels``.

    ``mass``: the one patch holding the most attention (favours the coarsest level);
    ``density``: the most attention per unit of area relative to a uniform map (favours a sharp
    peak at the finest level); ``per_level``: the highest-mass patch of every candidate level.
    """
    levels = np.asarray(levels)
    candidates = np.flatnonzero(np.isin(levels, list(candidate_levels)))
    if candidates.size == 0:
        return []
    mass = box_mass(heat, region, np.asarray(boxes)[candidates])
    if select == "mass":
        return [int(candidates[int(np.argmax(mass))])]
    if select == "density":
        return [int(candidates[int(np.argmax(density(mass, region, np.asarray(boxes)[candidates])))])]
    if select == "per_level":
        out = []
        for level in candidate_levels:
            sel = levels[candidates] == level
            if sel.any():
                out.append(int(candidates[sel][int(np.argmax(mass[sel]))]))
        return out
    raise ValueError(f"unknown patch selection {select!r}; expected mass, density or per_level")


def word_token_positions(text: str, offsets: Sequence[tuple[int, int]]) -> dict[str, list[int]]:
    """Normalised word -> positions of all its wordpieces (every occurrence) in the tokenised text.

    ``offsets`` are the tokenizer's character offsets of
    ``tokenizer(text, add_special_tokens=False)``; a wordpiece belongs to the word whose span
    contains it.
    """
    out: dict[str, list[int]] = {}
    spans = word_spans(text)
    j = 0
    for pos, (start, end) in enumerate(offsets):
        if end <= start:
            continue
        while j < len(spans) and spans[j][2] <= start:
            j += 1
        if j < len(spans) and spans[j][1] <= start and end <= spans[j][2]:
            out.setdefault(spans[j][0], []).append(pos)
    return out


def word_maps(caption_words: Sequence[str], alphas: np.ndarray, grid_hw: tuple[int, int],
              targets: Collection[str], skip_stopwords: bool = True,
              skip_words: Collection[str] = ()) -> dict[str, list[np.ndarray]]:
    """The attention grids of each generated word that an alignment may use: one the description
    holds (``targets``), neither a function word (``skip_stopwords``) nor one of ``skip_words``."""
    maps: dict[str, list[np.ndarray]] = {}
    for word, alpha in zip(caption_words, alphas, strict=True):
        if word in targets and not (skip_stopwords and word in STOPWORDS) and word not in skip_words:
            maps.setdefault(word, []).append(np.asarray(alpha, dtype=np.float32).reshape(grid_hw))
    return maps


def row_alignments(caption_words: Sequence[str], alphas: np.ndarray, grid_hw: tuple[int, int], text: str,
                   offsets: Sequence[tuple[int, int]], region: Sequence[float], boxes: np.ndarray,
                   levels: np.ndarray, candidate_levels: Sequence[int], select: Select = "density",
                   raster: int = 64, skip_stopwords: bool = True,
                   skip_words: Collection[str] = ()) -> list[tuple[int, int]]:
    """``(token_position, patch_index)`` pairs of one row.

    Every generated word that also occurs in the original description (same normalisation) is
    aligned, except the function words (``skip_stopwords``) and ``skip_words`` (normalised words
    of the user's own, e.g. a catalogue's brands); a word generated several times uses the mean
    of its attention maps. Each wordpiece of every occurrence of the word in the description gets
    the chosen patch(es).
    """
    targets = word_token_positions(text, offsets)
    pairs: list[tuple[int, int]] = []
    for word, grids in word_maps(caption_words, alphas, grid_hw, targets, skip_stopwords, skip_words).items():
        heat = upsample(np.mean(grids, axis=0), (raster, raster))
        for patch in choose_patches(heat, region, boxes, levels, candidate_levels, select):
            pairs.extend((pos, patch) for pos in targets[word])
    return sorted(set(pairs))
