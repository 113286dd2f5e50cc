"""Alignment precision against ground-truth part boxes, next to a random-patch baseline.

An item is one (row, part word of the description, chosen patch): a part word of the synthetic
side file whose wordpieces the aligner paired with a patch. It is a hit when the patch box
overlaps (positive intersection) one of the drawn instances of that part. The baselines are
exact expectations, not samples: the hit rate of a patch drawn uniformly from the same Kaleido
level as the chosen one (a fair comparison whatever level the selection favours), and from all
candidate levels. A stricter variant counts a hit only when the patch's centre lies inside one of
the instances (a big patch merely touching a big part does not count), with its own same-level
baseline.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kaleido.aligners.heatmap import word_token_positions


def overlaps(patches: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(P,) bool: does each patch box (P, 4) intersect any target box (T, 4) with positive area?"""
    p = np.asarray(patches, dtype=np.float64).reshape(-1, 1, 4)
    t = np.asarray(targets, dtype=np.float64).reshape(1, -1, 4)
    w = np.minimum(p[..., 2], t[..., 2]) - np.maximum(p[..., 0], t[..., 0])
    h = np.minimum(p[..., 3], t[..., 3]) - np.maximum(p[..., 1], t[..., 1])
    return ((w > 0) & (h > 0)).any(axis=1)


def centres_inside(patches: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(P,) bool: does each patch box's centre lie inside any target box (half-open)?"""
    p = np.asarray(patches, dtype=np.float64).reshape(-1, 1, 4)
    t = np.asarray(targets, dtype=np.float64).reshape(1, -1, 4)
    cx, cy = (p[..., 0] + p[..., 2]) / 2, (p[..., 1] + p[..., 3]) / 2
    return ((t[..., 0] <= cx) & (cx < t[..., 2]) & (t[..., 1] <= cy) & (cy < t[..., 3])).any(axis=1)


def precision(pairs: Sequence[Sequence[tuple[int, int]]], texts: Sequence[str],
              offsets: Sequence[Sequence[tuple[int, int]]], boxes: Sequence[np.ndarray], levels: np.ndarray,
              parts: Sequence[Sequence[dict]], candidate_levels: Sequence[int]) -> dict:
    """Precision of every row's pairs on its part words.

    ``parts[i]`` is row i's list of ``{"word", "boxes"}`` (the synthetic side file); ``boxes[i]``
    its (P, 4) patch boxes in the same pixel frame; ``offsets[i]`` the tokenizer offsets of
    ``texts[i]`` (no special tokens).
    """
    levels = np.asarray(levels)
    cands = np.flatnonzero(np.isin(levels, list(candidate_levels)))
    hits = items = centre_hits = 0
    same_level = any_level = centre_same_level = 0.0
    part_words = aligned_words = 0
    for row_pairs, text, offs, row_boxes, row_parts in zip(pairs, texts, offsets, boxes, parts, strict=True):
        by_token: dict[int, set[int]] = {}
        for t, p in row_pairs:
            by_token.setdefault(t, set()).add(p)
        positions = word_token_positions(text, offs)
        row_boxes = np.asarray(row_boxes, dtype=np.float64)
        for part in row_parts:
            tokens = positions.get(part["word"])
            if not tokens:
                continue
            part_words += 1
            chosen = set().union(*(by_token.get(t, set()) for t in tokens))
            if not chosen:
                continue
            aligned_words += 1
            gt = np.asarray(part.get("boxes") or [part["box"]], dtype=np.float64)
            hit_all = overlaps(row_boxes, gt)
            centre_all = centres_inside(row_boxes, gt)
            for patch in sorted(chosen):
                items += 1
                hits += bool(hit_all[patch])
                centre_hits += bool(centre_all[patch])
                same = np.flatnonzero(levels == levels[patch])
                same_level += float(hit_all[same].mean())
                centre_same_level += float(centre_all[same].mean())
                any_level += float(hit_all[cands].mean()) if cands.size else 0.0
    n = max(items, 1)
    return {"items": items, "precision": hits / n, "random_same_level": same_level / n,
            "random_any_level": any_level / n, "part_words": part_words, "aligned_part_words": aligned_words,
            "ratio_vs_random": (hits / n) / (same_level / n) if same_level > 0 else None,
            "precision_centre": centre_hits / n, "random_centre_same_level": centre_same_level / n,
            "ratio_centre_vs_random": centre_hits / centre_same_level if centre_same_level > 0 else None}
