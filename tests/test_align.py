"""Alignments: heat map -> patch, words -> wordpieces, the store, and the sat aligner end to end."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from kaleido import registry
from kaleido.aligners.base import AlignSource
from kaleido.aligners.heatmap import (
    box_mass,
    choose_patches,
    density,
    row_alignments,
    upsample,
    word_token_positions,
)
from kaleido.aligners.quality import overlaps, precision
from kaleido.aligners.store import AlignmentStore, write_store
from kaleido.aligners.vocab import Vocab, words
from kaleido.data.rows import BadRow


def kaleido_boxes(region: tuple[float, float, float, float], grids=(1, 2, 3, 4, 5)):
    """Patch boxes and levels in the store's order: level by level, row-major."""
    x0, y0, x1, y1 = region
    boxes, levels = [], []
    for level, g in enumerate(grids, 1):
        w, h = (x1 - x0) / g, (y1 - y0) / g
        for r in range(g):
            for c in range(g):
                boxes.append([x0 + c * w, y0 + r * h, x0 + (c + 1) * w, y0 + (r + 1) * h])
                levels.append(level)
    return np.array(boxes), np.array(levels)


@pytest.fixture(scope="module")
def tokenizer():
    from kaleido.models.tokenizer import load_tokenizer

    return load_tokenizer("minilm")


def offsets_of(tokenizer, text):
    return tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]


# -- heat map -> patch ---------------------------------------------------------------------------
def test_box_mass_is_exact_for_fractional_boxes_and_clips_to_region() -> None:
    heat = upsample(np.ones((7, 7)), (64, 64))
    assert heat.sum() == pytest.approx(1.0)
    region = (10.0, 20.0, 110.0, 220.0)  # 100 x 200 pixels
    boxes = np.array([[10, 20, 110, 220], [10, 20, 60, 220], [10, 20, 43.3, 86.7], [-50, -50, 10, 20],
                      [60, 120, 500, 500]])
    mass = box_mass(heat, region, boxes)
    np.testing.assert_allclose(mass, [1.0, 0.5, (33.3 / 100) * (66.7 / 200), 0.0, 0.25], atol=1e-6)
    # a uniform map is 1 per unit of area share inside the region (bench/align_words.py's scale)
    np.testing.assert_allclose(density(mass[:3], region, boxes[:3]), [1.0, 1.0, 1.0], atol=1e-4)


def test_patch_chosen_for_a_hand_made_heat_map() -> None:
    region = (0.0, 0.0, 250.0, 250.0)
    boxes, levels = kaleido_boxes(region)
    grid = np.zeros((5, 5))
    grid[3, 1] = 1.0  # all attention on the 5x5 cell of row 3, column 1 -> pixels x 50..100, y 150..200
    heat = upsample(grid, (100, 100))
    five = 1 + 4 + 9 + 16 + 3 * 5 + 1  # index of that 5x5 patch
    assert choose_patches(heat, region, boxes, levels, [3, 4, 5], "density") == [five]
    corner = np.zeros((5, 5))
    corner[0, 0] = 1.0  # the top-left 3x3 patch (0..83 px) holds everything the 5x5 and 4x4 ones hold
    assert choose_patches(upsample(corner, (100, 100)), region, boxes, levels, [3, 4, 5], "mass") == [5]
    per_level = choose_patches(heat, region, boxes, levels, [3, 4, 5], "per_level")
    assert [levels[p] for p in per_level] == [3, 4, 5] and per_level[-1] == five
    centre = np.array([75.0, 175.0])
    for p in per_level:  # each level's best patch contains the peak's centre
        x1, y1, x2, y2 = boxes[p]
        assert x1 <= centre[0] <= x2 and y1 <= centre[1] <= y2
    assert choose_patches(heat, region, boxes, levels, [7], "density") == []


def test_heat_map_over_a_cropped_region_maps_to_image_pixels() -> None:
    region = (100.0, 40.0, 200.0, 240.0)  # the captioner saw only this crop
    boxes, levels = kaleido_boxes(region)
    grid = np.zeros((4, 4))
    grid[0, 3] = 1.0  # top-right of the crop
    [p] = choose_patches(upsample(grid, (64, 64)), region, boxes, levels, [5], "density")
    assert p == 1 + 4 + 9 + 16 + 4  # 5x5 row 0, column 4
    np.testing.assert_allclose(boxes[p], [180, 40, 200, 80])


# -- words and wordpieces ------------------------------------------------------------------------
def test_word_token_positions_cover_every_wordpiece_of_every_occurrence(tokenizer) -> None:
    text = "Navy drawstring hoodie. A drawstring hood, ribbed cuffs."
    offs = offsets_of(tokenizer, text)
    pieces = tokenizer.convert_ids_to_tokens(tokenizer(text, add_special_tokens=False)["input_ids"])
    pos = word_token_positions(text, offs)
    assert set(pos) == set(words(text))
    for word, positions in pos.items():
        assert "".join(pieces[p].removeprefix("##") for p in positions) == word * words(text).count(word)
    assert len(pos["drawstring"]) == 2 * len(tokenizer.tokenize("drawstring"))
    assert "." not in "".join(pieces[p] for ps in pos.values() for p in ps)


def test_only_words_of_the_original_description_are_aligned(tokenizer) -> None:
    text = "Red shirt with a pointed collar and chest pocket."
    region = (0.0, 0.0, 100.0, 100.0)
    boxes, levels = kaleido_boxes(region)
    caption = ["blue", "shirt", "with", "collar", "collar"]  # "blue" is not in the description
    alphas = np.full((5, 3, 3), 1 / 9)
    alphas[3] = 0.0
    alphas[3, 0, 0] = 1.0
    pairs = row_alignments(caption, alphas.reshape(5, 9), (3, 3), text, offsets_of(tokenizer, text), region,
                           boxes, levels, [3, 4, 5], "density")
    pieces = tokenizer.convert_ids_to_tokens(tokenizer(text, add_special_tokens=False)["input_ids"])
    aligned = {pieces[t] for t, _ in pairs}
    assert aligned == {"shirt", "collar"}  # not "blue" (absent), not "with" (a stop word)
    [collar_patch] = {p for t, p in pairs if pieces[t] == "collar"}
    # the mean of the two "collar" maps still peaks top-left
    assert boxes[collar_patch][0] == 0 and boxes[collar_patch][1] == 0
    with_stop = row_alignments(caption, alphas.reshape(5, 9), (3, 3), text, offsets_of(tokenizer, text),
                               region, boxes, levels, [3, 4, 5], "density", skip_stopwords=False)
    assert "with" in {pieces[t] for t, _ in with_stop}


def test_words_for_whom_a_product_is_are_not_aligned(tokenizer) -> None:
    """Catalogue titles name the wearer ("Lee Men Blue Jeans"): a whole product, no place in it."""
    text = "Lee Men Blue Chicago Fit Jeans for Women"
    region = (0.0, 0.0, 100.0, 100.0)
    boxes, levels = kaleido_boxes(region)
    caption = ["men", "blue", "jeans", "women"]
    pairs = row_alignments(caption, np.full((4, 9), 1 / 9), (3, 3), text, offsets_of(tokenizer, text), region,
                           boxes, levels, [3, 4, 5], "density")
    pieces = tokenizer.convert_ids_to_tokens(tokenizer(text, add_special_tokens=False)["input_ids"])
    assert {pieces[t] for t, _ in pairs} == {"blue", "jeans"}



def test_skip_words_of_ones_own_are_not_aligned(tokenizer) -> None:
    """A catalogue's brands are generated and aligned like any word; ``skip_words`` (given as
    written, normalised like the text) leaves them out, here "Lee" and "Levi's"."""
    text = "Lee Men Blue Jeans by Levi's"
    region = (0.0, 0.0, 100.0, 100.0)
    boxes, levels = kaleido_boxes(region)
    caption = ["lee", "blue", "jeans", "levi"]
    aligner = registry.aligners.get("sat")(skip_words=["LEE", "Levi's"])
    assert aligner.skip_words == {"lee", "levi", "s"}
    assert "skip_words" in aligner.key() and "skip_words" not in aligner._train_key()
    pieces = tokenizer.convert_ids_to_tokens(tokenizer(text, add_special_tokens=False)["input_ids"])
    for skip, kept in (((), {"lee", "blue", "jeans", "levi"}), (aligner.skip_words, {"blue", "jeans"})):
        pairs = row_alignments(caption, np.full((4, 9), 1 / 9), (3, 3), text, offsets_of(tokenizer, text),
                               region, boxes, levels, [3, 4, 5], "density", skip_words=skip)
        assert {pieces[t] for t, _ in pairs} == kept

def test_vocab_round_trip(tmp_path) -> None:
    vocab = Vocab.build(["Red shirt, red collar.", "Blue shirt", "Café collar"], min_count=2)
    assert vocab.itos[4:] == ["collar", "red", "shirt"]  # by count, then alphabetically; "café" once
    ids = vocab.encode("A red SHIRT", max_len=10)
    assert ids[0] == vocab.start and ids[-1] == vocab.end and vocab.unk in ids
    assert vocab.decode(ids[1:]) == ["red", "shirt"]
    vocab.save(tmp_path / "v.json")
    assert Vocab.load(tmp_path / "v.json").itos == vocab.itos
    assert words("Café crème T-shirt") == ["cafe", "creme", "t", "shirt"]


# -- the store -----------------------------------------------------------------------------------
def test_alignment_store_round_trip_and_atomic_replace(tmp_path) -> None:
    rows = [[(0, 12), (1, 12)], [], [(5, 54)]]
    store = write_store(tmp_path / "train", rows, {"aligner": {"name": "test"}})
    again = AlignmentStore.open(tmp_path / "train")
    assert [again.pairs(i) for i in range(3)] == rows and len(again) == 3
    assert again.meta["pairs"] == 3 and again.meta["rows_with_pairs"] == 2 and store.rows_with_pairs() == 2
    write_store(tmp_path / "train", [[(2, 3)]], {})
    assert AlignmentStore.open(tmp_path / "train").pairs(0) == [(2, 3)]
    assert [p.name for p in tmp_path.iterdir()] == ["train"]  # no temporary folder left behind
    with pytest.raises(IndexError):
        again.pairs(3)
    with pytest.raises(FileNotFoundError, match="kaleido align"):
        AlignmentStore.open(tmp_path / "missing")


def test_precision_counts_overlap_and_exact_random_baseline(tokenizer) -> None:
    region = (0.0, 0.0, 100.0, 100.0)
    boxes, levels = kaleido_boxes(region)
    text = "Shirt with a collar and a pocket"
    offs = offsets_of(tokenizer, text)
    pos = word_token_positions(text, offs)
    collar5 = 30  # 5x5 row 0, column 0: box 0..20 x 0..20
    pocket5 = 30 + 24  # 5x5 bottom right
    pairs = [[(pos["collar"][0], collar5), (pos["pocket"][0], pocket5)]]
    parts = [[{"word": "collar", "boxes": [[0, 0, 10, 10]]}, {"word": "pocket", "boxes": [[0, 0, 10, 10]]},
              {"word": "sleeves", "boxes": [[50, 50, 60, 60]]}]]
    q = precision(pairs, [text], [offs], [boxes], levels, parts, [3, 4, 5])
    assert q["items"] == 2 and q["precision"] == 0.5 and q["part_words"] == 2  # "sleeves" is not in the text
    # one 5x5 patch of 25 overlaps a 10x10 box in the corner
    assert q["random_same_level"] == pytest.approx(1 / 25)
    touching = overlaps(np.array([[0, 0, 10, 10], [10, 0, 20, 10]]), np.array([[5, 5, 10, 10]]))
    assert touching.tolist() == [True, False]  # sharing an edge is no overlap


def test_stricter_precision_needs_the_patch_centre_inside_the_part(tokenizer) -> None:
    boxes, levels = kaleido_boxes((0.0, 0.0, 100.0, 100.0))
    text = "Shirt with a red collar"
    offs = offsets_of(tokenizer, text)
    pos = word_token_positions(text, offs)
    parts = [[{"word": "collar", "boxes": [[0, 0, 25, 25]]}]]
    corner, beside = 30, 31  # 5x5 patches 0..20 and 20..40 (centres x = 10 and 30)
    inside = precision([[(pos["collar"][0], corner)]], [text], [offs], [boxes], levels, parts, [3, 4, 5])
    touching = precision([[(pos["collar"][0], beside)]], [text], [offs], [boxes], levels, parts, [3, 4, 5])
    assert inside["precision"] == touching["precision"] == 1.0  # both overlap the 25 x 25 box
    assert inside["precision_centre"] == 1.0 and touching["precision_centre"] == 0.0
    # 4 of the 25 5x5 patches overlap the box, only 1 has its centre inside it
    assert inside["random_same_level"] == pytest.approx(4 / 25)
    assert inside["random_centre_same_level"] == pytest.approx(1 / 25)
    assert inside["ratio_centre_vs_random"] == pytest.approx(25.0)


def test_none_aligner_gives_no_alignments() -> None:
    aligner = registry.aligners.get("none")()
    src = AlignSource("train", ["a", "b"], image=None, boxes=None, levels=np.array([1]), offsets=None,
                      feature_map=None)
    rows, report = aligner.align(src, None)
    assert rows == [[], []] and report["aligned_rows"] == 0


# -- the sat aligner end to end ------------------------------------------------------------------
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 60), "blue": (40, 60, 230)}


def _blob_source(n: int = 24, size: int = 40) -> tuple[AlignSource, list[tuple[str, int, int]]]:
    """Images with one coloured square in a random 5x5 cell; the text names its colour."""
    rng = np.random.default_rng(0)
    boxes, levels = kaleido_boxes((0.0, 0.0, float(size), float(size)))
    images, texts, truth = [], [], []
    for i in range(n):
        colour = list(COLOURS)[i % 3]
        r, c = int(rng.integers(5)), int(rng.integers(5))
        img = np.full((size, size, 3), 245, np.uint8)
        s = size // 5
        img[r * s:(r + 1) * s, c * s:(c + 1) * s] = COLOURS[colour]
        images.append(img)
        texts.append(f"{colour} square on white")
        truth.append((colour, r, c))
    images[5] = None  # an unreadable row: skipped and counted

    def image(i):
        if images[i] is None:
            raise BadRow(i, "truncated image", where=f"row {i} (pairs.jsonl line {i + 2})")
        return images[i]

    def feature_map(batch):  # centred colour channels pooled to a 5x5 grid
        x = torch.stack([torch.as_tensor(b).permute(2, 0, 1).float() / 255 for b in batch])
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        return 4 * (torch.nn.functional.avg_pool2d(x, size // 5) - 0.5)

    from kaleido.models.tokenizer import load_tokenizer

    tok = load_tokenizer("minilm")
    src = AlignSource("train", texts, image, lambda i: boxes, levels,
                      lambda ts: tok(list(ts), add_special_tokens=False, return_offsets_mapping=True)[
                          "offset_mapping"], feature_map, grid_key="blobs")
    return src, truth



def test_sat_names_a_skipped_image_by_its_file_line(tmp_path, caplog) -> None:
    """An image unreadable at align time (changed after prepare) is logged by store row and by
    where the data file has it, not by the store row alone."""
    src, _ = _blob_source()
    aligner = registry.aligners.get("sat")(feature_dim=16)
    with caplog.at_level(logging.WARNING, logger="kaleido.aligners.sat"):
        grids = aligner.grids(src, tmp_path, progress=False)
    assert grids["skipped"] == 1 and not grids["valid"][5] and grids["valid"].sum() == 23
    assert "store row 5, row 5 (pairs.jsonl line 7): truncated image" in caplog.text


class _Stop(Exception):
    """An interruption of the captioner's training (a stand-in for a kill)."""


def _stop_at(step: int):
    def on_step(done: int) -> None:
        if done == step:
            raise _Stop

    return on_step


@pytest.mark.slow
def test_sat_fits_resumes_exactly_and_aligns_colour_words(tmp_path, one_thread) -> None:
    src, truth = _blob_source()
    make = registry.aligners.get("sat")
    kw = dict(feature_dim=16, embed_dim=8, hidden_dim=24, attention_dim=8, dropout=0.0, epochs=40,
              batch_size=8, lr=1e-2, min_count=1, checkpoint_every=5, select="density", alpha_c=0.0)
    straight = make(**kw).fit(src, tmp_path / "a", progress=False)
    assert straight["skipped_images"] == 1 and straight["train_rows"] == 23
    assert straight["final_ce"] < 0.5 * straight["first_ce"]

    with pytest.raises(_Stop):
        make(**kw).fit(src, tmp_path / "b", progress=False, on_step=_stop_at(13))
    saved = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)
    assert (saved["step"], saved["epoch"], saved["batch"]) == (12, 4, 0)  # 3 steps an epoch: epoch 4's end
    seen: list[int] = []
    resumed = make(**kw).fit(src, tmp_path / "b", progress=False, on_step=seen.append)
    assert resumed["steps"] == straight["steps"] and not resumed["reused"]
    assert seen == list(range(13, straight["steps"] + 1))  # went on from the checkpoint, not from step 1
    a = torch.load(tmp_path / "a" / "captioner.pt", weights_only=False)["state"]
    b = torch.load(tmp_path / "b" / "captioner.pt", weights_only=False)["state"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert make(**kw).fit(src, tmp_path / "a", progress=False)["reused"]

    rows, report = make(**kw).align(src, tmp_path / "a", progress=False)
    assert rows[5] == [] and report["skipped_images"] == 1
    tok_pos = [word_token_positions(t, o) for t, o in zip(src.texts, src.offsets(src.texts), strict=True)]
    hits = total = 0
    boxes, _ = kaleido_boxes((0.0, 0.0, 40.0, 40.0))
    for i, pairs in enumerate(rows):
        allowed = {p for ps in tok_pos[i].values() for p in ps}
        assert {t for t, _ in pairs} <= allowed
        colour, r, c = truth[i]
        for t, p in pairs:
            if t in tok_pos[i][colour]:
                total += 1
                hits += bool(overlaps(boxes[p:p + 1], np.array([[c * 8, r * 8, c * 8 + 8, r * 8 + 8]]))[0])
    # the colour word's attention finds its square far more often than a random 5x5 patch (9/25 overlap)
    assert total >= 20 and hits / total > 0.8


def test_draw_alignments_labels_each_aligned_word_at_its_patch(tokenizer, tmp_path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from kaleido.aligners.draw import draw_alignments, words_and_boxes

    text = "Black drawstring hoodie with a kangaroo pocket"
    boxes, _ = kaleido_boxes((0.0, 0.0, 100.0, 100.0))
    pos = word_token_positions(text, offsets_of(tokenizer, text))
    pairs = [(p, 40) for p in pos["drawstring"]] + [(pos["pocket"][0], 52)]
    wb = words_and_boxes(text, offsets_of(tokenizer, text), pairs, boxes)
    assert [(w, b.tolist()) for w, b in wb] == [("drawstring", boxes[40].tolist()),
                                                ("pocket", boxes[52].tolist())]
    fig, ax = plt.subplots()
    draw_alignments(ax, np.zeros((100, 100, 3), np.uint8), wb, heatmap=(np.eye(3), (0, 0, 100, 100)))
    assert [t.get_text() for t in ax.texts] == ["drawstring", "pocket"]
    assert len(ax.patches) == 2 and len(ax.images) == 2
    fig.savefig(tmp_path / "a.png")
    plt.close(fig)
    assert (tmp_path / "a.png").stat().st_size > 1000


def test_labels_of_patches_that_share_a_corner_do_not_overlap() -> None:
    """The first cells of the 3x3, 4x4 and 5x5 grids share the top-left corner: three labels."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from kaleido.aligners.draw import draw_alignments

    boxes = [np.array([0.0, 0.0, 100 / g, 100 / g]) for g in (3, 4, 5)]
    fig, ax = plt.subplots()
    draw_alignments(ax, np.zeros((100, 100, 3), np.uint8), list(zip(["collar", "red", "sleeve"], boxes,
                                                                      strict=True)))
    fig.canvas.draw()
    extents = [t.get_window_extent() for t in ax.texts]
    assert [t.get_text() for t in ax.texts] == ["collar", "red", "sleeve"]
    assert not any(a.overlaps(b) for i, a in enumerate(extents) for b in extents[i + 1:])
    plt.close(fig)


def test_align_command_without_a_feature_store_fails_in_one_line(tmp_path) -> None:
    from typer.testing import CliRunner

    from kaleido.cli import app

    recipe = tmp_path / "r.toml"
    recipe.write_text(f'output_dir = "{tmp_path}/runs"\n[data]\nname = "synthetic"\ndir = "{tmp_path}/d"\n'
                      '[aligner]\nname = "sat"\n')
    result = CliRunner().invoke(app, ["align", str(recipe), "--no-progress"])
    assert result.exit_code == 2
    assert "no feature store" in result.output and "kaleido prepare" in result.output


def test_alignment_key_counts_the_aligner_defaults_but_not_its_threads() -> None:
    """A default set explicitly is the same aligner (same store); another value, or a changed
    default, is another one; CPU threads change the speed only."""
    from kaleido.aligners.align import align_dir
    from kaleido.recipe.load import load_recipe

    def key(*sets: str):
        return align_dir(load_recipe("recipes/quickstart.toml", ["output_dir=/tmp/x", *sets])).name

    assert key() == key("aligner.alpha_c=1.0") == key("aligner.threads=2")
    assert key() != key("aligner.alpha_c=0.5")


@pytest.mark.slow
def test_low_level_pixels_let_the_attention_find_a_colour_the_deep_map_hides(tmp_path, one_thread) -> None:
    """The synthetic data's failure mode in miniature: the "deep" map gives every image its own
    fixed random cells (memorisable, colour-blind), so the colour word cannot be localised from it;
    with ``low_level = 1`` the cells also carry their mean normalised colour, weighted up by
    ``low_scale`` against the deep channels, and the colour word's attention lands on its square."""
    src, truth = _blob_source()
    size = 40

    def feature_map(batch, stride=None, image_size=None):
        x = torch.stack([torch.as_tensor(b).permute(2, 0, 1).float() / 255 for b in batch])
        if stride == 1:
            return 4 * (x - 0.5)
        seeds = [int(b.sum()) % 10_000 for b in batch]  # the image's identity, not its colours
        return torch.stack([torch.randn(6, 5, 5, generator=torch.Generator().manual_seed(s)) for s in seeds])

    src.feature_map = feature_map
    make = registry.aligners.get("sat")
    kw = dict(feature_dim=16, embed_dim=8, hidden_dim=24, attention_dim=8, dropout=0.0, epochs=40,
              batch_size=8, lr=1e-2, min_count=1, select="density", alpha_c=0.0, global_init=False)
    boxes, _ = kaleido_boxes((0.0, 0.0, float(size), float(size)))
    tok_pos = [word_token_positions(t, o) for t, o in zip(src.texts, src.offsets(src.texts), strict=True)]

    def hit_rate(low_level: int, low_scale: float = 1.0) -> float:
        aligner = make(low_level=low_level, low_scale=low_scale, **kw)
        aligner.fit(src, tmp_path / str(low_level), progress=False)
        rows, _ = aligner.align(src, tmp_path / str(low_level), progress=False)
        hits = total = 0
        for i, pairs in enumerate(rows):
            if i == 5:
                continue
            colour, r, c = truth[i]
            for t, p in pairs:
                if t in tok_pos[i][colour]:
                    total += 1
                    square = np.array([[c * 8, r * 8, c * 8 + 8, r * 8 + 8]])
                    hits += bool(overlaps(boxes[p:p + 1], square)[0])
        assert total >= 15
        return hits / total

    assert hit_rate(1, low_scale=4.0) > 0.8  # a random 5x5 patch overlaps the square 9/25 of the time
    assert hit_rate(0) < 0.6


def test_grid_dropout_changes_training_only_and_is_validated(tmp_path, one_thread) -> None:
    """``grid_dropout`` drops grid cells' values while training (against memorising an image by
    its exact features): another captioner and another store key, same decoding code path."""
    src, _ = _blob_source(n=8)
    make = registry.aligners.get("sat")
    kw = dict(feature_dim=8, embed_dim=4, hidden_dim=8, attention_dim=4, epochs=2, batch_size=4, min_count=1)
    states = []
    for p in (0.0, 0.5):
        make(grid_dropout=p, **kw).fit(src, tmp_path / str(p), progress=False)
        states.append(torch.load(tmp_path / str(p) / "captioner.pt", weights_only=False)["state"])
    assert any(not torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert make(grid_dropout=0.5, **kw).key() != make(**kw).key()
    with pytest.raises(ValueError, match="grid_dropout"):
        make(grid_dropout=1.0)


def test_cells_resample_the_attention_grid_finer_than_the_backbone_map(tmp_path) -> None:
    """``cells = N``: each deep cell repeated over the N x N cells it covers, the pixels pooled to
    N x N, stored as an N x N grid under its own cache key; decoding then maps N x N attention."""
    src, _ = _blob_source()
    size = 40

    def feature_map(batch, stride=None, image_size=None):
        x = torch.stack([torch.as_tensor(b).permute(2, 0, 1).float() / 255 for b in batch])
        if stride == 1:
            return x
        return torch.nn.functional.avg_pool2d(x, size // 5) + 10.0  # a 5 x 5 "deep" map, 3 channels

    src.feature_map = feature_map
    make = registry.aligners.get("sat")
    fine, coarse = make(low_level=1, cells=10), make(low_level=1)
    images = [src.image(i) for i in (0, 1)]
    grid = fine._feature_map(src, images)
    assert grid.shape == (2, 6, 10, 10)
    deep = feature_map(images)
    torch.testing.assert_close(grid[:, :3], deep.repeat_interleave(2, -2).repeat_interleave(2, -1))
    pixels = torch.stack([torch.as_tensor(b).permute(2, 0, 1).float() / 255 for b in images])
    torch.testing.assert_close(grid[:, 3:], torch.nn.functional.avg_pool2d(pixels, 4))
    assert coarse._feature_map(src, images).shape == (2, 6, 5, 5)
    assert fine._grid_dir(src, tmp_path) != coarse._grid_dir(src, tmp_path)
    assert fine.grids(src, tmp_path, progress=False)["hw"] == (10, 10)
    assert fine.key()["cells"] == 10 and coarse.key()["cells"] == 0
    with pytest.raises(ValueError, match="cells must be 0"):
        make(cells=-1)


def test_sat_key_holds_every_setting_that_can_change_the_alignments() -> None:
    """The store key is read from the constructor's own arguments: a new setting cannot be left out
    (a missing one would make two different aligners share one alignment store)."""
    import inspect

    from kaleido.aligners.sat import _NOT_IN_KEY, SATAligner

    params = set(inspect.signature(SATAligner.__init__).parameters) - _NOT_IN_KEY
    key = SATAligner(low_level=1, low_key=True, levels=[4, 5]).key()
    assert set(key) == params | {"name"}
    assert key["low_key"] is True and key["levels"] == [4, 5]
    assert SATAligner(low_level=1, low_key=True).key() != SATAligner(low_level=1).key()
    assert SATAligner(threads=2, checkpoint_every=7).key() == SATAligner().key()


def test_sat_resume_restores_the_dropout_streams_and_ignores_a_stale_checkpoint(tmp_path, one_thread) -> None:
    """With dropout and word dropout on, an interrupted run resumes to the straight run's weights
    (the random streams come back with the checkpoint); a checkpoint of other settings in the
    folder does not change a fresh run's streams."""
    src, _ = _blob_source()
    make = registry.aligners.get("sat")
    kw = dict(feature_dim=8, embed_dim=4, hidden_dim=8, attention_dim=4, dropout=0.3, word_dropout=0.3,
              epochs=3, batch_size=8, min_count=1, checkpoint_every=2)
    make(**kw).fit(src, tmp_path / "a", progress=False)

    with pytest.raises(_Stop):
        make(**kw).fit(src, tmp_path / "b", progress=False, on_step=_stop_at(5))
    torch.manual_seed(123)  # the resumed process's own streams differ
    seen: dict[str, list[int]] = {"b": [], "c": []}
    make(**kw).fit(src, tmp_path / "b", progress=False, on_step=seen["b"].append)
    with pytest.raises(_Stop):  # a stale checkpoint (other lr) left in folder c
        make(**{**kw, "lr": 5e-3}).fit(src, tmp_path / "c", progress=False, on_step=_stop_at(5))
    torch.manual_seed(456)
    make(**kw).fit(src, tmp_path / "c", progress=False, on_step=seen["c"].append)
    # 23 rows, 3 batches an epoch, 9 steps: b went on after its checkpoint of step 4; c started over
    assert seen == {"b": list(range(5, 10)), "c": list(range(1, 10))}
    states = [torch.load(tmp_path / d / "captioner.pt", weights_only=False)["state"] for d in "abc"]
    for other in states[1:]:
        assert all(torch.equal(states[0][k], other[k]) for k in states[0])


def test_sat_non_finite_loss_stops_with_one_line_and_keeps_the_last_checkpoint(tmp_path, monkeypatch,
                                                                                one_thread) -> None:
    import kaleido.aligners.sat as sat

    src, _ = _blob_source()
    calls = {"n": 0}
    real = sat.caption_loss

    def nan_from_third(*args, **kwargs):
        calls["n"] += 1
        loss, ce = real(*args, **kwargs)
        return (loss * float("nan"), ce) if calls["n"] >= 3 else (loss, ce)

    monkeypatch.setattr(sat, "caption_loss", nan_from_third)
    aligner = registry.aligners.get("sat")(feature_dim=8, embed_dim=4, hidden_dim=8, attention_dim=4,
                                           epochs=3, batch_size=8, min_count=1, checkpoint_every=2)
    with pytest.raises(ValueError, match=r"not finite at epoch 1, step 3") as info:
        aligner.fit(src, tmp_path, progress=False)
    assert "\n" not in str(info.value)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert ckpt["step"] == 2 and all(torch.isfinite(v).all() for v in ckpt["model"].values())
    assert not (tmp_path / "captioner.pt").exists()
    from kaleido.aligners.heatmap import upsample

    with pytest.raises(ValueError, match="non-finite"):
        upsample(np.full((2, 2), np.nan), (4, 4))
