"""Stage 2 end to end on a tiny prepared store: `align` writes, reuses, and aligns only shared words;
`kaleido show --alignments / --word` draws them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from kaleido.aligners.heatmap import word_token_positions
from kaleido.aligners.vocab import STOPWORDS

pytestmark = pytest.mark.slow  # whole module ~23 s at load ~3 on the shared 2 cores (~75 s at load ~5)

# tests/recipes/tiny.toml (64 pixels) at 5 products, with a SAT captioner trained long enough (and
# without dropout) to caption the few images with their own words; the MiniLM tokenizer.
TINY_OVERRIDES = ["data.products=5", "data.test_products=2", "backbone.batch_size=16",
                  "aligner.image_size=64", "aligner.stride=16", "aligner.epochs=25", "aligner.batch_size=4",
                  "aligner.lr=0.01", "aligner.min_count=1", "aligner.dropout=0.0", "aligner.feature_dim=16",
                  "model.init=minilm"]


@pytest.fixture(scope="module")
def aligned(tmp_path_factory, tiny_recipe):
    """A tiny recipe, its prepared train split and its alignments (first call)."""
    from kaleido.aligners.align import align
    from kaleido.features.prepare import prepare
    from kaleido.recipe import load_recipe

    root = tmp_path_factory.mktemp("align_stage")
    path = tiny_recipe(root, TINY_OVERRIDES)
    recipe = load_recipe(path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: a second thread only fights the other jobs
    try:
        prepare(recipe, "train", progress=False)
        report = align(recipe, progress=False)
    finally:
        torch.set_num_threads(threads)
    return path, recipe, report


def test_alignments_are_written_with_quality_and_reused(aligned) -> None:
    from kaleido.aligners.align import align, align_dir, open_alignments
    from kaleido.features.prepare import store_dir
    from kaleido.features.store import FeatureStore

    _, recipe, report = aligned
    store = FeatureStore(store_dir(recipe) / "train")
    pairs = open_alignments(recipe, "train")
    assert not report["reused"] and len(pairs) == len(store) >= 8
    assert report["fit"]["grid_hw"] == [4, 4]  # stride 16 at 64 pixels: the aligner's own grid
    split = report["splits"]["train"]
    assert split["aligned_rows"] > 0 and split["pairs"] == sum(len(pairs.pairs(i)) for i in range(len(store)))
    levels = store.levels
    assert all(levels[p] in (3, 4, 5) for i in range(len(store)) for _, p in pairs.pairs(i))
    quality = split["quality"]  # synthetic data: precision against the part boxes is measured
    assert 0.0 <= quality["precision"] <= 1.0 and quality["part_words"] > 0
    stamp = (align_dir(recipe) / "train" / "pairs.npy").stat().st_mtime_ns
    again = align(recipe, progress=False)
    assert again["reused"] and again["splits"] == json.loads(json.dumps(report["splits"]))
    assert (align_dir(recipe) / "train" / "pairs.npy").stat().st_mtime_ns == stamp


def test_only_words_both_generated_and_in_the_description_are_aligned(aligned) -> None:
    """Re-caption the cached grids: the aligned tokens are exactly the wordpieces of the non-stop
    words shared by the caption and the description. Each image is then given another row's
    description, so that generated words are missing from it: those never get a pair."""
    from dataclasses import replace

    from kaleido.aligners.align import align_dir, build_source, open_alignments

    _, recipe, _ = aligned
    aligner = recipe.build("aligner")
    source, _store = build_source(recipe, "train")
    workdir = align_dir(recipe) / "model"
    model, vocab, _hw = aligner.load(workdir)
    grids = aligner.grids(source, workdir, progress=False)
    rows = np.flatnonzero(grids["valid"])
    caps = aligner.caption(model, vocab, torch.from_numpy(np.asarray(grids["grid"][rows], dtype=np.float32)))
    generated = {int(i): {vocab.itos[t] for t in cap.ids} for i, cap in zip(rows, caps, strict=True)}

    def expected(texts, i):
        positions = word_token_positions(texts[i], source.offsets([texts[i]])[0])
        shared = {w for w in positions if w in generated[i] and w not in STOPWORDS}
        return {p for w in shared for p in positions[w]}, set(positions)

    stored = open_alignments(recipe, "train")
    for i in rows:
        assert {t for t, _ in stored.pairs(int(i))} == expected(source.texts, int(i))[0]
    swapped = list(source.texts[1:]) + [source.texts[0]]
    pairs, _ = aligner.align(replace(source, texts=swapped), workdir, progress=False)
    absent = 0
    for i in rows:
        want, described = expected(swapped, int(i))
        assert {t for t, _ in pairs[int(i)]} == want
        absent += len(generated[int(i)] - described - STOPWORDS)
    assert absent > 0  # generated words missing from the (swapped) description: none was aligned


def _png_width(path: Path) -> int:
    with Image.open(path) as im:
        return im.size[0]


def test_show_draws_alignments_and_a_word_heat_map(aligned, tmp_path) -> None:
    from kaleido.aligners.align import open_alignments
    from kaleido.aligners.show import alignment_view
    from kaleido.cli import app

    path, recipe, _ = aligned
    pairs = open_alignments(recipe, "train")
    row = next(i for i in range(len(pairs)) if pairs.pairs(i))
    from kaleido.features.prepare import store_dir
    from kaleido.features.store import FeatureStore

    reader_row = FeatureStore(store_dir(recipe) / "train").source(row)
    runner = CliRunner()
    plain, with_align = tmp_path / "plain.png", tmp_path / "aligned.png"
    res = runner.invoke(app, ["show", str(reader_row), "--recipe", str(path), "--out", str(plain)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["show", str(reader_row), "--recipe", str(path), "--out", str(with_align),
                              "--alignments"])
    assert res.exit_code == 0, res.output
    assert _png_width(with_align) > _png_width(plain)  # one more panel: the aligned words

    view = alignment_view(recipe, "train", reader_row)
    assert view.store_row == row and view.words_and_boxes and view.heatmap is None
    word = view.words_and_boxes[0][0]
    heat = alignment_view(recipe, "train", reader_row, word)
    grid, region = heat.heatmap
    assert grid.shape == (4, 4) and grid.sum() == pytest.approx(1.0, abs=1e-4) and word in heat.caption
    out = tmp_path / "word.png"
    res = runner.invoke(app, ["show", str(reader_row), "--recipe", str(path), "--out", str(out),
                              "--word", word])
    assert res.exit_code == 0 and out.is_file(), res.output
    res = runner.invoke(app, ["show", str(reader_row), "--recipe", str(path), "--out", str(out),
                              "--word", "zzzunseen"])
    assert res.exit_code == 2 and "did not generate 'zzzunseen'" in res.output
