"""`kaleido components` and `kaleido check`: what is registered, and is this recipe right."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from kaleido.commands.common import RecipeArg, SetOption, load, print_notes


def components(kind: str = typer.Argument(None, help="only this kind (maskers, tasks ...)")) -> None:
    """List every registered component by kind, plugins included, with its parameters."""
    from kaleido import registry
    from kaleido.recipe.params import describe, summary

    console = Console()
    kinds = [kind] if kind else list(registry.REGISTRIES)
    for name in kinds:
        if name not in registry.REGISTRIES:
            from kaleido.commands.common import fail

            fail(f"unknown kind {name!r}; expected one of: {', '.join(registry.REGISTRIES)}")
        reg = registry.REGISTRIES[name]
        table = Table(title=f"{name}  (entry-point group {reg.group})", title_justify="left", expand=False)
        table.add_column("name", style="bold cyan")
        table.add_column("parameters (default)")
        table.add_column("what")
        for comp_name, comp in reg.items():
            if comp is None:
                table.add_row(comp_name, "", f"[red]broken plugin: {reg.broken().get(comp_name, '')}[/]")
                continue
            params = ", ".join(f"{p}={d}" for p, _t, d in describe(comp))
            table.add_row(comp_name, params, summary(comp))
        console.print(table)


def check(recipe: Path = RecipeArg, overrides: list[str] = SetOption,
          build: bool = typer.Option(True, "--build/--no-build",
                                     help="also build every component once (on the CPU) to catch what "
                                          "only its constructor checks")) -> None:
    """Validate a recipe; print the fully resolved recipe, or every error with file and field."""
    resolved = load(recipe, overrides, build=build)
    Console().print(resolved.to_toml(), highlight=False, markup=False)
    print_notes(resolved)
    Console(stderr=True).print(f"[green]ok[/]: {recipe}")


def register(app: typer.Typer) -> None:
    app.command()(components)
    app.command()(check)
