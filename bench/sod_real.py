"""The background saliency's threshold on real photos: the ring's robust spread against its plain
90th percentile, side by side on every image of a JSONL file (docs/SOD.md).

A product that touches the frame fills part of the border ring; the plain percentile took its
colour for background noise. No ground truth exists for real photos, so this counts what can be
counted: thresholds far above the floor, and images where nothing is found (whole-image fallback).

    .venv/bin/python bench/sod_real.py ../shared/data/myntra-500/pairs.jsonl
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import kaleido.sod.background as background
from kaleido.data.jsonl import JsonlReader
from kaleido.sod.box import foreground_box


def plain_spread(dist: np.ndarray) -> float:
    """The older noise floor: the ring's 90th-percentile colour distance."""
    return float(np.percentile(dist, 90))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("jsonl", type=Path)
    args = ap.parse_args()
    reader = JsonlReader(args.jsonl)
    sod = background.BackgroundSaliency()
    robust = background.ring_spread
    seen: dict[str, list] = {"robust (shipped)": [], "plain 90th percentile": []}
    for i in range(len(reader)):
        image = reader.row(i).image
        for name, spread in (("robust (shipped)", robust), ("plain 90th percentile", plain_spread)):
            captured: list[float] = []  # the one function the threshold goes through, recorded
            background.ring_spread = lambda d, s=spread, c=captured: c.append(s(d)) or c[-1]
            found = foreground_box(sod.mask(image), margin=0.0)[1]
            seen[name].append((max(sod.threshold, 1.5 * captured[0]), found))
    background.ring_spread = robust
    print(f"{args.jsonl}: {len(reader)} images, threshold floor {sod.threshold}")
    print("| noise floor | threshold > 30 | threshold > 100 | max threshold | no foreground (whole image) |")
    print("|---|---|---|---|---|")
    for name, rows in seen.items():
        thr = np.array([t for t, _ in rows])
        print(f"| {name} | {(thr > 30).sum()} | {(thr > 100).sum()} | {thr.max():.0f} | "
              f"{sum(not f for _, f in rows)} |")


if __name__ == "__main__":
    main()
