"""Stage 3 as a process: the module `kaleido run` hands to `torch.distributed.run`.

Run it by hand exactly as torchrun runs any script::

    torchrun --standalone --nproc-per-node 2 -m kaleido.training.main --recipe runs/quick/recipe.toml

It reads the recipe (a resolved one is best: ``kaleido run`` writes it next to its outputs),
opens the training feature store and the alignments the earlier stages wrote, builds the
objective and dataset, and trains into the recipe's pretrain folder (or ``--out``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from kaleido.training.trainer import TrainResult

# how each entry point starts a run over when its checkpoints belong to another recipe
RUN_HINT = "run `kaleido run --force pretrain` to start over"
MAIN_HINT = "pass another --out, or remove {checkpoints} to start over"


def train(recipe: Any, out_dir: str | Path | None = None, progress: bool = True,
          restart_hint: str | None = None) -> TrainResult:
    """Pre-train ``recipe`` in this process (one rank of a torchrun job, or the whole job).

    Checkpoints store :func:`~kaleido.training.pipeline.pretrain_identity` (and the trainer's
    own settings); resuming from those of another recipe raises ``CheckpointError`` whose
    message ends with ``restart_hint`` (default: this module's, :data:`MAIN_HINT`)."""
    from kaleido.aligners.align import open_alignments
    from kaleido.features.prepare import store_dir
    from kaleido.features.store import FeatureStore
    from kaleido.training.build import build_pretraining
    from kaleido.training.distributed import init_from_env, shutdown
    from kaleido.training.pipeline import pretrain_dir, pretrain_identity
    from kaleido.training.trainer import Trainer, seed_everything

    store_path = store_dir(recipe) / "train"
    try:
        store = FeatureStore(store_path)
    except (FileNotFoundError, ValueError) as exc:
        raise FileNotFoundError(f"no finished feature store at {store_path} ({exc}); run `kaleido prepare` "
                                f"or `kaleido run` first") from None
    alignments = None
    if recipe.aligner.name != "none":
        try:
            alignments = open_alignments(recipe, "train")
        except (FileNotFoundError, ValueError) as exc:
            raise FileNotFoundError(f"no alignments for this recipe ({exc}); "
                                    f"run `kaleido align` first") from None
    info = init_from_env()
    try:
        seed_everything(recipe.seed)  # identical initial weights on every rank
        objective, dataset = build_pretraining(recipe, store, alignments)
        out = Path(out_dir) if out_dir is not None else pretrain_dir(recipe)
        hint = restart_hint or MAIN_HINT.format(checkpoints=out / "checkpoints")
        trainer = Trainer(objective, dataset, recipe.pretrain, out, seed=recipe.seed, info=info,
                          progress=progress, identity=pretrain_identity(recipe), restart_hint=hint)
        return trainer.fit()
    finally:
        shutdown(info)


def main(argv: list[str] | None = None) -> int:
    from kaleido.recipe import RecipeError, load_recipe
    from kaleido.training.checkpoint import CheckpointError
    from kaleido.training.trainer import NonFiniteLoss

    ap = argparse.ArgumentParser(prog="python -m kaleido.training.main", description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", type=Path, required=True,
                    help="a recipe TOML (the resolved one `kaleido run` wrote)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="KEY=VALUE override")
    ap.add_argument("--out", type=Path, default=None, help="pretrain folder (default: the recipe's)")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--from-run", action="store_true", help=argparse.SUPPRESS)  # launched by `kaleido run`
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        recipe = load_recipe(args.recipe, args.overrides)
        hint = RUN_HINT if args.from_run else None
        train(recipe, args.out, progress=not args.no_progress, restart_hint=hint)
    except (RecipeError, NonFiniteLoss, CheckpointError, FileNotFoundError, ValueError) as exc:
        for line in str(exc).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
