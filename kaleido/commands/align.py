"""`kaleido align RECIPE`: stage 2, token-patch alignments from the recipe's aligner."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from kaleido.commands.common import RecipeArg, SetOption, load, one_line_errors


def align(recipe: Path = RecipeArg, overrides: list[str] = SetOption,
          progress: bool = typer.Option(True, "--progress/--no-progress", help="show progress bars")) -> None:
    """Train the aligner (SAT captioner) on the training split and store every row's alignments.

    Needs the feature store of `kaleido prepare`; a finished alignment store is reused, an
    interrupted captioner training resumes from its checkpoint.
    """
    resolved = load(recipe, overrides)
    from kaleido.aligners.align import align as run_align

    with one_line_errors():
        report = run_align(resolved, progress=progress)
    console = Console()
    console.print(f"[green]alignments[/] {report['path']}" + ("  (reused)" if report.get("reused") else ""))
    fit = report.get("fit") or {}
    if fit.get("train_rows"):
        console.print(f"captioner: {fit['train_rows']} training rows, vocabulary {fit.get('vocab', '-')}, "
                      f"{fit.get('steps', '-')} steps, cross-entropy {_number(fit.get('first_ce'))} -> "
                      f"{_number(fit.get('final_ce'))}" + ("  (reused)" if fit.get("reused") else ""))
    table = Table(title_justify="left")
    for col in ("split", "rows", "skipped", "aligned rows", "pairs", "precision", "random patch"):
        table.add_column(col)
    for split, rep in report["splits"].items():
        q = rep.get("quality") or {}
        table.add_row(split, str(rep["rows"]), str(rep.get("skipped_images", 0)), str(rep["aligned_rows"]),
                      str(rep["pairs"]), _number(q.get("precision")),
                      _number(q.get("random_same_level")))
    console.print(table)


def _number(value: float | None) -> str:
    """A report's value to 3 decimals; ``-`` where there is none (no training step, no quality)."""
    return "-" if value is None else f"{value:.3f}"


def register(app: typer.Typer) -> None:
    app.command()(align)
