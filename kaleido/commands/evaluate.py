"""`kaleido eval RUN_DIR --recipe R`: the downstream tasks on a finished pre-training run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from kaleido.commands.common import SetOption, console, fail, load, one_line_errors


def _pretrain_dir(run_dir: Path, recipe: Any) -> Path:
    """``RUN_DIR`` itself when it holds the objective, else the ``pretrain-<key>`` folder of this
    recipe's settings: never another run's model (a run folder holds one per pre-training variant)."""
    if (run_dir / "objective.json").is_file() or (run_dir / "model" / "objective.json").is_file():
        return run_dir
    from kaleido.training.pipeline import pretrain_dir

    mine = run_dir / pretrain_dir(recipe).name
    if (mine / "model" / "objective.json").is_file():
        return mine / "model"
    found = sorted(p.parent.parent.name for p in run_dir.glob("pretrain-*/model/objective.json"))
    if not found:
        fail(f"no pre-trained model under {run_dir} (expected pretrain-*/model/objective.json)")
    fail(f"no pre-training of this recipe under {run_dir} (expected {mine.name}; found {', '.join(found)}): "
         f"pass the recipe and --set overrides of that run, or a pretrain folder itself")


def _default_out(pretrain: Path, recipe: Any) -> Path:
    """``eval-<key>`` beside the pre-training folder actually read, keyed on that folder's name and
    ``[eval]`` as ``eval_dir`` keys it: the folder `kaleido run` uses when the model is the recipe's
    own, another name for another variant's model (whose results must not pass for this recipe's)."""
    from kaleido.evaluation.run import find_objective
    from kaleido.training.pipeline import eval_dir_of

    return eval_dir_of(recipe, find_objective(pretrain))


RunDirArg = typer.Argument(..., help="run folder (or a pretrain folder)", show_default=False)


def eval_command(run_dir: Path = RunDirArg,
                 recipe: Path = typer.Option(..., "--recipe", "-r", help="the recipe of that run"),
                 out: Path | None = typer.Option(None, "--out", help="output folder (default: eval-<key> "
                                                 "beside the pretrain folder, keyed on its name "
                                                 "and \\[eval], as kaleido run names it)"),
                 overrides: list[str] = SetOption,
                 progress: bool = typer.Option(True, "--progress/--no-progress", help="show progress bars"),
                 ) -> None:
    """Fine-tune and evaluate ITR, TIR, CR, SUB and FC; write results.json and results.md."""
    resolved = load(recipe, overrides)
    if not run_dir.is_dir():
        fail(f"{run_dir} is not a folder")
    pretrain = _pretrain_dir(run_dir, resolved)
    if out is None:
        out = _default_out(pretrain, resolved)
    from kaleido.evaluation.run import evaluate

    with one_line_errors():
        evaluate(resolved, pretrain, out, progress=progress)
    console.print((out / "results.md").read_text(encoding="utf-8"), highlight=False, markup=False)
    console.print(f"[green]wrote[/] {out / 'results.json'} and {out / 'results.md'}")


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
