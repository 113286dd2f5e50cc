"""How fast `write_synthetic` draws and stores images (target: 1,000 images well under a minute).

Run: .venv/bin/python bench/synth_speed.py [--products 500] [--poses 2]
Times the whole write (drawing, gzip, HDF5, side file) on one thread, and the drawing alone.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=500)
    parser.add_argument("--poses", type=int, default=2)
    args = parser.parse_args()

    from kaleido.data import synth

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        out = synth.write_synthetic(Path(tmp) / "s.h5", args.products, seed=0, poses=(args.poses, args.poses))
        total = time.perf_counter() - start
        size_mb = out.stat().st_size / 1e6
    n = args.products * args.poses

    rng = np.random.default_rng(0)
    products = synth._products(min(args.products, 200), 0, rng)
    start = time.perf_counter()
    for p in products:
        synth.render(p, synth._poses(p.sub, 1, rng)[0], rng)
    draw = (time.perf_counter() - start) / len(products)

    print(f"write_synthetic: {n} images in {total:.1f} s ({1000 * total / n:.1f} ms/image, "
          f"{1000 * total / n:.1f} s per 1,000), file {size_mb:.1f} MB")
    print(f"drawing alone: {1000 * draw:.1f} ms/image")


if __name__ == "__main__":
    main()
