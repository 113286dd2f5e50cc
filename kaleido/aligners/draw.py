"""Drawing alignments on an image (what `kaleido show --alignments` adds to the layout picture)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from kaleido.aligners.heatmap import word_token_positions

LINE_PT = 11  # one 8-pt label with its box, in points


def words_and_boxes(text: str, offsets: Sequence[tuple[int, int]], pairs: Sequence[tuple[int, int]],
                    boxes: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(word, patch box) for every aligned word of a row: the token positions of ``pairs`` mapped
    back to the description's words (a word whose wordpieces share a patch is listed once)."""
    token_word = {pos: word for word, positions in word_token_positions(text, offsets).items()
                  for pos in positions}
    seen: dict[tuple[str, int], np.ndarray] = {}
    for token, patch in pairs:
        word = token_word.get(token)
        if word is not None and (word, patch) not in seen:
            seen[(word, patch)] = np.asarray(boxes[patch], dtype=float)
    return [(word, box) for (word, _patch), box in seen.items()]


def draw_alignments(ax: Any, image: np.ndarray, words_and_boxes: Sequence[tuple[str, np.ndarray]],
                    heatmap: tuple[np.ndarray, Sequence[float]] | None = None) -> None:
    """Draw ``image`` with each aligned word written next to its patch box.

    ``heatmap`` = (attention grid (h, w), region x1, y1, x2, y2): a word's attention, resampled
    over the region it covers and overlaid in a translucent colour map.
    """
    from matplotlib import patches as mpatches

    ax.imshow(image)
    if heatmap is not None:
        from kaleido.aligners.heatmap import upsample

        grid, region = heatmap
        x1, y1, x2, y2 = (float(v) for v in region)
        heat = upsample(np.asarray(grid), (max(2, int(round(y2 - y1))), max(2, int(round(x2 - x1)))))
        ax.imshow(heat / max(float(heat.max()), 1e-12), extent=(x1, x2, y2, y1), cmap="jet", alpha=0.45,
                  interpolation="bilinear")
    colours = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45"]
    # patches of different levels can share a top-left corner (every grid's first cell does):
    # the labels anchored there are stacked one text line apart instead of drawn on each other
    at_corner: dict[tuple[int, int], int] = {}
    for k, (word, box) in enumerate(words_and_boxes):
        x1, y1, x2, y2 = (float(v) for v in box)
        colour = colours[k % len(colours)]
        ax.add_patch(mpatches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour,
                                        linewidth=2))
        corner = (round(x1), round(y1))
        below = at_corner.get(corner, 0)
        at_corner[corner] = below + 1
        ax.annotate(word, (x1, y1), xytext=(2, -2 - LINE_PT * below), textcoords="offset points",
                    color="white", fontsize=8, va="top", ha="left",
                    bbox={"facecolor": colour, "alpha": 0.8, "pad": 1, "edgecolor": "none"})
    ax.set_xlim(0, image.shape[1])
    ax.set_ylim(image.shape[0], 0)
    ax.set_axis_off()
