"""Peak memory (RSS) of `prepare` and of training at two data sizes (target: flat in the number of rows).

Each measurement is a fresh process that runs one stage and reports its own peak resident set
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``), so nothing else in the process counts. The
feature store is written with positioned writes and read through memory maps; neither stage
should hold the data set in RAM, so the larger run's peak should match the smaller one's.

- prepare: the quickstart recipe's stage 1 (background saliency, Kaleido layout, MobileNetV2 roi)
  over synthetic data of two sizes (the data are drawn beforehand, in another process);
- training: the quickstart objective (MiniLM-L6, seven tasks) for a fixed number of steps on
  feature stores of two sizes (the batches are drawn from the whole store).

    .venv/bin/python bench/bench_memory.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_all import REPO, Section, row  # noqa: E402


def _prepare_overrides(work: Path, products: int, image_size: int) -> list[str]:
    return [f"output_dir={work / f'out-{products}'}", f"data.dir={work / f'data-{products}'}",
            f"data.products={products}", "data.test_products=2", f"backbone.image_size={image_size}"]


def child_prepare(overrides: list[str]) -> dict:
    from kaleido.features.prepare import prepare
    from kaleido.recipe import load_recipe

    recipe = load_recipe(REPO / "recipes" / "quickstart.toml", overrides)
    report = prepare(recipe, "train", progress=False)
    return {"rows": report.rows}


def child_train(store: str, steps: int, batch: int) -> dict:
    from kaleido.features.store import FeatureStore
    from kaleido.recipe import load_recipe
    from kaleido.recipe.schema import PretrainSettings
    from kaleido.training.build import build_pretraining
    from kaleido.training.trainer import Trainer, seed_everything

    recipe = load_recipe(REPO / "recipes" / "quickstart.toml")
    data = FeatureStore(store)
    seed_everything(0)
    objective, dataset = build_pretraining(recipe, data)
    settings = PretrainSettings(batch_size=batch, max_steps=steps, checkpoint_every=10 * steps,
                                log_every=steps)
    with tempfile.TemporaryDirectory() as out:
        Trainer(objective, dataset, settings, Path(out), progress=False, tensorboard=False, plot=False).fit()
    return {"rows": len(data)}


def _peak(args: list[str]) -> dict:
    """Run one child measurement; its result plus its own peak RSS in MiB."""
    env = {**os.environ, "PYTHONPATH": f"{Path(__file__).resolve().parent}{os.pathsep}{REPO}"}
    proc = subprocess.run([sys.executable, __file__, "--child", *args], cwd=REPO, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"child {args[0]} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(quick: bool) -> Section:
    from bench_loading import write_store

    from kaleido.data.sources import SyntheticData

    # --quick: smaller sizes, still 4x (prepare) and 8x (training) apart; the smaller prepare still
    # fills one backbone batch of 32 (a partial batch alone would hold fewer activations and make
    # the larger run look heavier: measured 1.09x at 14 vs 65 images). Two optimiser steps (the
    # AdamW state exists from the first) of batch 8; the store size costs training nothing but the
    # writing, so --quick keeps the larger one.
    sizes = (16, 64) if quick else (50, 400)  # products; about 2 images each
    image_size = 96 if quick else 160
    rows = (64, 512) if quick else (256, 4096)
    steps, batch = (2, 8) if quick else (10, 16)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prep = []
        for products in sizes:
            SyntheticData(str(work / f"data-{products}"), products=products, test_products=2).ensure()
            prep.append(_peak(["prepare", json.dumps(_prepare_overrides(work, products, image_size))]))
        train = []
        for n in rows:
            write_store(work / f"store-{n}", n, 1280)
            train.append(_peak(["train", str(work / f"store-{n}"), str(steps), str(batch)]))
    return Section(
        title="Peak memory",
        command=f"bench/bench_memory.py{' --quick' if quick else ''}",
        rows=[row(f"prepare, {prep[1]['rows']} images: peak RSS MiB", prep[1]["rss_mib"],
                  f"prepare, {prep[0]['rows']} images", prep[0]["rss_mib"], target="<= 1.1x"),
              row(f"training, store of {train[1]['rows']} rows: peak RSS MiB", train[1]["rss_mib"],
                  f"training, store of {train[0]['rows']} rows", train[0]["rss_mib"], target="<= 1.1x")],
        notes=[f"prepare: quickstart recipe, image_size {image_size}, synthetic data drawn beforehand; "
               f"training: quickstart objective, batch {batch}, {steps} steps, 1280-d random-feature stores "
               f"({rows[1] * 55 * 1280 * 2 / 2**20:.0f} MiB of features in the larger one)"],
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--child", nargs="+", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        import torch

        torch.set_num_threads(1)
        kind, *rest = args.child
        if kind == "prepare":
            out = child_prepare(json.loads(rest[0]))
        else:
            out = child_train(rest[0], int(rest[1]), int(rest[2]))
        out["rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
        print(json.dumps(out))
        return
    print(run(args.quick).markdown())


if __name__ == "__main__":
    main()
