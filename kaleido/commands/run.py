"""`kaleido run RECIPE` (every stage the recipe asks for) and `kaleido plot RUN_DIR` (loss curves)."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from kaleido.commands.common import RecipeArg, SetOption, console, fail, load, one_line_errors, print_notes


def run(
    recipe: Path = RecipeArg,
    overrides: list[str] = SetOption,
    force: list[str] = typer.Option(
        [], "--force", metavar="STAGE",
        help="redo this stage and the later ones: prepare, align, pretrain or eval (repeatable)"),
    nproc_per_node: int | None = typer.Option(None, "--nproc-per-node", min=1,
                                       help="training processes per node (default: the recipe's \\[launch])"),
    nnodes: int = typer.Option(1, "--nnodes", min=1, help="number of nodes"),
    node_rank: int = typer.Option(0, "--node-rank", min=0, help="this node's rank"),
    rdzv_endpoint: str = typer.Option(None, "--rdzv-endpoint",
                                      help="HOST:PORT of the rendezvous (multi-node)"),
    rdzv_id: str = typer.Option("kaleido", "--rdzv-id", help="job id shared by the nodes"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="progress bars"),
) -> None:
    """Run the recipe's stages: prepare, align, pretrain, eval (finished stages are reused)."""
    import logging

    from kaleido.training.pipeline import Launch, StageError, run_dir, run_stages
    from kaleido.training.trainer import NonFiniteLoss

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # every component built once before any stage starts (as `kaleido check` does): a value only a
    # constructor refuses is reported now, with the recipe's file and field, not minutes later
    resolved = load(recipe, overrides, build=True)
    print_notes(resolved)
    if nproc_per_node is None:
        launch_section = getattr(resolved.model, "launch", None)
        nproc_per_node = int(getattr(launch_section, "nproc_per_node", 1))
    launch = Launch(nproc_per_node=nproc_per_node, nnodes=nnodes, node_rank=node_rank,
                    rdzv_endpoint=rdzv_endpoint, rdzv_id=rdzv_id)
    start = time.perf_counter()
    try:
        status = run_stages(resolved, force=tuple(force), launch=launch, progress=progress,
                            echo=lambda line: console.print(f"[cyan]{line}[/]", highlight=False))
    except (StageError, NonFiniteLoss, FileNotFoundError, ValueError) as exc:
        fail(str(exc), code=1)
    summary = ", ".join(f"{stage} {state}" for stage, state in status.items())
    console.print(f"[green]finished[/] in {time.perf_counter() - start:.0f} s: {summary}; "
                  f"outputs in {run_dir(resolved)}", highlight=False)


def plot(
    run_dir: Path = typer.Argument(..., help="a run folder, or one of its pretrain-* folders"),
    out: Path | None = typer.Option(None, "--out", help="PNG path (default: loss.png beside the log)"),
) -> None:
    """Draw the per-task pre-training loss curves (the paper's Fig. 6) to a PNG."""
    from kaleido.training.plot import plot_losses

    with one_line_errors():
        path = plot_losses(run_dir, out)
    console.print(f"[green]wrote[/] {path}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(run)
    app.command()(plot)
