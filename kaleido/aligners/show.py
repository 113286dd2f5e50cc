"""What `kaleido show --alignments / --word` draws: a row's stored alignments and a word's attention.

The alignment store is indexed by feature-store row, `show` by reader row: the row is found
through ``FeatureStore.source``. The patch boxes are the store's (the ones the alignments index).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kaleido.aligners.vocab import words as normal_words


@dataclass
class AlignmentView:
    """One row's aligned (word, patch box) list and, on request, a word's heat map (grid, region)."""

    store_row: int
    words_and_boxes: list[tuple[str, np.ndarray]]
    heatmap: tuple[np.ndarray, tuple[int, int, int, int]] | None = None
    caption: list[str] | None = None

    @property
    def labels(self) -> list[tuple[str, np.ndarray]]:
        """One label per patch, its words joined ("grey, dress"): one label per word put the words
        of a patch on top of each other, and only the last drawn was readable."""
        merged: dict[tuple[float, ...], tuple[list[str], np.ndarray]] = {}
        for word, box in self.words_and_boxes:
            merged.setdefault(tuple(np.asarray(box, dtype=float).tolist()), ([], box))[0].append(word)
        return [(", ".join(words), box) for words, box in merged.values()]


def store_row(store: Any, reader_row: int, split: str) -> int:
    """The feature-store row holding reader row ``reader_row`` (one-line error when prepare skipped it)."""
    n = len(store)
    hits = np.flatnonzero(np.asarray(store.source(np.arange(n))) == reader_row) if n else []
    if len(hits) == 0:
        raise ValueError(f"row {reader_row} of split {split!r} is not in the feature store (skipped or not "
                         f"prepared): run `kaleido prepare` on this recipe")
    return int(hits[0])


def missing_alignments(recipe: Any, split: str, aligned: Path) -> str:
    """Why ``split`` has no alignments: `kaleido align` writes only the splits of ``aligner.splits``
    (train alone by default), so running it again does not help until the recipe names the split."""
    from kaleido.aligners.align import splits_of

    splits = splits_of(recipe.build("aligner"))
    if split in splits:
        return f"no alignments at {aligned}: run `kaleido align` on this recipe first"
    done = sorted(p.name for p in aligned.parent.iterdir() if p.is_dir() and p.name != "model") \
        if aligned.parent.is_dir() else []
    exist = f"alignments exist for {', '.join(done)} only" if done else "no split is aligned yet"
    wanted = ", ".join(f'"{s}"' for s in [*splits, split])
    return (f"no alignments for split {split!r} ({exist}): `kaleido align` aligns only aligner.splits "
            f"({', '.join(splits)}); set aligner.splits = [{wanted}] and run `kaleido align` again")


def alignment_view(recipe: Any, split: str, reader_row: int, word: str | None = None) -> AlignmentView:
    """The stored alignments of reader row ``reader_row``; with ``word``, that word's attention map
    from the recipe's trained captioner (re-captioning the image now)."""
    from kaleido.aligners.align import align_dir, build_source, tokenizer_init
    from kaleido.aligners.draw import words_and_boxes
    from kaleido.aligners.store import AlignmentStore
    from kaleido.features.prepare import store_dir
    from kaleido.features.store import FeatureStore
    from kaleido.models.tokenizer import load_tokenizer

    aligned = align_dir(recipe) / split
    if not aligned.is_dir():  # first: a split the aligner is not set to align needs a recipe change
        raise FileNotFoundError(missing_alignments(recipe, split, aligned))
    path = store_dir(recipe) / split
    if not path.is_dir():
        raise FileNotFoundError(f"no feature store at {path}: run `kaleido prepare` first")
    store = FeatureStore(path)
    i = store_row(store, reader_row, split)
    text = store.meta(i).text
    tokenizer = load_tokenizer(tokenizer_init(recipe))
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    pairs = AlignmentStore.open(aligned).pairs(i)
    view = AlignmentView(i, words_and_boxes(text, offsets, pairs, store.boxes(i)))
    if word is not None:
        wanted = normal_words(word)
        if len(wanted) != 1:
            raise ValueError(f"--word takes one word, got {word!r}")
        aligner = recipe.build("aligner")
        if not hasattr(aligner, "attend"):
            raise ValueError(f"aligner {recipe.aligner.name!r} has no attention maps to draw")
        source, _ = build_source(recipe, split)
        caption, maps, region = aligner.attend(source, i, align_dir(recipe) / "model")
        picks = [k for k, w in enumerate(caption) if w == wanted[0]]
        if not picks:
            raise ValueError(f"the captioner did not generate {wanted[0]!r} for this image; its caption: "
                             f"{' '.join(caption)!r}")
        view.heatmap = (np.mean(maps[picks], axis=0), tuple(int(v) for v in region))
        view.caption = caption
    return view
