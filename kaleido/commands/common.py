"""Helpers shared by the commands: one-line errors and the recipe loader with rich output."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console

console = Console(stderr=True)

RecipeArg = typer.Argument(..., help="a recipe TOML file", show_default=False)
SetOption = typer.Option([], "--set", metavar="KEY=VALUE",
                         help="override a field: --set masker.name=random (repeatable)")


def help_text(doc: str | None) -> str | None:
    """A command's docstring as its `--help` text. Typer prints a docstring's later paragraphs
    with their source line breaks, so each paragraph is joined into one line (a ``- item`` line
    stays its own) for the terminal to wrap, and RST's double backticks become single ones."""
    if not doc:
        return doc
    paragraphs = []
    for paragraph in inspect.cleandoc(doc).replace("``", "`").split("\n\n"):
        lines: list[str] = []
        for line in paragraph.splitlines():
            if lines and not line.lstrip().startswith("- "):
                lines[-1] += " " + line.strip()
            else:
                lines.append(line.strip())
        paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print a clear error (one line per problem) and exit."""
    from rich.markup import escape

    for line in str(message).splitlines() or [""]:  # the message's own [brackets] are text, not markup
        console.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Bad input met while a command works (a missing weights file, an unknown split, a value a
    component refuses, an unwritable output): one clear line and exit code 2, not a traceback."""
    try:
        yield
    except (ValueError, OSError) as exc:
        fail(str(exc) or type(exc).__name__)


def print_notes(resolved) -> None:
    """What `kaleido check` notes (settings that have no effect), one yellow line each on stderr."""
    from rich.markup import escape

    for note in resolved.notes():
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)


def load(recipe: Path, overrides: list[str] | None = None, build: bool = False):
    """Load and validate a recipe in the launching process (``build``: also build every component
    once on the CPU, as `kaleido check` does); exit with every error on failure."""
    from kaleido.recipe import RecipeError, load_recipe

    try:
        return load_recipe(recipe, overrides or [], build=build)
    except RecipeError as exc:
        fail(str(exc))
