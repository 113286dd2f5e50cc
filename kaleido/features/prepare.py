"""Stage 1, `kaleido prepare`: rows -> saliency box -> Kaleido layout -> backbone -> feature store.

Rows are decoded, converted, saliency-boxed and laid out in DataLoader workers; the backbone
runs batched in the main process; every batch is committed to the shard (see
:mod:`kaleido.features.store`), so an interrupted run continues where it stopped and a finished
store is reused. With several processes (``torch.distributed.run`` or ``RANK``/``WORLD_SIZE``),
rank r takes rows r, r + W, r + 2W ... and writes its own shard; the reader joins the shards.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from kaleido.data.images import to_rgb
from kaleido.data.rows import BadRow, row_name
from kaleido.features.store import (
    FeatureStore,
    ShardWriter,
    SkippedRow,
    shard_name,
    shard_world,
    source_info,
)

log = logging.getLogger(__name__)

PREPARE_SECTIONS = ("data", "sod", "patcher", "backbone", "prepare")
META_FIELDS = ("index", "text", "category", "subcategory", "product_id", "pose")
# Part of every store's key, raised when the same settings start to give other rows, so a store
# of older code is prepared again, not reused: 2 = the background SOD's robust ring spread
# (photos whose product touches the frame got a box round a dark part only, or none).
PREPARE_VERSION = 2


def prepare_key(recipe: Any) -> str:
    """The feature store's key: the preparation sections, :data:`PREPARE_VERSION`, and the data
    files' ``fingerprint()`` where the dataset has one (an edited JSONL file is prepared again)."""
    data = recipe.build("data")
    fingerprint = data.fingerprint() if hasattr(data, "fingerprint") else ""
    upstream = f"data:{fingerprint}/" if fingerprint else ""
    return recipe.section_hash(*PREPARE_SECTIONS, upstream=f"{upstream}v{PREPARE_VERSION}")


def store_dir(recipe: Any, key: str | None = None) -> Path:
    """``<output_dir>/cache/store-<prepare_key>``: shared by matching recipes (``key``: the
    recipe's :func:`prepare_key` when the caller has it, so the data files are hashed once)."""
    return Path(recipe.output_dir) / "cache" / f"store-{key or prepare_key(recipe)}"


@dataclass
class Report:
    """What a prepare run did: rows written, rows skipped (row id, why, how the reader names the
    row: a JSONL row with its line), fallbacks, time."""

    split: str
    path: Path
    rows: int
    skipped: list[SkippedRow] = field(default_factory=list)
    fallbacks: int = 0
    text_fallbacks: int = 0
    seconds: float = 0.0
    reused: bool = False
    resumed_at: int = 0
    passes: int = 0
    source_skipped: list[str] = field(default_factory=list)  # what the reader dropped ("line N: why")
    source_file: str = ""  # the file those lines are of (its name)
    source_note: str = ""  # where the dropped lines of this split's file are reported, when not here

    def lines(self) -> list[str]:
        head = (f"{self.split}: {self.rows} rows in {self.path}"
                + (" (reused)" if self.reused else f", {self.seconds:.1f} s")
                + (f", resumed after {self.resumed_at} rows" if self.resumed_at else ""))
        out = [head, f"  no foreground found (whole image used): {self.fallbacks}",
               f"  text not UTF-8 (read as cp1252): {self.text_fallbacks}", f"  skipped: {len(self.skipped)}"]
        out += [f"    {s.where}: {s.why}" for s in self.skipped[:20]]
        if len(self.skipped) > 20:
            out.append(f"    ... and {len(self.skipped) - 20} more (see the shard manifests)")
        out.append(f"  dropped by the reader (never rows): {len(self.source_skipped)}")
        if self.source_note:
            out.append(f"    ({self.source_note})")
        where = f"{self.source_file} " if self.source_file else ""
        out += [f"    {where}{why}" for why in self.source_skipped[:20]]
        if len(self.source_skipped) > 20:
            out.append(f"    ... and {len(self.source_skipped) - 20} more (see the shard manifests)")
        return out

    def summary(self) -> str:
        """One line of the counts (what `kaleido run` prints per split; ``lines()`` has the reasons)."""
        return (f"{self.split}: {self.rows} rows{' (reused)' if self.reused else ''}, {len(self.skipped)} "
                f"skipped, {len(self.source_skipped)} dropped by the reader, {self.fallbacks} with no "
                f"foreground, {self.text_fallbacks} texts read as cp1252")

    def __str__(self) -> str:
        return "\n".join(self.lines())


def grey_slice(grids: Sequence[int]) -> slice | None:
    """Patch indices of the 4x4 level (the grey-to-colour task's patches), if the layout has one."""
    if 4 not in grids:
        return None
    start = sum(g * g for g in grids[: list(grids).index(4)])
    return slice(start, start + 16)


class _Rows(Dataset):
    """Decoding, conversion, saliency and layout of one row: the CPU part, run in workers."""

    def __init__(self, reader: Any, positions: Sequence[int], sod: Any, patcher: Any) -> None:
        self.reader, self.positions, self.sod, self.patcher = reader, list(positions), sod, patcher

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, j: int) -> dict:
        index = self.positions[j]
        try:
            row = self.reader.row(index)
            image = to_rgb(row.image, index)
            box, found = self.sod.box(image)
            layout = self.patcher.layout(box, image.shape[1], image.shape[0])
        except (OSError, ValueError) as exc:  # a decoder or a shape problem in this row only
            why = exc.reason if isinstance(exc, BadRow) else f"{type(exc).__name__}: {exc}"
            return {"index": index, "bad": why, "where": row_name(self.reader, index)}
        meta = {k: getattr(row, k) for k in META_FIELDS}
        return {"index": index, "meta": meta, "image": image, "layout": layout, "found": found,
                "text_fallback": row.text_fallback}


def _collate(items: list[dict]) -> list[dict]:
    return items


def shard_positions(n_rows: int, max_rows: int | None, rank: int, world_size: int) -> list[int]:
    """Reader rows of this rank: its contiguous block of the first ``max_rows`` rows.

    Blocks, not every ``world_size``-th row: the store joins the shards in rank order, so its rows
    are in reader order however many processes prepared it, and a seed draws the same batches
    (and evaluation the same rows) from a store made by 1 or by 8 processes."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
    total = n_rows if max_rows is None else min(n_rows, max_rows)
    return list(range(rank * total // world_size, (rank + 1) * total // world_size))


def prepare_rows(reader: Any, sod: Any, patcher: Any, backbone: Any, out: Path, key: str, *,
                 dtype: str = "float16", batch_size: int = 16, num_workers: int = 0,
                 max_rows: int | None = None, rank: int = 0, world_size: int = 1,
                 on_batch: Callable[[int, int], None] | None = None,  # (rows done, rows)
                 split: str = "train",
                 on_start: Callable[[int, int], None] | None = None) -> Report:  # (rows done, rows)
    """Write (or continue) this rank's shard of ``out`` from ``reader``; see :func:`prepare`.
    ``on_start`` is called once the rows to do are known (rows a resumed shard has done, this
    rank's rows), before the first batch; ``on_batch`` after each."""
    from kaleido.data.rows import RowMeta

    start_time = time.perf_counter()
    others = sorted({shard_world(p) for p in Path(out).glob("shard-*-of-*")} - {world_size})
    if others:  # shards of another process count: reuse them when finished, never mix the two
        if (done := complete_store(Path(out), key)) is not None:
            return _reused(done, split)
        raise ValueError(f"{out}: an unfinished store written by {others[0]} process(es); continue it with "
                         f"as many (torchrun --nproc-per-node {others[0]}), or delete the folder to start "
                         f"over with {world_size}")
    positions = shard_positions(len(reader), max_rows, rank, world_size)
    grids = tuple(patcher.grids)
    gs = grey_slice(grids)
    spec = {"grids": list(grids), "patches": sum(g * g for g in grids), "feature_dim": backbone.feature_dim,
            "grey": 16 if gs is not None else 0, "dtype": dtype}
    if world_size > 1:  # an unfinished shard of the older strided split is started over, not mixed
        spec["sharding"] = "blocks"
    writer = ShardWriter(Path(out) / shard_name(rank, world_size), key, spec, capacity=len(positions))
    resumed_at = writer.committed
    if writer.done:
        return _report(writer, split, out, start_time, reused=True)
    if resumed_at:
        log.info("%s: continuing %s after %d rows", split, writer.path.name, resumed_at)
    todo = positions[writer.next:]
    loader = DataLoader(_Rows(reader, todo, sod, patcher), batch_size=batch_size, num_workers=num_workers,
                        collate_fn=_collate, persistent_workers=False)
    done_pos = writer.next
    if on_start is not None:
        on_start(done_pos, len(positions))
    passes0 = backbone.passes
    for batch in loader:
        good = [b for b in batch if "bad" not in b]
        skipped = [SkippedRow(b["index"], b["bad"], b["where"]) for b in batch if "bad" in b]
        for s in skipped:  # a JSONL row by its line too, as the dropped lines are
            log.warning("%s: %s skipped: %s", split, s.where, s.why)
        rows: dict[str, np.ndarray] = {}
        if good:
            views = backbone.views([b["image"] for b in good], [b["layout"].boxes for b in good],
                                   rotations=True, grey=gs, grids=grids)
            rows = {"features": views.features.numpy(), "rotations": views.rotations.numpy(),
                    "grey": views.grey.numpy(),
                    "positions": np.stack([b["layout"].positions for b in good]),
                    "boxes": np.stack([b["layout"].boxes for b in good]),
                    "source": np.array([b["index"] for b in good], dtype=np.int64),
                    "fallback": np.array([not b["found"] for b in good], dtype=np.uint8)}
        else:
            rows = {name: np.zeros((0,)) for name in ("features", "rotations", "grey", "positions", "boxes",
                                                       "source", "fallback")}
        done_pos += len(batch)
        writer.commit(rows, [RowMeta(**b["meta"]) for b in good], next_pos=done_pos, skipped=skipped,
                      fallbacks=sum(not b["found"] for b in good),
                      text_fallbacks=sum(b["text_fallback"] for b in good))
        if on_batch is not None:
            on_batch(done_pos, len(positions))
    path = getattr(reader, "path", None)
    writer.finish({"seconds": time.perf_counter() - start_time,
                   "source_skipped": list(getattr(reader, "skipped", [])),
                   "source_file": Path(path).name if path is not None else "",
                   "source_note": getattr(reader, "skipped_note", "")})
    report = _report(writer, split, out, start_time, reused=False)
    report.resumed_at, report.passes = resumed_at, backbone.passes - passes0
    return report


def _reused(store: FeatureStore, split: str) -> Report:
    return Report(split=split, path=store.path, rows=len(store), skipped=store.skipped,
                  fallbacks=store.fallbacks, text_fallbacks=store.text_fallbacks, reused=True,
                  source_skipped=store.source_skipped, **store.source_info)


def _report(writer: ShardWriter, split: str, out: Path, start: float, reused: bool) -> Report:
    m = writer.manifest
    return Report(split=split, path=Path(out), rows=m["committed"],
                  skipped=[SkippedRow.of(s) for s in m["skipped"]], fallbacks=m["fallbacks"],
                  text_fallbacks=m.get("text_fallbacks", 0),
                  seconds=time.perf_counter() - start, reused=reused,
                  source_skipped=list(m.get("source_skipped", [])), **source_info(m))


def complete_store(path: Path, key: str) -> FeatureStore | None:
    """The split folder's store when every shard is finished with this key, else None."""
    try:
        store = FeatureStore(path, require_done=True)
    except (FileNotFoundError, ValueError):
        return None
    return store if store.key == key else None


def is_complete(path: Path, key: str) -> bool:
    """A split folder whose every shard is finished with this key."""
    return complete_store(path, key) is not None


def prepare(recipe: Any, split: str, out_dir: str | Path | None = None, progress: bool = True, rank: int = 0,
            world_size: int = 1) -> Report:
    """Stage 1 for one split into ``<out_dir>/<split>`` (``out_dir`` defaults to :func:`store_dir`).

    A finished store with the same preparation settings is reused as it is; an interrupted one
    continues. Each of ``world_size`` processes writes its own shard; open the result with
    ``FeatureStore(<out_dir>/<split>)`` once all ranks are done.
    """
    key = prepare_key(recipe)
    out = Path(out_dir if out_dir is not None else store_dir(recipe, key)) / split
    if (done := complete_store(out, key)) is not None:  # whatever the process count that wrote it
        return _reused(done, split)
    data = recipe.build("data")
    ensure = getattr(data, "ensure", None)  # a dataset drawn on first use (synthetic): its own bar
    if ensure is not None:
        ensure(progress=progress)
    reader = data.open(split)
    sod, patcher = recipe.build("sod"), recipe.build("patcher")
    if world_size > 1 and torch.cuda.is_available():
        import os

        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", rank % torch.cuda.device_count())))
    backbone = recipe.build("backbone")
    settings = recipe.prepare
    kwargs = dict(dtype=settings.dtype, batch_size=settings.batch_size, num_workers=settings.num_workers,
                  max_rows=settings.max_rows, rank=rank, world_size=world_size, split=split)
    from kaleido.progress import SpeedColumn, bars

    with bars(SpeedColumn(), enabled=progress) as display:
        lines: list = []

        def start(done: int, total: int) -> None:  # the bar starts at its row count (and a resume's rows)
            lines.append(display.add(f"prepare {split}", total, completed=done, resumed=done))

        def tick(done: int, total: int) -> None:  # prepare_rows calls on_start before any batch
            lines[0].update(done, total)

        return prepare_rows(reader, sod, patcher, backbone, out, key, on_batch=tick, on_start=start, **kwargs)
