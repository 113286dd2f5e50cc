"""Which words a recipe's alignments hold, on data without part boxes (real photos): the most
aligned words of the train split, and rows whose aligned words all share one patch.

Run after `kaleido align RECIPE` (or `kaleido run`); README "Your own data" quotes it:

    .venv/bin/python bench/align_words.py my-data.toml
"""

from __future__ import annotations

import argparse
import collections

from kaleido.aligners.align import build_source, open_alignments
from kaleido.aligners.draw import words_and_boxes
from kaleido.recipe import load_recipe


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recipe")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    recipe = load_recipe(args.recipe)
    source, store = build_source(recipe, "train")
    aligned = open_alignments(recipe)
    offsets = source.offsets(source.texts)
    count: collections.Counter[str] = collections.Counter()
    rows_aligned = several = one_patch = 0
    for i, text in enumerate(source.texts):
        pairs = aligned.pairs(i)
        if not pairs:
            continue
        rows_aligned += 1
        words = {w for w, _box in words_and_boxes(text, offsets[i], pairs, store.boxes(i))}
        count.update(words)
        if len(words) >= 2:
            several += 1
            one_patch += len({p for _t, p in pairs}) == 1
    print(f"train rows {len(source.texts)}, with alignments {rows_aligned}, with 2+ aligned words "
          f"{several}, those all on one patch {one_patch}")
    print(", ".join(f"{w} {n}" for w, n in count.most_common(args.top)))


if __name__ == "__main__":
    main()
