"""Alignment precision of the recipe's aligner against the size of its training split and the seed.

    .venv/bin/python bench/align_quality.py [RECIPE] [--products 150 300 600] [--seeds 0 1 2] \
        [--workdir DIR] [--jobs 2] [--set K=V ...]

A quality study, not a speed benchmark (``run_all.py`` skips it; its table is kept in
docs/ALIGNMENT.md). For every ``--products`` the recipe's synthetic data are drawn at that many
products (the test split unchanged), ``kaleido prepare --split train`` builds the feature store
once, and ``kaleido align`` trains one captioner per seed (``--jobs`` of them at a time: the
captioner trains on one thread). Each row is read from the alignment stage's own
``report.json``: the precision against the ground-truth part boxes and its random-patch baseline
(docs/ALIGNMENT.md). Prints a markdown table and, with ``--json``, writes the rows.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def overrides(workdir: Path, products: int, extra: list[str]) -> list[str]:
    """The ``--set`` list of one data size: its own data folder and output folder."""
    size = workdir / f"p{products}"
    return [f'output_dir="{size / "runs"}"', f'data.dir="{size / "data"}"', f"data.products={products}",
            *extra]


def kaleido(command: str, recipe: Path, sets: list[str]) -> float:
    """Run one ``kaleido`` stage in its own process; its wall time in seconds."""
    cmd = [sys.executable, "-m", "kaleido.cli", command, str(recipe), "--no-progress"]
    cmd += ["--split", "train"] if command == "prepare" else []
    for item in sets:
        cmd += ["--set", item]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"kaleido {command} failed ({' '.join(sets)}):\n{proc.stderr[-2000:]}")
    return time.perf_counter() - start


def report_of(recipe: Path, sets: list[str]) -> dict:
    from kaleido.aligners.align import REPORT, align_dir
    from kaleido.recipe.load import load_recipe

    return json.loads((align_dir(load_recipe(recipe, sets)) / REPORT).read_text(encoding="utf-8"))


def one_seed(recipe: Path, sets: list[str], products: int, seed: int) -> dict:
    seed_sets = [*sets, f"aligner.seed={seed}"]
    wall = kaleido("align", recipe, seed_sets)
    report = report_of(recipe, seed_sets)
    quality = report["splits"]["train"].get("quality")
    if quality is None:
        raise SystemExit("no ground truth in the alignment report: the study needs synthetic data")
    return {"products": products, "seed": seed, "train_rows": report["fit"]["train_rows"],
            "steps": report["fit"]["steps"], "final_ce": round(report["fit"]["final_ce"], 3),
            "items": quality["items"], "precision": round(quality["precision"], 3),
            "random": round(quality["random_same_level"], 3),
            "ratio": round(quality["precision"] / quality["random_same_level"], 2),
            "precision_centre": round(quality["precision_centre"], 3),
            "random_centre": round(quality["random_centre_same_level"], 3),
            "ratio_centre": round(quality["precision_centre"] / quality["random_centre_same_level"], 2),
            "align_s": round(wall, 1)}


def table(rows: list[dict]) -> str:
    out = ["| products | training images | seed | steps | final CE | part words | precision / random | ratio "
           "| centre-inside / random | ratio | align wall s |", "|" + "---|" * 11]
    for r in rows:
        out.append(f"| {r['products']} | {r['train_rows']} | {r['seed']} | {r['steps']} | {r['final_ce']} "
                   f"| {r['items']} | {r['precision']:.3f} / {r['random']:.3f} | {r['ratio']:.2f}x "
                   f"| {r['precision_centre']:.3f} / {r['random_centre']:.3f} | {r['ratio_centre']:.2f}x "
                   f"| {r['align_s']:.0f} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recipe", type=Path, nargs="?", default=REPO / "recipes" / "quickstart.toml")
    ap.add_argument("--products", type=int, nargs="+", default=[150, 300, 600])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--workdir", type=Path, default=REPO / "runs" / "align-quality",
                    help="data and stores per size (reused: a finished store or alignment is not redone)")
    ap.add_argument("--jobs", type=int, default=2, help="captioners trained at a time")
    ap.add_argument("--set", dest="extra", action="append", default=[], help="more recipe overrides")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args()
    rows = []
    for products in args.products:
        sets = overrides(args.workdir.resolve(), products, args.extra)
        kaleido("prepare", args.recipe, sets)
        with ThreadPoolExecutor(args.jobs) as pool:
            jobs = [pool.submit(one_seed, args.recipe, sets, products, seed) for seed in args.seeds]
            rows += [job.result() for job in jobs]
    if args.json:
        from kaleido.atomic import write_json

        write_json(args.json, rows)
    print(table(rows))


if __name__ == "__main__":
    main()
