"""`kaleido data synth` and `kaleido data info`: make synthetic data, summarise a data file."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from kaleido.commands.common import fail, one_line_errors

data_app = typer.Typer(help="Synthetic data and data-file summaries.", no_args_is_help=True)


@data_app.command()
def synth(
    out: Path = typer.Option(..., "--out", help="the HDF5 file to write (a .parts.json goes beside it)"),
    products: int = typer.Option(300, "--products", min=1, help="number of products"),
    seed: int = typer.Option(0, "--seed", help="same seed, byte-identical file"),
    min_poses: int = typer.Option(1, "--min-poses", min=1, help="fewest images per product"),
    max_poses: int = typer.Option(3, "--max-poses", min=1, help="most images per product"),
) -> None:
    """Draw synthetic fashion products into a Fashion-Gen-schema HDF5 file."""
    from kaleido.data.synth import write_synthetic
    from kaleido.progress import bar

    if min_poses > max_poses:
        fail(f"--min-poses {min_poses} is more than --max-poses {max_poses}")
    with bar("drawing", transient=True) as step:
        try:
            write_synthetic(out, products, seed, poses=(min_poses, max_poses), progress=step)
        except (OSError, ValueError) as exc:
            fail(f"{out}: {exc}")
    Console(stderr=True).print(
        f"[green]wrote[/] {out} and {out.name}.parts.json ({products} products, seed {seed})")


def _top(counter, n: int = 8) -> str:
    items = counter.most_common(n)
    text = ", ".join(f"{name or '(empty)'} {count}" for name, count in items)
    return text + (f", ... (+{len(counter) - n})" if len(counter) > n else "")


@data_app.command()
def info(file: Path = typer.Argument(..., help="a .h5 (Fashion-Gen schema) or .jsonl data file")) -> None:
    """Summarise a data file: rows, products, categories, image shape, text decoding fallbacks.

    A JSONL file's images are each decoded in full, as prepare reads them (a check of the data:
    a truncated JPEG has a good header), with a progress bar.
    """
    from kaleido.data.jsonl import JsonlReader
    from kaleido.data.sources import open_file
    from kaleido.progress import bar

    with one_line_errors():  # DataError is a ValueError
        reader = open_file(file)
        if isinstance(reader, JsonlReader):
            with bar("decoding images", total=len(reader), transient=True) as step:
                s = reader.summary(progress=step)
        else:
            s = reader.summary()
    table = Table(title=f"{file}  ({s['format']})", title_justify="left", show_header=False)
    table.add_column(style="bold cyan")
    table.add_column(overflow="fold")  # a long image path wraps whole: an ellipsis hid the file name
    shape = s["image_shape"]
    shape_text = " x ".join(map(str, shape)) if shape else "-"
    if s.get("image_shapes", 1) > 1:
        shape_text += f" (most common of {s['image_shapes']} sizes)"
    table.add_row("rows", str(s["rows"]))
    table.add_row("products", str(s["products"]))
    table.add_row("categories", f"{len(s['categories'])}: {_top(s['categories'])}")
    table.add_row("sub-categories", f"{len(s['subcategories'])}: {_top(s['subcategories'])}")
    table.add_row("image shape", shape_text)
    table.add_row("text decoding fallbacks", str(s["text_fallbacks"]))
    if "skipped_lines" in s:
        table.add_row("skipped lines", str(s["skipped_lines"]))
        table.add_row("unreadable images (fully decoded)", str(s["unreadable_images"]))
        for why in s.get("unreadable", [])[:5]:
            table.add_row("", why)
        if s["unreadable_images"] > 5:
            table.add_row("", f"... and {s['unreadable_images'] - 5} more")
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
