"""Which words a recipe's alignments hold, on data without part boxes (real photos): the most
aligned words of the train split, and rows whose aligned words all share one patch.

Run after `kaleido align RECIPE` (or `kaleido run`); README "Your own data" quotes it:

    .venv/bin/python bench/align_words.py my-data.toml

``--attention`` (sat aligner only) captions the split again and adds, for each word, the median
sharpness of its attention: the mass on the patch it was aligned to per unit of that patch's area,
over the region's (1 = no sharper than a uniform map). docs/ALIGNMENT.md asks of it whether
a word with no place in the picture (a brand) could be told apart by a diffuse attention.
"""

from __future__ import annotations

import argparse
import collections

import numpy as np
import torch

from kaleido.aligners.align import align_dir, build_source, open_alignments
from kaleido.aligners.draw import words_and_boxes
from kaleido.aligners.heatmap import box_mass, density, upsample, word_maps, word_token_positions
from kaleido.recipe import load_recipe


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recipe")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--attention", action="store_true", help="each word's median attention sharpness")
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
    top = count.most_common(args.top)
    if not args.attention:
        print(", ".join(f"{w} {n}" for w, n in top))
        return
    sharp = attention_sharpness(recipe, source, store)
    every = np.concatenate([np.asarray(v) for v in sharp.values()]) if sharp else np.zeros(1)
    print(f"attention sharpness (mass per area of the aligned patch, uniform = 1): median of all aligned "
          f"words {np.median(every):.2f}")
    print(", ".join(f"{w} {n} ({np.median(sharp[w]):.2f})" for w, n in top if w in sharp))


def attention_sharpness(recipe, source, store) -> dict[str, list[float]]:
    """Word -> the sharpness of its averaged attention map on each row it was aligned in: the
    captioner's maps again (the alignment store keeps only the chosen patches), filtered and read
    as :func:`kaleido.aligners.heatmap.row_alignments` reads them for ``select = "density"``."""
    aligner = recipe.build("aligner")
    workdir = align_dir(recipe) / "model"
    model, vocab, hw = aligner.load(workdir)
    grids = aligner.grids(source, workdir, progress=False)
    candidates = np.flatnonzero(np.isin(store.levels, aligner.levels))
    valid = np.flatnonzero(grids["valid"])
    out: dict[str, list[float]] = collections.defaultdict(list)
    for start in range(0, len(valid), 64):
        rows = valid[start:start + 64]
        grid = torch.from_numpy(np.asarray(grids["grid"][rows], dtype=np.float32))
        with torch.inference_mode():
            caps = aligner.caption(model, vocab, grid)
        texts = [source.texts[i] for i in rows]
        for i, cap, text, offs in zip(rows, caps, texts, source.offsets(texts), strict=True):
            maps = word_maps([vocab.itos[t] for t in cap.ids], cap.alphas.numpy(), hw,
                             word_token_positions(text, offs), aligner.stopwords, aligner.skip_words)
            region = grids["regions"][i]
            boxes = np.asarray(store.boxes(int(i)))[candidates]
            for word, ms in maps.items():
                heat = upsample(np.mean(ms, axis=0), (aligner.raster, aligner.raster))
                out[word].append(float(np.max(density(box_mass(heat, region, boxes), region, boxes))))
    return out


if __name__ == "__main__":
    main()
