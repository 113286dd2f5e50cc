"""Run one stage of a recipe in its own process, optionally SIGKILLing itself part-way (crash tests).

    python tests/reliability_driver.py prepare RECIPE [--kill-after N]   # after N committed batches
    python tests/reliability_driver.py align RECIPE [--kill-after N]     # after captioner step N
    python tests/reliability_driver.py train RECIPE [--kill-after N]     # after optimiser step N

A hard kill (no cleanup, no ``finally``) is what a crash or an OOM killer does; the restart,
the same command without ``--kill-after``, must finish with nothing lost.
"""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def prepare(recipe, kill_after: int) -> None:
    from kaleido.features.prepare import prepare as run_prepare

    if kill_after:
        import kaleido.features.prepare as module

        original = module.prepare_rows
        batches = {"n": 0}

        def killing(*args, **kwargs):
            def tick(done: int, total: int) -> None:
                batches["n"] += 1
                if batches["n"] == kill_after:
                    _die()

            kwargs["on_batch"] = tick
            return original(*args, **kwargs)

        module.prepare_rows = killing
    for split in ("train", "test"):
        print(run_prepare(recipe, split, progress=False))


def align(recipe, kill_after: int) -> None:
    from kaleido import registry
    from kaleido.aligners.align import align as run_align

    if kill_after:
        cls = registry.aligners.get(recipe.aligner.name)
        original = cls.fit

        def fit(self, train, workdir, progress=True, on_step=None):
            return original(self, train, workdir, progress,
                            on_step=lambda step: _die() if step == kill_after else None)

        cls.fit = fit
    report = run_align(recipe, progress=False)
    print({k: v for k, v in report.items() if k != "splits"})


def train(recipe, kill_after: int) -> None:
    from kaleido.aligners.align import open_alignments
    from kaleido.features.prepare import store_dir
    from kaleido.features.store import FeatureStore
    from kaleido.training.build import build_pretraining
    from kaleido.training.trainer import KILL_ENV, Trainer, seed_everything

    if kill_after:
        os.environ[KILL_ENV] = str(kill_after)
    store = FeatureStore(store_dir(recipe) / "train")
    alignments = open_alignments(recipe, "train") if recipe.aligner.name != "none" else None
    seed_everything(recipe.seed)
    objective, dataset = build_pretraining(recipe, store, alignments)
    out = Path(recipe.output_dir) / recipe.name / "pretrain"
    result = Trainer(objective, dataset, recipe.pretrain, out, seed=recipe.seed, progress=False,
                     tensorboard=False, plot=False).fit()
    print(result)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("stage", choices=["prepare", "align", "train"])
    ap.add_argument("recipe", type=Path)
    ap.add_argument("--kill-after", type=int, default=0)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from kaleido.recipe import load_recipe

    recipe = load_recipe(args.recipe)
    {"prepare": prepare, "align": align, "train": train}[args.stage](recipe, args.kill_after)


if __name__ == "__main__":
    main()
