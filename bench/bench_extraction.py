"""Extraction: images/s of `crop` and `roi` (55 Kaleido patches, ResNet-50) beside the bare backbone.

    .venv/bin/python bench/bench_extraction.py [--images 12] [--crop-images 2] [--size 224] [--threads 1]

Measured in one process, each figure the best of ``--repeats`` interleaved runs:

1. ``roi`` extraction (the region cropped and resized once per Kaleido level, one backbone pass
   per level, each patch the average of its own cells; the 2x2 level's patches each passed
   alone, ``roi_separate``) against the bare backbone forward of the
   same passes (already resized tensors of the same sizes, the same batch size). Target: roi >=
   0.8x bare. Beside it the single-map ``roi_maps = "shared"`` (one pass per image; its patches
   are linear in each other, see kaleido/backbones/extract.py): what the per-level passes cost.
2. ``crop`` extraction (55 passes per image): target roi >= 5x crop in images/s (the per-level
   passes weigh about 6.5 passes of ``--size`` at 224 px).
3. ``prepare`` end to end (read, layout, roi features plus the AKPM views: the levels' passes,
   the region rotated 3 times, the 4x4 level in grey; writing the store) against the bare forward
   of the same passes.
4. Peak memory (ru_maxrss) of ``prepare`` in fresh processes at two data sizes (4x apart).

Prints a markdown table (copied into docs/PERFORMANCE.md by bench/run_all.py).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def _synthetic(path: Path, products: int, seed: int = 0):
    from kaleido.data.fashiongen import FashionGenReader
    from kaleido.data.synth import write_synthetic

    if not path.is_file():
        write_synthetic(path, products, seed, poses=(2, 2))
    return FashionGenReader(path)


def memory_child(args: argparse.Namespace) -> None:
    """Run prepare on ``--rows`` rows in this fresh process; print rows and peak RSS (MiB)."""
    from kaleido import registry
    from kaleido.features.prepare import prepare_rows

    torch.set_num_threads(args.threads)
    reader = _synthetic(Path(args.data), args.products)
    backbone = registry.backbones.get("mobilenet_v2")(mode="roi", image_size=160, batch_size=32, device="cpu")
    sod, patcher = registry.sod.get("background")(), registry.patchers.get("kaleido")()
    report = prepare_rows(reader, sod, patcher, backbone, Path(args.out), "bench", batch_size=32,
                          max_rows=args.rows)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rows": report.rows, "peak_mib": peak, "seconds": report.seconds}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=12)
    ap.add_argument("--crop-images", type=int, default=2)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=12)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (2 shared cores thrash with 2)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--memory-rows", type=int, nargs=2, default=[60, 240])
    ap.add_argument("--no-memory", action="store_true", help="skip the two peak-memory runs")
    ap.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--rows", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--products", type=int, default=120, help=argparse.SUPPRESS)
    ap.add_argument("--data", default="", help=argparse.SUPPRESS)
    ap.add_argument("--out", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        return memory_child(args)
    tmp = Path(tempfile.mkdtemp(prefix="kaleido-bench-extraction-"))
    try:
        measure(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def measure(args: argparse.Namespace, tmp: Path) -> None:
    """Every figure, with the data and stores under ``tmp``; prints the markdown tables."""
    from kaleido import registry
    from kaleido.features.prepare import prepare_rows
    from kaleido.features.store import FeatureStore

    torch.set_num_threads(args.threads)
    reader = _synthetic(tmp / "bench.h5", max(args.images, args.crop_images) // 2 + 1)
    images = [reader.row(i).image for i in range(args.images)]
    patcher, sod = registry.patchers.get("kaleido")(), registry.sod.get("background")()
    boxes = [patcher.layout(sod.box(im)[0], im.shape[1], im.shape[0]).boxes for im in images]
    grids = tuple(patcher.grids)
    make = registry.backbones.get("resnet50")
    roi = make(mode="roi", image_size=args.size, batch_size=args.batch_size, weights="none", device="cpu")
    crop = make(mode="crop", image_size=args.size, batch_size=args.batch_size, weights="none", device="cpu")
    shared = make(mode="roi", image_size=args.size, batch_size=args.batch_size, weights="none", device="cpu",
                  roi_maps="shared")
    crop.trunk = shared.trunk = roi.trunk  # one network, three ways
    passes = roi.level_passes(grids)  # per level: the region once, or each 2x2 patch alone
    level_px = [px for level in passes for px in level]
    # the passes of prepare: each level's, the 1x1 level's turned three times, the 4x4 level's in grey
    prepare_px = [*level_px, *passes[grids.index(1)] * 3, *passes[grids.index(4)]]
    inputs = {px: torch.rand(args.images, 3, px, px) for px in set(prepare_px)}

    @torch.inference_mode()
    def bare(sizes: list[int]) -> None:
        for px in sizes:
            roi.maps(inputs[px])

    roi.extract(images[:2], boxes[:2], grids)  # warm-up
    t_bare = _best(lambda: bare(level_px), args.repeats)
    t_roi = _best(lambda: roi.extract(images, boxes, grids), args.repeats)
    t_shared = _best(lambda: shared.extract(images, boxes), args.repeats)
    k = args.crop_images
    t_crop = _best(lambda: crop.extract(images[:k], boxes[:k]), args.repeats)  # best of as many as roi
    bare_ips, roi_ips, crop_ips = args.images / t_bare, args.images / t_roi, k / t_crop
    shared_ips = args.images / t_shared

    # prepare end to end: read + SOD + layout + its passes + store writes, vs the same bare passes
    count = {"n": 0}

    def run_prepare() -> None:
        count["n"] += 1
        prepare_rows(reader, sod, patcher, roi, tmp / f"store-{count['n']}", "bench",
                     batch_size=args.batch_size, max_rows=args.images)

    # interleaved, so that a change of load on a shared machine hits both sides alike
    t_prep, t_bare_prep = float("inf"), float("inf")
    for _ in range(max(1, args.repeats - 1)):
        t_prep = min(t_prep, _best(run_prepare, 1))
        t_bare_prep = min(t_bare_prep, _best(lambda: bare(prepare_px), 1))
    assert len(FeatureStore(tmp / "store-1")) == args.images
    prep_ips, bare_prep_ips = args.images / t_prep, args.images / t_bare_prep

    mem = []
    for rows in args.memory_rows if not args.no_memory else []:
        cmd = [sys.executable, __file__, "--memory-child", "--rows", str(rows), "--products",
               str(max(args.memory_rows) // 2 + 1), "--data", str(tmp / "mem.h5"),
               "--out", str(tmp / f"mem-{rows}"), "--threads", str(args.threads)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        mem.append(json.loads(out))

    print(f"ResNet-50 (random init: speed only), {args.size} px, 55 patches, batch {args.batch_size}, "
          f"{args.threads} torch thread(s), best of {args.repeats}")
    print()
    levels = ", ".join(str(level[0]) if len(level) == 1 else f"{len(level)} x {level[0]}" for level in passes)
    print("| what | images/s | baseline | baseline images/s | ratio | target |")
    print("|---|---|---|---|---|---|")
    print(f"| roi extract ({args.images} images; passes of {levels} px: each level, or its patches) "
          f"| {roi_ips:.2f} "
          f"| bare forward of the same passes | {bare_ips:.2f} | {roi_ips / bare_ips:.2f}x | >= 0.8x |")
    print(f"| roi extract | {roi_ips:.2f} | crop extract ({k} images, 55 passes/image) | {crop_ips:.3f} "
          f"| {roi_ips / crop_ips:.1f}x | >= 5x |")
    print(f"| roi extract | {roi_ips:.2f} | roi, one shared map (1 pass/image; patches linear in each other) "
          f"| {shared_ips:.2f} | {roi_ips / shared_ips:.2f}x | |")
    print(f"| prepare, roi + AKPM views + store ({args.images} rows) | {prep_ips:.2f} "
          f"| bare forward of the same {len(prepare_px)} passes/image | {bare_prep_ips:.2f} "
          f"| {prep_ips / bare_prep_ips:.2f}x | >= 0.8x |")
    if not mem:
        return
    print()
    print("| prepare peak memory (MobileNetV2 roi 160 px, background SOD) | rows | peak RSS MiB | seconds |")
    print("|---|---|---|---|")
    for m in mem:
        print(f"| fresh process | {m['rows']} | {m['peak_mib']:.0f} | {m['seconds']:.1f} |")
    print()
    print(f"peak RSS ratio at {mem[1]['rows'] / mem[0]['rows']:.0f}x the rows: "
          f"{mem[1]['peak_mib'] / mem[0]['peak_mib']:.2f}x")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
