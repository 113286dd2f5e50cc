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


def test_show_of_a_split_the_aligner_does_not_align_says_to_set_aligner_splits(aligned, tmp_path) -> None:
    """It said "run kaleido align first", which writes the train split alone again."""
    from kaleido.cli import app

    path, _, _ = aligned
    res = CliRunner().invoke(app, ["show", "0", "--split", "test", "--alignments", "--recipe", str(path),
                                   "--out", str(tmp_path / "t.png")], env={"COLUMNS": "400"})
    assert res.exit_code == 2, res.output
    assert "no alignments for split 'test' (alignments exist for train only)" in res.output
    assert 'set aligner.splits = ["train", "test"] and run `kaleido align` again' in res.output


def test_the_words_of_one_patch_share_one_label(monkeypatch) -> None:
    """A panel said "3 aligned words" with 2 readable: the labels of one patch lay on each other."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from kaleido.aligners import show
    from kaleido.aligners.show import AlignmentView
    from kaleido.commands.prepare import _add_alignment_panel

    skirt, collar = np.array([10.0, 40.0, 60.0, 90.0]), np.array([20.0, 0.0, 40.0, 20.0])
    view = AlignmentView(0, [("grey", skirt), ("pleated", skirt), ("round", collar), ("grey", collar)])
    monkeypatch.setattr(show, "alignment_view", lambda *args: view)
    fig, _ = plt.subplots()
    _add_alignment_panel(fig, np.zeros((100, 80, 3), np.uint8), "0", None, "train", None)
    panel = fig.axes[-1]
    assert [t.get_text() for t in panel.texts] == ["grey, pleated", "round, grey"]
    assert panel.get_title() == "3 aligned words at 2 patches" and len(panel.patches) == 2
    plt.close(fig)


# -- the synthetic parts file: a file that cannot be read, or that lacks rows, is said, not silent ------
class _Store:
    """Rows whose reader indices are ``sources``."""

    def __init__(self, sources):
        self.sources = list(sources)

    def __len__(self) -> int:
        return len(self.sources)

    def source(self, i):
        return self.sources[int(i)]


class _Recipe:
    def __init__(self, data):
        self.data = data

    def build(self, kind):
        assert kind == "data"
        return self.data


def _parts_file(folder: Path, content) -> Path:
    from kaleido.data.sources import SyntheticData

    data = SyntheticData(dir=str(folder))
    side = data.path("train").with_name("train.h5.parts.json")
    folder.mkdir(parents=True, exist_ok=True)
    side.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return side


def test_an_unreadable_parts_file_is_a_warning_and_a_note(tmp_path, caplog) -> None:
    import logging

    from kaleido.aligners.align import ground_truth
    from kaleido.data.sources import SyntheticData

    cases = {"format": {"format": "kaleido-synth-parts/0", "rows": []}, "json": '{"format": ',
             "rows": {"format": "kaleido-synth-parts/1", "rows": [{"parts": []}]}}
    expected = {"format": "unknown format 'kaleido-synth-parts/0'", "json": "Expecting value",
                "rows": "a row without index / parts (KeyError"}
    for name, content in cases.items():
        side = _parts_file(tmp_path / name, content)
        notes: list[str] = []
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="kaleido.aligners.align"):
            parts = ground_truth(_Recipe(SyntheticData(dir=str(tmp_path / name))), "train", _Store([0, 1]),
                                 notes)
        assert parts is None, name
        assert len(notes) == 1 and notes[0].startswith(f"alignment precision not measured: {side}: "), notes
        assert expected[name] in notes[0], notes
        assert [r.getMessage() for r in caplog.records] == [f"train split: {notes[0]}"]


def test_rows_missing_from_the_parts_file_are_counted(tmp_path, caplog) -> None:
    import logging

    from kaleido.aligners.align import ground_truth
    from kaleido.data.sources import SyntheticData

    part = {"word": "collar", "boxes": [[0, 10, 0, 10]]}
    side = _parts_file(tmp_path, {"format": "kaleido-synth-parts/1",
                                  "rows": [{"index": 0, "parts": [part]}, {"index": 2, "parts": []}]})
    notes: list[str] = []
    with caplog.at_level(logging.WARNING, logger="kaleido.aligners.align"):
        parts = ground_truth(_Recipe(SyntheticData(dir=str(tmp_path))), "train", _Store([0, 1, 2, 3]), notes)
    assert parts == [[part], [], [], []]
    assert notes == [f"{side}: 2 of 4 train rows have no entry; they are given no parts (left out of the "
                     "precision)"]
    assert [r.getMessage() for r in caplog.records] == notes
    notes.clear()
    _parts_file(tmp_path, {"format": "kaleido-synth-parts/1", "rows": [{"index": i, "parts": []}
                                                                       for i in range(4)]})
    assert ground_truth(_Recipe(SyntheticData(dir=str(tmp_path))), "train", _Store([3, 1]), notes) == [[], []]
    assert notes == []  # every row has its entry: nothing to say


def test_the_align_report_says_why_precision_is_missing(aligned, tmp_path, monkeypatch) -> None:
    """The stage itself, on a copy of the fixture's alignments (captioner reused), with the data's
    parts file doctored (and put back after): one of an unknown format leaves the split without
    ``quality`` and with a note; one lacking rows is measured and the note counts them."""
    import shutil

    from kaleido.aligners import align as stage
    from kaleido.data.synth import read_parts
    from kaleido.features.prepare import store_dir
    from kaleido.features.store import FeatureStore

    _, recipe, _ = aligned
    h5 = recipe.build("data").path("train")
    side = h5.with_name(h5.name + ".parts.json")
    original = side.read_text(encoding="utf-8")
    rows = read_parts(h5)
    store = FeatureStore(store_dir(recipe) / "train")
    dropped = {int(r["index"]) for r in rows[:2]}
    lacking = sum(1 for i in range(len(store)) if int(store.source(i)) in dropped)
    assert lacking > 0
    reports = {}
    try:
        for case, content in (("format", {"format": "kaleido-synth-parts/0", "rows": rows}),
                              ("lacking", {"format": "kaleido-synth-parts/1", "rows": rows[2:]})):
            copy = tmp_path / case
            shutil.copytree(stage.align_dir(recipe), copy)
            (copy / stage.REPORT).unlink()
            monkeypatch.setattr(stage, "align_dir", lambda r, copy=copy: copy)
            side.write_text(json.dumps(content), encoding="utf-8")
            reports[case] = stage.align(recipe, progress=False)
            assert reports[case]["fit"]["reused"] and not reports[case]["reused"]
            assert json.loads((copy / stage.REPORT).read_text())["splits"] == json.loads(
                json.dumps(reports[case]["splits"]))
    finally:
        side.write_text(original, encoding="utf-8")
    split = reports["format"]["splits"]["train"]
    assert "quality" not in split
    assert split["quality_notes"] == [f"alignment precision not measured: {side}: unknown format "
                                      "'kaleido-synth-parts/0', expected kaleido-synth-parts/1"]
    split = reports["lacking"]["splits"]["train"]
    assert 0.0 <= split["quality"]["precision"] <= 1.0
    assert split["quality_notes"] == [f"{side}: {lacking} of {len(store)} train rows have no entry; they are "
                                      "given no parts (left out of the precision)"]
