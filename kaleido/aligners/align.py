"""Stage 2, `kaleido align`: the recipe's aligner over the feature store -> an AlignmentStore per split.

Output: ``<output_dir>/cache/align-<key>/<split>`` (see :mod:`kaleido.aligners.store`) beside the
feature store, the key hashing the feature store's folder name, the aligner's own ``key()`` and the
tokenizer named by ``[model] init`` (token positions depend on it). A finished store is reused;
the captioner's checkpoint makes an interrupted run continue. On synthetic data the report also
holds the alignment precision against the ground-truth part boxes (:mod:`kaleido.aligners.quality`);
a parts file that cannot be read, or that lacks rows, is a warning and a ``quality_notes`` line in
the split's report (no precision, or the count of rows measured without parts), never silence.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kaleido.aligners.base import AlignSource
from kaleido.aligners.store import META, AlignmentStore, write_store
from kaleido.atomic import write_json

log = logging.getLogger(__name__)

REPORT = "report.json"


def tokenizer_init(recipe: Any) -> str:
    """The ``init`` of the model section: which tokenizer the token positions index."""
    return str(recipe.params("model").get("init", "minilm"))


# Part of the alignments' key, raised when the same settings start to give other pairs, so the
# alignments of older code are made again: 2 = words for whom a product is (men, women, ...)
# skipped with the function words.
ALIGN_VERSION = 2


def align_dir(recipe: Any) -> Path:
    """``<output_dir>/cache/align-<key>``: shared by recipes with the same store, aligner and tokenizer.

    The aligner counts by its own ``key()`` (its settings with defaults filled in, less those
    that only change how it runs: threads, device, checkpoint interval), so a changed default
    is a changed aligner and the component alone says what is a result and what is not."""
    from kaleido.features.prepare import store_dir

    payload = {"store": store_dir(recipe).name, "aligner": recipe.build("aligner").key(),
               "tokenizer": tokenizer_init(recipe), "version": ALIGN_VERSION}
    key = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]
    return Path(recipe.output_dir) / "cache" / f"align-{key}"


def splits_of(aligner: Any) -> list[str]:
    return list(getattr(aligner, "splits", ["train"]))


def build_source(recipe: Any, split: str, backbone: Any = None) -> tuple[AlignSource, Any]:
    """The :class:`AlignSource` of one split of the recipe's feature store (backbone built lazily)."""
    from kaleido.data.images import to_rgb
    from kaleido.features.prepare import store_dir
    from kaleido.features.store import FeatureStore
    from kaleido.models.tokenizer import load_tokenizer

    stores = store_dir(recipe)  # once: its key hashes the data files
    store = FeatureStore(stores / split)
    reader = recipe.build("data").open(split)
    tokenizer = load_tokenizer(tokenizer_init(recipe))
    n = len(store)
    texts = [m.text for m in store.meta(np.arange(n))] if n else []
    sources = np.asarray(store.source(np.arange(n))) if n else np.zeros(0, dtype=np.int64)
    held: dict[str, Any] = {"backbone": backbone}

    def image(i: int) -> np.ndarray:
        return to_rgb(reader.row(int(sources[i])).image, int(sources[i]))

    def feature_map(images: Sequence[np.ndarray], **grid: int):
        if held["backbone"] is None:
            held["backbone"] = recipe.build("backbone")
        return held["backbone"].feature_map(list(images), **grid)

    def offsets(batch: Sequence[str]) -> list[list[tuple[int, int]]]:
        enc = tokenizer(list(batch), add_special_tokens=False, return_offsets_mapping=True)
        return [[tuple(o) for o in offs] for offs in enc["offset_mapping"]]

    source = AlignSource(split=split, texts=texts, image=image, boxes=lambda i: store.boxes(int(i)),
                         levels=store.levels, offsets=offsets, feature_map=feature_map,
                         grid_key=f"{stores.name}/{split}", cache=stores.parent)
    return source, store


def ground_truth(recipe: Any, split: str, store: Any,
                 notes: list[str] | None = None) -> list[list[dict]] | None:
    """Per store row, the part boxes of the synthetic side file; None for data without one.

    A side file that is missing or unreadable (None: precision is not measured), and store rows
    the file has no entry for (given no parts), are each one warning and one line in ``notes``."""
    notes = [] if notes is None else notes
    data = recipe.build("data")
    if not hasattr(data, "path"):
        return None
    from kaleido.data.synth import parts_path, read_parts

    h5 = Path(data.path(split))
    side = parts_path(h5)
    try:
        by_index = {int(r["index"]): r["parts"] for r in read_parts(h5)}
    except (FileNotFoundError, ValueError) as exc:  # ValueError: a JSON error, an unknown format
        reason = str(exc) if str(side) in str(exc) else f"{side}: {exc}"
    except (KeyError, TypeError) as exc:
        reason = f"{side}: a row without index / parts ({type(exc).__name__}: {exc})"
    else:
        reason = None
    if reason is not None:
        note = f"alignment precision not measured: {reason}"
        log.warning("%s split: %s", split, note)
        notes.append(note)
        return None
    sources = [int(store.source(i)) for i in range(len(store))]
    missing = sum(1 for s in sources if s not in by_index)
    if missing:
        note = (f"{side}: {missing} of {len(sources)} {split} rows have no entry; they are given no "
                "parts (left out of the precision)")
        log.warning("%s", note)
        notes.append(note)
    return [by_index.get(s, []) for s in sources]


def _candidate_levels(aligner: Any, levels: np.ndarray) -> list[int]:
    present = {int(v) for v in np.unique(levels)}
    wanted = [lv for lv in getattr(aligner, "levels", [3, 4, 5]) if lv in present]
    return wanted or sorted(present)


def evaluate(recipe: Any, split: str, source: AlignSource, store: Any, aligned: AlignmentStore,
             aligner: Any, notes: list[str] | None = None) -> dict | None:
    """Precision of a split's alignments on the synthetic part words (None without ground truth);
    why it is not measured, or measured on rows lacking parts, is added to ``notes``."""
    from kaleido.aligners.quality import precision

    parts = ground_truth(recipe, split, store, notes)
    if parts is None:
        return None
    n = len(store)
    return precision([aligned.pairs(i) for i in range(n)], source.texts, source.offsets(source.texts),
                     [store.boxes(i) for i in range(n)], store.levels, parts,
                     _candidate_levels(aligner, store.levels))


def align(recipe: Any, progress: bool = True) -> dict:
    """Stage 2 for the recipe: fit the aligner on the training split, align its splits, store them.

    Returns the report (also written to ``<align_dir>/report.json``); a finished run is reused.
    """
    out = align_dir(recipe)
    aligner = recipe.build("aligner")
    splits = splits_of(aligner)
    if (out / REPORT).is_file() and all((out / s / META).is_file() for s in splits):
        return {**json.loads((out / REPORT).read_text(encoding="utf-8")), "reused": True}
    start = time.time()
    out.mkdir(parents=True, exist_ok=True)
    workdir = out / "model"
    sources = {s: build_source(recipe, s) for s in dict.fromkeys(["train", *splits])}
    train_src, _ = sources["train"]
    report: dict = {"path": str(out), "aligner": recipe.aligner.name, "tokenizer": tokenizer_init(recipe),
                    "fit": aligner.fit(train_src, workdir, progress), "splits": {}}
    for split in splits:
        source, store = sources[split]
        rows, split_report = aligner.align(source, workdir, progress)
        meta = {"split": split, "aligner": aligner.key(), "tokenizer": report["tokenizer"],
                "store": str(store.path), "store_key": store.key, "report": split_report}
        aligned = write_store(out / split, rows, meta)
        notes: list[str] = []
        quality = evaluate(recipe, split, source, store, aligned, aligner, notes)
        if quality is not None:
            split_report["quality"] = quality
        if notes:
            split_report["quality_notes"] = notes
        report["splits"][split] = split_report
    report["seconds"] = round(time.time() - start, 1)
    write_json(out / REPORT, report, indent=2, sort_keys=True, default=str)
    return {**report, "reused": False}


def open_alignments(recipe: Any, split: str = "train") -> AlignmentStore:
    """The recipe's alignments of ``split`` (what the pre-training dataset reads)."""
    return AlignmentStore.open(align_dir(recipe) / split)
