"""The stage chain of `kaleido run`: prepare -> align -> pretrain -> eval, each skipped when done.

Every stage's output is keyed by a hash of the recipe sections that shape it, so changing the
masker retrains and re-evaluates but reuses the features and alignments, and running a recipe
again does nothing. ``force`` redoes the named stages and every later one (their outputs are
removed first: they were made from the old ones). An evaluation that skipped a task it was asked
for (``results.json``'s ``incomplete``: captioning without Java) is not finished: it runs again.
Pre-training runs in this process for one rank, or through ``torch.distributed.run`` (what
``torchrun`` does) for several; an interrupted pre-training resumes from its last checkpoint.
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STAGES = ("prepare", "align", "pretrain", "eval")
# What shapes a pre-trained model on top of the alignments (and the store) it reads; the earlier
# stages count through their own folder's key, so each stage's notion of a result is written once.
PRETRAIN_SECTIONS = ("seed", "masker", "model", "tasks", "pretrain")
# Bumped when the same sections start to train a different model (a run of the old code must not be
# reused as this code's): 2 = ITM negatives masked like positives, plans only of what tasks hide;
# 3 = each task's loss normalised by its count over the whole global batch (grad_accum > 1 and
# several ranks used to average per micro-batch and per rank), warm-up ceil(ratio * steps) steps
# at (s + 1) / (W + 1) of the peak, AMLM / ITM heads from the init checkpoint's cls.* heads
# where it has them, CP's 3x3 quota capped at the one patch it camouflages; 4 = each batch's text
# padded to its longest text, not max_text_len (the same model, but dropout draws other masks).
PRETRAIN_VERSION = 4


class StageError(RuntimeError):
    """A stage failed; the message says which and why."""


@dataclass(frozen=True)
class Launch:
    """How pre-training is launched: the torchrun options."""

    nproc_per_node: int = 1
    nnodes: int = 1
    node_rank: int = 0
    rdzv_endpoint: str | None = None
    rdzv_id: str = "kaleido"

    @property
    def world(self) -> int:
        return self.nproc_per_node * self.nnodes


def run_dir(recipe: Any) -> Path:
    return Path(recipe.output_dir) / recipe.name


def pretrain_dir(recipe: Any) -> Path:
    """``<run>/pretrain-<key>``: the key of the alignments' folder (which holds the store's) and
    of the sections that shape training."""
    from kaleido.aligners.align import align_dir

    key = recipe.section_hash(*PRETRAIN_SECTIONS, upstream=f"{align_dir(recipe).name}/v{PRETRAIN_VERSION}")
    return run_dir(recipe) / f"pretrain-{key}"


def pretrain_identity(recipe: Any) -> dict[str, Any]:
    """What the pre-training key hashes besides ``[pretrain]`` and the seed (which the trainer
    adds), as dotted names for a checkpoint to store and a resume to compare: the store and
    alignments it reads (their folder), ``PRETRAIN_VERSION`` and the other ``PRETRAIN_SECTIONS``'
    values (masker, model, each task's weight and parameters), the same values as the key."""
    from kaleido.aligners.align import align_dir
    from kaleido.recipe.load import leaves

    sections = [s for s in PRETRAIN_SECTIONS if s not in ("seed", "pretrain")]
    return {"upstream": f"{align_dir(recipe).name}/v{PRETRAIN_VERSION}",
            **dict(leaves(recipe.section_values(*sections)))}


def eval_dir(recipe: Any) -> Path:
    """``<run>/eval-<key>``: the pre-trained model's folder and the ``[eval]`` section."""
    return eval_dir_of(recipe, pretrain_dir(recipe))


def eval_dir_of(recipe: Any, pretrain: Path) -> Path:
    """``eval-<key>`` beside the pre-training folder ``pretrain`` (its ``model/`` also accepted),
    keyed on that folder's name and ``[eval]``: ``eval_dir(recipe)`` for the recipe's own."""
    folder = Path(pretrain).resolve()
    folder = folder.parent if folder.name == "model" else folder
    return folder.parent / f"eval-{recipe.section_hash('eval', upstream=folder.name)}"


def eval_incomplete(recipe: Any) -> list[dict[str, str]]:
    """The asked-for tasks the recipe's evaluation skipped, ``[{"task", "reason"}]`` from its
    ``results.json``; empty when it has none (or no such file yet)."""
    import json

    path = eval_dir(recipe) / "results.json"
    if not path.is_file():
        return []
    try:
        skipped = json.loads(path.read_text(encoding="utf-8")).get("incomplete", [])
    except (ValueError, AttributeError) as exc:
        raise StageError(f"{path}: not a readable results file ({exc}); "
                         "remove it or run with --force eval") from None
    return list(skipped)


def skipped_text(skipped: list[dict[str, str]]) -> str:
    """``fc (captioning metrics need Java ...)``, one per skipped task, for a stage line."""
    return "; ".join(f"{s.get('task', '?')} ({s.get('reason', 'no reason recorded')})" for s in skipped)


def splits_needed(recipe: Any) -> list[str]:
    return ["train", "test"] if "eval" in recipe.stages else ["train"]


def stage_done(recipe: Any, stage: str) -> bool:
    """Whether ``stage`` has finished output for this recipe."""
    if stage == "prepare":
        from kaleido.features.prepare import is_complete, prepare_key, store_dir

        key = prepare_key(recipe)
        stores = store_dir(recipe, key)
        return all(is_complete(stores / s, key) for s in splits_needed(recipe))
    if stage == "align":
        if recipe.aligner.name == "none":
            return True
        from kaleido.aligners.align import align_dir

        return (align_dir(recipe) / "report.json").is_file()
    if stage == "pretrain":
        from kaleido.training.trainer import is_done

        return is_done(pretrain_dir(recipe))
    if stage == "eval":  # an evaluation that skipped an asked-for task is not finished
        return (eval_dir(recipe) / "results.json").is_file() and not eval_incomplete(recipe)
    raise ValueError(f"unknown stage {stage!r}; expected one of: {', '.join(STAGES)}")


def stage_output(recipe: Any, stage: str) -> Path:
    if stage == "prepare":
        from kaleido.features.prepare import store_dir

        return store_dir(recipe)
    if stage == "align":
        from kaleido.aligners.align import align_dir

        return align_dir(recipe)
    return pretrain_dir(recipe) if stage == "pretrain" else eval_dir(recipe)


def launch_args(recipe_file: Path, out: Path, launch: Launch, progress: bool) -> list[str]:
    """The `torch.distributed.run` command line that trains ``recipe_file`` into ``out``."""
    args = ["--nproc-per-node", str(launch.nproc_per_node), "--nnodes", str(launch.nnodes)]
    if launch.nnodes == 1 and launch.rdzv_endpoint is None:
        args.append("--standalone")
    else:
        if launch.rdzv_endpoint is None:
            raise StageError("--nnodes > 1 needs --rdzv-endpoint HOST:PORT (the same on every node)")
        args += ["--node-rank", str(launch.node_rank), "--rdzv-backend", "c10d", "--rdzv-endpoint",
                 launch.rdzv_endpoint, "--rdzv-id", launch.rdzv_id]
    args += ["-m", "kaleido.training.main", "--recipe", str(recipe_file), "--out", str(out), "--from-run"]
    if not progress:
        args.append("--no-progress")
    return args


def _pretrain(recipe: Any, launch: Launch, progress: bool) -> None:
    out = pretrain_dir(recipe)
    out.mkdir(parents=True, exist_ok=True)
    recipe_file = out / "recipe.toml"
    recipe.dump(recipe_file)
    if launch.world == 1:
        from kaleido.training.checkpoint import CheckpointError
        from kaleido.training.main import RUN_HINT, train

        try:
            train(recipe, out, progress=progress, restart_hint=RUN_HINT)
        except CheckpointError as exc:
            raise StageError(f"pretrain: {exc}") from None
        return
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    try:
        run(get_args_parser().parse_args(launch_args(recipe_file, out, launch, progress)))
    except ChildFailedError as exc:
        raise StageError(f"pretrain: a training process failed (its error is printed above): "
                         f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None


def _run_stage(recipe: Any, stage: str, launch: Launch, progress: bool,
               echo: Callable[[str], None] = print) -> None:
    if stage == "prepare":
        from kaleido.features.prepare import prepare

        for split in splits_needed(recipe):  # the counts; the reasons in the log and the manifests
            report = prepare(recipe, split, progress=progress)
            echo(f"prepare {report.summary()}")
            log.info("prepare %s", report)
    elif stage == "align":
        from kaleido.aligners.align import align

        align(recipe, progress=progress)
    elif stage == "pretrain":
        _pretrain(recipe, launch, progress)
    elif stage == "eval":
        from kaleido.evaluation.run import evaluate

        evaluate(recipe, pretrain_dir(recipe), eval_dir(recipe), progress=progress)


# On several nodes (one shared output folder, which the trainer's checkpoints need anyway) node 0
# alone prepares and aligns; two nodes writing one store or one aligner folder at once would race.
NODE0_STAGES = ("prepare", "align")
WAIT_POLL_S = 10.0
WAIT_SAY_EVERY_S = 600.0


def _wait_for_node0(recipe: Any, stage: str, echo: Callable[[str], None]) -> str:
    """Block until node 0 has finished ``stage`` in the shared output folder (checked every
    ``WAIT_POLL_S``, said every ``WAIT_SAY_EVERY_S``); ``"reused"`` when it was already there."""
    if stage_done(recipe, stage):
        echo(f"{stage}: finished by node 0, reused ({stage_output(recipe, stage)})")
        return "reused"
    echo(f"{stage}: waiting for node 0 to write {stage_output(recipe, stage)} "
         "(the output folder must be shared by every node)")
    start = last = time.monotonic()
    while not stage_done(recipe, stage):
        time.sleep(WAIT_POLL_S)
        if time.monotonic() - last >= WAIT_SAY_EVERY_S:
            last = time.monotonic()
            echo(f"{stage}: still waiting for node 0 ({(last - start) / 60:.0f} min)")
    echo(f"{stage}: node 0 finished it after {time.monotonic() - start:.0f} s of waiting")
    return "by node 0"


def run_stages(recipe: Any, *, force: tuple[str, ...] = (), launch: Launch = Launch(), progress: bool = True,
               echo: Callable[[str], None] = print) -> dict[str, str]:
    """Run the recipe's stages in order; returns ``{stage: "done" | "reused" | "off" | "incomplete" |
    "by node 0"}`` ("incomplete": the evaluation ran but skipped a task it was asked for; the next run
    redoes it; "by node 0": another node waited while node 0 ran it)."""
    unknown = [f for f in force if f not in STAGES]
    if unknown:
        raise StageError(f"--force {unknown[0]!r}: expected one of: {', '.join(STAGES)}")
    if launch.node_rank != 0 and (mine := [f for f in force if f in NODE0_STAGES]):
        raise StageError(f"--force {mine[0]}: node 0 redoes {' and '.join(NODE0_STAGES)} for every node; "
                         f"run node {launch.node_rank} without it (it waits for node 0's output)")
    recipe.dump(run_dir(recipe) / "recipe.toml")
    status: dict[str, str] = {}
    redo = False  # a forced stage makes every later one stale: they are redone too
    for stage in STAGES:
        if stage not in recipe.stages or (stage == "align" and recipe.aligner.name == "none"):
            status[stage] = "off"
            continue
        if stage == "eval" and launch.node_rank != 0:
            status[stage] = "off"  # evaluated once, on the first node
            continue
        if stage in NODE0_STAGES and launch.node_rank != 0:
            status[stage] = _wait_for_node0(recipe, stage, echo)
            continue
        if stage in force or redo:
            _remove(stage_output(recipe, stage))
            redo = True
        elif stage_done(recipe, stage):
            status[stage] = "reused"
            echo(f"{stage}: finished before, reused ({stage_output(recipe, stage)})")
            continue
        elif stage == "eval" and (skipped := eval_incomplete(recipe)):
            line = f"eval: the evaluation before skipped {skipped_text(skipped)}; evaluating again"
            echo(line)
            log.info("%s", line)
        echo(f"{stage}: running -> {stage_output(recipe, stage)}")
        start = time.perf_counter()
        _run_stage(recipe, stage, launch, progress, echo)
        echo(f"{stage}: finished in {time.perf_counter() - start:.1f} s")
        status[stage] = "done"
        if stage != "pretrain" or launch.node_rank == 0:
            if stage == "eval" and (skipped := eval_incomplete(recipe)):
                status[stage] = "incomplete"
                line = (f"eval: incomplete, skipped {skipped_text(skipped)}; "
                        "the next `kaleido run` evaluates again")
                echo(line)
                log.info("%s", line)
            elif not stage_done(recipe, stage):
                raise StageError(f"{stage}: finished without its output in {stage_output(recipe, stage)}")
    return status


def _remove(path: Path) -> None:
    """Move a stage's output aside atomically, then delete it (a crash never leaves half of it)."""
    if path.exists():
        trash = path.with_name(f".{path.name}.removing-{uuid.uuid4().hex[:8]}")
        path.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)
