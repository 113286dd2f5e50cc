"""Draw a layout on its image (matplotlib): the saliency box and every level's grid.

``draw_layout`` works on any axes so that other figures (the aligner's token-to-patch
alignments) can start from the same picture.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kaleido.patchers.layout import Layout

LEVEL_COLOURS = ("#e41a1c", "#377eb8", "#4daf4a", "#984ea3", "#ff7f00", "#a65628", "#f781bf", "#999999")


def draw_layout(ax: Any, image: np.ndarray, layout: Layout, fg_box: np.ndarray | None,
                level: int | None = None, mask: np.ndarray | None = None, grids: bool = True) -> None:
    """The image, the saliency box (dashed) and the grid of ``level`` (1-based), or of every level.

    ``mask`` (H x W bool) is tinted red; ``grids=False`` draws the box and mask alone.
    """
    from matplotlib.patches import Rectangle

    ax.imshow(image)
    if mask is not None:
        overlay = np.zeros((*mask.shape, 4), dtype=np.float32)
        overlay[mask] = (1.0, 0.0, 0.0, 0.25)
        ax.imshow(overlay)
    levels = [] if not grids else range(1, len(layout.grids) + 1) if level is None else [level]
    for lv in levels:
        colour = LEVEL_COLOURS[(lv - 1) % len(LEVEL_COLOURS)]
        width = max(0.6, 2.4 - 0.4 * (lv - 1)) if level is None else 1.2
        for x1, y1, x2, y2 in layout.boxes[layout.level_slice(lv)]:
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linewidth=width))
    if fg_box is not None:
        x1, y1, x2, y2 = (float(v) for v in fg_box)
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="yellow", linewidth=2.0,
                               linestyle="--"))
    ax.set_xlim(0, image.shape[1])
    ax.set_ylim(image.shape[0], 0)
    ax.set_xticks([])
    ax.set_yticks([])


def layout_figure(image: np.ndarray, layout: Layout, fg_box: np.ndarray | None, found: bool = True,
                  mask: np.ndarray | None = None, title: str = "") -> Any:
    """One panel with the saliency mask and box, then one panel per level (grid g x g)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = 1 + len(layout.grids)
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 2.6 * image.shape[0] / image.shape[1] + 0.6),
                             squeeze=False)
    draw_layout(axes[0, 0], image, layout, fg_box, mask=mask, grids=False)
    axes[0, 0].set_title("saliency box" if found else "no foreground: whole image", fontsize=9)
    for lv, g in enumerate(layout.grids, start=1):
        draw_layout(axes[0, lv], image, layout, fg_box, level=lv)
        axes[0, lv].set_title(f"level {lv}: {g}x{g}", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
