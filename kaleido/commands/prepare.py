"""`kaleido prepare`, `kaleido show` and `kaleido sod train|eval`: stage 1 and its saliency model."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import typer

from kaleido.atomic import atomic_file
from kaleido.commands.common import RecipeArg, SetOption, console, fail, load, one_line_errors

sod_app = typer.Typer(help="Saliency (SOD): train the `unet` component, measure box IoU.",
                      no_args_is_help=True)


def prepare(recipe: Path = RecipeArg, overrides: list[str] = SetOption,
            split: list[str] = typer.Option(["train", "test"], "--split", metavar="SPLIT",
                                             help="a split to prepare (repeatable)"),
            progress: bool = typer.Option(True, help="show a progress bar")) -> None:
    """Saliency, patching and feature extraction into the feature store (reused when finished).

    Several processes each write their own shard: run it under
    `torchrun --nproc-per-node N -m kaleido.cli prepare RECIPE`, or set RANK and WORLD_SIZE in the
    environment.
    """
    from kaleido.features.prepare import prepare as run_prepare
    from kaleido.features.prepare import store_dir

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    resolved = load(recipe, overrides)
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    out = store_dir(resolved)
    for name in split:
        with one_line_errors():
            report = run_prepare(resolved, name, out, progress=progress and rank == 0, rank=rank,
                                 world_size=world)
        prefix = f"[rank {rank}/{world}] " if world > 1 else ""
        for line in report.lines():
            console.print(prefix + line, highlight=False)


def _load_image(target: str, resolved, split: str):
    """An image file, or row N of the recipe's split: (image, title)."""
    from kaleido.data.images import read_image, to_rgb
    from kaleido.data.rows import BadRow

    path = Path(target)
    if path.is_file():  # decoded as the JSONL reader does: upright, deep grey scaled, alpha on white
        try:
            return to_rgb(read_image(path, 0), 0), path.name
        except BadRow as exc:
            fail(f"{path}: not a usable image ({exc.reason})")
    if not target.lstrip("-").isdigit():
        fail(f"{target}: neither an image file nor a row number")
    reader = resolved.build("data").open(split)
    index, n = int(target), len(reader)
    if not 0 <= index < n:  # checked here: a reader's own IndexError says "list index out of range"
        fail(f"row {index} is out of range: split {split} has {n} rows (0-{n - 1})")
    row = reader.row(index)  # a BadRow is a ValueError: show's one_line_errors reports it
    return row.image, f"{split} row {row.index}: {row.text[:80]}"


def show(target: str = typer.Argument(..., help="an image file, or a row number of the recipe's data"),
         recipe: Path = typer.Option(..., "--recipe", help="the recipe (its sod and patcher are used)"),
         out: Path = typer.Option(Path("layout.png"), "--out", help="PNG to write"),
         split: str = typer.Option("train", help="split for a row number"),
         alignments: bool = typer.Option(False, "--alignments",
                                         help="add a panel: each aligned word at its patch (row numbers)"),
         word: str | None = typer.Option(
             None, "--word", help="add that word's attention heat map; only words the captioner generated "
                                  "for this image have one (for another word, the error shows that caption)"),
         overrides: list[str] = SetOption) -> None:
    """Draw the saliency box and every Kaleido level's grid on an image."""
    from kaleido.patchers.draw import layout_figure

    resolved = load(recipe, overrides)
    if out.is_dir():
        fail(f"--out {out} is a folder: name the PNG file to write")
    with one_line_errors():
        image, title = _load_image(target, resolved, split)
        sod, patcher = resolved.build("sod"), resolved.build("patcher")
        mask = sod.mask(image)
        box, found = sod.box(image)
        layout = patcher.layout(box, image.shape[1], image.shape[0])
        fig = layout_figure(image, layout, box, found=found, mask=mask if found else None, title=title)
        if alignments or word is not None:  # stage-2 panel (kaleido/aligners/show.py)
            _add_alignment_panel(fig, image, target, resolved, split, word)
        with atomic_file(out) as tmp:  # the format from --out's suffix, PNG without one
            fig.savefig(tmp, dpi=110, format=out.suffix[1:].lower() or "png")
    console.print(f"[green]wrote[/] {out} ({len(layout)} patches, "
                  f"{'foreground box' if found else 'no foreground: whole image'})", highlight=False)


def _add_alignment_panel(fig, image, target: str, resolved, split: str, word: str | None) -> None:
    """Append a panel: each aligned word at its patch, and ``word``'s attention heat map if asked."""
    from kaleido.aligners.draw import draw_alignments
    from kaleido.aligners.show import alignment_view

    if not target.lstrip("-").isdigit():
        fail("--alignments and --word need a row number of the recipe's data, not an image file")
    view = alignment_view(resolved, split, int(target), word)  # show's one_line_errors reports failures
    n = len(fig.axes)
    grid = fig.add_gridspec(1, n + 1)
    for k, ax in enumerate(fig.axes):
        ax.set_subplotspec(grid[0, k])
    ax = fig.add_subplot(grid[0, n])
    fig.set_size_inches(fig.get_size_inches()[0] * (n + 1) / n, fig.get_size_inches()[1])
    labels = view.labels  # the words of one patch in one label: drawn apart, they overlapped
    words = len({w for w, _box in view.words_and_boxes})
    ax.set_title(f"{words} aligned word{'s' * (words != 1)} at {len(labels)} patch{'es' * (len(labels) != 1)}"
                 + (f", attention of {word!r}" if word else ""), fontsize=9)
    draw_alignments(ax, image, labels, view.heatmap)
    fig.tight_layout()


def _mask_pairs(resolved, split: str, limit: int | None):
    """(images, masks) from the recipe's data: the synthetic HDF5 files carry ``input_mask``."""
    import h5py

    reader = resolved.build("data").open(split)
    path = getattr(reader, "path", None)
    if path is None:
        fail(f"data {resolved.data.name!r} has no HDF5 file with masks; SOD training needs `synthetic` data")
    with h5py.File(path, "r") as f:
        if "input_mask" not in f:
            fail(f"{path} has no input_mask dataset (only synthetic data carries foreground masks)")
        n = len(f["input_mask"]) if limit is None else min(limit, len(f["input_mask"]))
        return f["input_image"][:n], f["input_mask"][:n]


@sod_app.command("train")
def sod_train(recipe: Path = typer.Option(..., "--recipe", help="recipe with mask data"),
              out: Path = typer.Option(..., "--out", help="weights file to write (.safetensors)"),
              steps: int = typer.Option(300, min=1), batch_size: int = typer.Option(16, min=1),
              size: int = typer.Option(128, min=16), width: int = typer.Option(16, min=2),
              lr: float = typer.Option(3e-3), max_images: int = typer.Option(2000, min=1),
              overrides: list[str] = SetOption) -> None:
    """Train the `unet` SOD on the train split's (image, mask) pairs."""
    from kaleido.sod.train import train_unet
    from kaleido.sod.unet import check_size

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    resolved = load(recipe, overrides)
    with one_line_errors():
        check_size(size)  # before the minutes of loading the mask pairs
        images, masks = _mask_pairs(resolved, "train", max_images)
        result = train_unet(images, masks, out, steps=steps, batch_size=batch_size, size=size, width=width,
                            lr=lr, seed=resolved.seed)
    console.print(f"[green]wrote[/] {out}: {steps} steps on {len(images)} images, final loss "
                  f"{result['final_loss']:.4f}, {result['seconds']:.0f} s; use it with "
                  f"\\[sod] name = \"unet\" weights = \"{out}\" size = {size} width = {width}",
                  highlight=False)


@sod_app.command("eval")
def sod_eval(recipe: Path = typer.Option(..., "--recipe", help="recipe whose \\[sod] is measured"),
             split: str = typer.Option("test", help="held-out split with ground-truth masks"),
             limit: int = typer.Option(500, min=1), overrides: list[str] = SetOption) -> None:
    """Box IoU of the recipe's SOD against the ground-truth masks (synthetic data)."""
    from kaleido.sod.evaluate import sod_box_iou

    resolved = load(recipe, overrides)
    with one_line_errors():
        images, masks = _mask_pairs(resolved, split, limit)
        r = sod_box_iou(resolved.build("sod"), images, masks)
    console.print(f"sod {resolved.sod.name}: box IoU mean {r['mean_iou']:.3f}, median {r['median_iou']:.3f} "
                  f"on {r['n']} {split} images ({r['fallbacks']} without foreground)", highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(prepare)
    app.command()(show)
    app.add_typer(sod_app, name="sod")
