"""How far a hidden patch's features are a linear function of the visible ones, per extraction mode.

    .venv/bin/python bench/roi_leak.py [--photos 16] [--size 128]

A quality study, not a speed benchmark (``run_all.py`` skips it; its table is kept in
docs/PERFORMANCE.md). On real photos (``../shared/data/myntra-500``, the whole photo as the
region, the 55 Kaleido patches, the offline MobileNetV2) it fits one ridge map from the visible
patches' features to the features an AKPM task hides, on the first half of the photos, and
reports the median relative error on the other half: B2CM's three blanked 5x5 patches, G2CM's two
colour 4x4 patches, RR's upright 1x1 region (one 3x3 patch, CP's, left out as camouflaged). 0 means
a linear layer recovers the answer exactly; a single shared map (``roi_maps = "shared"``) does.

A second table asks whether JPS's answer is in the 2x2 features' *positions* rather than their
content: on content-free images (smoothed noise cut from the middle of a larger field, so nothing
in the pixels says where a quadrant was), a linear probe is fitted from a 2x2 patch's feature to
its slot, and the 24 permutations of a shuffled image's four features are scored with it. Chance
is 25% (slot) and 4.2% (permutation); above that, JPS can be solved without looking at the image.
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


def noise_images(n: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """Smooth random colour fields with no position in them: the middle of a field twice as large."""
    from PIL import Image

    rng, out = np.random.default_rng(seed), []
    for _ in range(n):
        coarse = rng.integers(0, 256, (int(rng.integers(4, 13)),) * 2 + (3,), dtype=np.uint8)
        field = np.asarray(Image.fromarray(coarse).resize((2 * size, 2 * size), Image.BICUBIC))
        out.append(np.ascontiguousarray(field[size // 2:size // 2 + size, size // 2:size // 2 + size]))
    return out


def jigsaw_probe(quadrants: np.ndarray, train: int) -> tuple[float, float]:
    """(slot accuracy, permutation accuracy) on the images after ``train`` of a ridge probe from a
    2x2 patch's feature to its slot, fitted on the first ``train`` images; ``quadrants`` (N, 4, D)."""
    from itertools import permutations

    n, _, d = quadrants.shape
    x = quadrants[:train].reshape(-1, d)
    mean, scale = x.mean(0), x.std(0) + 1e-6
    x = (x - mean) / scale
    y = np.tile(np.eye(4), (train, 1))
    w = np.linalg.solve(x.T @ x + 10.0 * np.eye(d), x.T @ y)
    scores = ((quadrants[train:] - mean) / scale) @ w  # (M, slot k, original slot)
    slot = float((scores.argmax(-1) == np.arange(4)).mean())
    perms = np.array(list(permutations(range(4))))
    rng, hits = np.random.default_rng(1), 0
    for s in scores:
        label = int(rng.integers(len(perms)))
        shuffled = s[perms[label]]  # slot k now shows quadrant perms[label][k]
        fit = [shuffled[np.arange(4), p].sum() for p in perms]
        hits += int(np.argmax(fit) == label)
    return slot, hits / len(scores)


def main() -> None:
    from PIL import Image

    from kaleido import registry
    from kaleido.patchers.layout import grid_layout

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=16)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--noise", type=int, default=120, help="content-free images for the jigsaw probe")
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

    noise = noise_images(args.noise, args.size)
    grid = [grid_layout([0, 0, args.size, args.size], args.size, args.size, GRIDS).boxes] * len(noise)
    train = 2 * len(noise) // 3
    print(f"\n{len(noise)} content-free images, a linear probe of the 2x2 slot fitted on {train}\n")
    print("| extraction | slot from one feature (chance 25%) | permutation (chance 4.2%) |\n|---|---|---|")
    ways = (("roi, 2x2 patches passed one by one (default)", "roi", "level", [2]),
            ("roi, 2x2 pooled from its level's pass", "roi", "level", []),
            ("roi, one shared map", "roi", "shared", [2]), ("crop (the paper's)", "crop", "level", [2]))
    for label, mode, maps, separate in ways:
        net = registry.backbones.get("mobilenet_v2")(mode=mode, image_size=args.size, device="cpu",
                                                    roi_maps=maps, roi_separate=separate)
        slot, perm = jigsaw_probe(net.extract(noise, grid, grids=GRIDS).numpy()[:, 1:5], train)
        print(f"| {label} | {100 * slot:.0f}% | {100 * perm:.0f}% |")


if __name__ == "__main__":
    main()
