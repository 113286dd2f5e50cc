"""`kaleido ablate`: run a base recipe and its variants, compare them in the layout of Table 4."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from kaleido.commands.common import SetOption, console, fail


def _variants(flag: str, metavar: str, what: str) -> Any:
    """A repeatable option whose every value makes one variant of the base recipe."""
    return typer.Option([], flag, metavar=metavar,
                        help=f"{what} (repeatable: several values, one variant each)")


def ablate(
    base: Path = typer.Option(None, "--base", help="the base recipe (default: recipes/full.toml)"),
    overrides: list[str] = SetOption,
    patcher: list[str] = _variants("--patcher", "PATCHER", "a patcher, e.g. 'fixed grid=8'"),
    sod: list[str] = _variants("--sod", "SOD", "a saliency component, e.g. none"),
    masker: list[str] = _variants("--masker", "MASKER", "a masker, e.g. random"),
    aligner: list[str] = _variants("--aligner", "ALIGNER", "an aligner, e.g. none"),
    tasks: list[str] = _variants("--tasks", "TASKS", "B, B+I, B+I~IV, B+V ... or amlm,itm,rr"),
    variant: list[Path] = _variants("--variant", "RECIPE", "a recipe file whose own keys override the base"),
    paper: bool = typer.Option(False, "--paper", help="every Table-4 column (the shipped column recipes)"),
    recipes_dir: Path = typer.Option(None, "--recipes-dir", help="where --paper finds the column recipes"),
    seeds: int = typer.Option(1, "--seeds", min=1, help="runs per setting (mean ± sd reported)"),
    nproc_per_node: int | None = typer.Option(None, "--nproc-per-node", min=1,
                                       help="training processes per run (default: launch.nproc_per_node)"),
    out: Path | None = typer.Option(None, "--out", help="folder of ablation.md/json/png (default: "
                                                 "<output_dir>/ablate-<base name>)"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="progress bar"),
) -> None:
    """Run the base and each variant (reusing shared stages); write ablation.md, .json and .png."""
    import logging

    from kaleido.ablation.runner import run_ablation
    from kaleido.ablation.variants import (
        Variant,
        VariantError,
        base_variant,
        component_variant,
        default_recipes_dir,
        file_variant,
        paper_variants,
        tasks_variant,
        with_column,
    )
    from kaleido.recipe import RecipeError, load_recipe
    from kaleido.training.pipeline import Launch

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    recipes_dir = recipes_dir or default_recipes_dir()
    base = base or recipes_dir / "full.toml"
    try:
        resolved = load_recipe(base, overrides)
        variants: list[Variant] = []
        for factor, values in (("patcher", patcher), ("sod", sod), ("masker", masker), ("aligner", aligner)):
            variants += [with_column(component_variant(factor, v), recipes_dir) for v in values]
        variants += [with_column(tasks_variant(t), recipes_dir) for t in tasks]
        variants += [file_variant(p, recipes_dir) for p in variant]
        # the full model's figures beside the base only when the base is full.toml as shipped
        base_row = base_variant(resolved, recipes_dir) if paper or any(v.paper for v in variants) else None
        if paper:
            variants = paper_variants(recipes_dir) + variants
        if not variants:
            fail("nothing to compare: give --masker, --patcher, --sod, --aligner, --tasks, --variant "
                 "or --paper")
        nproc = nproc_per_node or resolved.launch.nproc_per_node
        table, paths = run_ablation(base, variants, base_overrides=overrides, base_variant=base_row,
                                    seeds=seeds, launch=Launch(nproc_per_node=nproc), out_dir=out,
                                    progress=progress,
                                    echo=lambda line: console.print(line, highlight=False, markup=False))
    except (RecipeError, VariantError) as exc:
        fail(str(exc))
    console.print(Path(paths["md"]).read_text(encoding="utf-8"), highlight=False, markup=False)
    console.print(f"[green]wrote[/] {paths['md']}, {paths['json'].name}, {paths['png'].name}",
                  highlight=False)
    if table["failures"]:
        fail(f"{table['failures']} run(s) failed; their cells show '-' (see the notes above)", code=1)


def register(app: typer.Typer) -> None:
    app.command()(ablate)
