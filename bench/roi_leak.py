"""How far a hidden patch's features are a linear function of the visible ones, per extraction mode.

    .venv/bin/python bench/roi_leak.py [--photos 16] [--size 128]

A quality study, not a speed benchmark (``run_all.py`` skips it; its table is kept in
docs/PERFORMANCE.md). On real photos (``../shared/data/myntra-500``, the whole photo as the
region, the 55 Kaleido patches, the offline MobileNetV2) it fits one ridge map from the visible
patches' features to the features an AKPM task hides, on the first half of the photos, and
reports the median relative error on the other half: B2CM's three blanked 5x5 patches, G2CM's two
colour 4x4 patches, RR's upright 1x1 region (one 3x3 patch, CP's, left out as camouflaged). 0 means
a linear layer recovers the answer exactly; a single shared map (``roi_maps = "shared"``) does.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

MYNTRA = Path(__file__).resolve().parents[2] / "shared" / "data" / "myntra-500" / "images"
GRIDS = (1, 2, 3, 4, 5)
B2CM = [30, 37, 44]  # three 5x5 patches
G2CM = [18, 25]  # two 4x4 patches
CP = 8  # the camouflaged 3x3 patch, visible to no fit
CASES = {"b2cm": ([i for i in range(5, 55) if i not in B2CM and i != CP], B2CM),
         "g2cm": ([i for i in range(1, 55) if i not in G2CM and i != CP], G2CM),
         "rr": (list(range(1, 55)), [0])}


def ridge_error(features: np.ndarray, visible: Sequence[int], hidden: Sequence[int], train: Sequence[int],
                test: Sequence[int]) -> float:
    """Median relative error, on the ``test`` photos, of the best linear map (fitted on ``train``)
    from the visible patches' features (B, P, D) to the hidden ones'."""
    x = np.concatenate([features[i][list(visible)].T for i in train])
    y = np.concatenate([features[i][list(hidden)].T for i in train])
    w = np.linalg.solve(x.T @ x + 1e-3 * np.eye(len(visible)), x.T @ y)
    return float(np.median([np.linalg.norm(features[i][list(visible)].T @ w - features[i][list(hidden)].T)
                            / np.linalg.norm(features[i][list(hidden)].T) for i in test]))


def errors(features: np.ndarray) -> dict[str, float]:
    """Every task's error, fitted on the first half of the photos and measured on the rest."""
    half = len(features) // 2
    return {task: ridge_error(features, visible, hidden, range(half), range(half, len(features)))
            for task, (visible, hidden) in CASES.items()}


def main() -> None:
    from PIL import Image

    from kaleido import registry
    from kaleido.patchers.layout import grid_layout

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=16)
    ap.add_argument("--size", type=int, default=128)
    args = ap.parse_args()
    paths = sorted(MYNTRA.rglob("*.jpg"))[: args.photos]
    images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    boxes = [grid_layout([0, 0, w, h], w, h, GRIDS).boxes for h, w, _ in (im.shape for im in images)]
    print(f"{len(images)} myntra-500 photos, MobileNetV2 at {args.size} px, ridge fit on the first half\n")
    print("| extraction | B2CM | G2CM | RR |\n|---|---|---|---|")
    ways = (("roi, one shared map", "roi", "shared"), ("roi, a pass per level", "roi", "level"),
            ("crop (the paper's)", "crop", "level"))
    for label, mode, maps in ways:
        net = registry.backbones.get("mobilenet_v2")(mode=mode, image_size=args.size, device="cpu",
                                                    roi_maps=maps)
        e = errors(net.extract(images, boxes, grids=GRIDS).numpy())
        print(f"| {label} | {e['b2cm']:.3f} | {e['g2cm']:.3f} | {e['rr']:.3f} |")


if __name__ == "__main__":
    main()
