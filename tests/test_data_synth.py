"""Synthetic data: schema, determinism, poses, part boxes and fine-grained distinctions."""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from pathlib import Path

import h5py
import numpy as np
import pytest

from kaleido.data.synth import CATEGORIES, COLOURS, PART_COLOURS, SUBCATEGORIES, read_parts, write_synthetic


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def synth_file(tmp_path_factory) -> Path:
    # 30 products cover every sub-category once (24) plus a few; 2-3 poses each.
    return write_synthetic(tmp_path_factory.mktemp("synth") / "s.h5", products=30, seed=5, poses=(2, 3))


def test_taxonomy_has_eight_categories_with_three_subcategories_each():
    per_cat = defaultdict(set)
    for sub in SUBCATEGORIES:
        per_cat[sub.category].add(sub.name)
    assert len(CATEGORIES) == 8 and set(per_cat) == set(CATEGORIES)
    assert all(len(subs) == 3 for subs in per_cat.values()), per_cat


def test_fashion_gen_schema(synth_file):
    with h5py.File(synth_file, "r") as f:
        n = f["input_image"].shape[0]
        assert f["input_image"].shape == (n, 256, 256, 3) and f["input_image"].dtype == np.uint8
        assert f["input_mask"].shape == (n, 256, 256)
        for key in ("input_description", "input_name", "input_category", "input_subcategory", "input_pose",
                    "input_brand", "input_gender", "input_concat_description"):
            assert f[key].shape == (n, 1) and f[key].dtype.kind == "S", key
        assert f["input_productID"].shape == (n, 1) and f["input_productID"].dtype.kind == "i"
        assert f["index"][:, 0].tolist() == list(range(n))
        assert 60 <= n <= 90  # 30 products x 2..3 poses
        cats = {v[0].decode() for v in f["input_category"][:]}
        subs = {v[0].decode() for v in f["input_subcategory"][:]}
        assert len(cats) == len(CATEGORIES) and len(subs) == len(SUBCATEGORIES)
        words = [len(v[0].decode().split()) for v in f["input_description"][:]]
        assert max(words) <= 40


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a = write_synthetic(tmp_path / "a.h5", products=4, seed=11)
    b = write_synthetic(tmp_path / "b.h5", products=4, seed=11)
    c = write_synthetic(tmp_path / "c.h5", products=4, seed=12)
    assert _sha(a) == _sha(b)
    assert _sha(tmp_path / "a.h5.parts.json") == _sha(tmp_path / "b.h5.parts.json")
    assert _sha(a) != _sha(c)
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]  # temporary files renamed away


def test_poses_share_product_and_text_but_differ_in_pixels(synth_file):
    with h5py.File(synth_file, "r") as f:
        ids = f["input_productID"][:, 0]
        poses = [v[0].decode() for v in f["input_pose"][:]]
        texts = [v[0].decode() for v in f["input_description"][:]]
        for pid in np.unique(ids)[:6]:
            rows = np.nonzero(ids == pid)[0]
            assert 2 <= len(rows) <= 3
            assert [poses[r] for r in rows] == [f"id_gridfs_{k + 1}" for k in range(len(rows))]
            assert len({texts[r] for r in rows}) == 1
            first, second = f["input_image"][rows[0]], f["input_image"][rows[1]]
            assert np.abs(first.astype(int) - second.astype(int)).mean() > 1.0


def test_mask_covers_everything_drawn(synth_file):
    """Outside the foreground mask there is only the light, near-uniform background."""
    with h5py.File(synth_file, "r") as f:
        for i in range(0, f["input_image"].shape[0], 7):
            image, mask = f["input_image"][i], f["input_mask"][i] > 0
            background = image[~mask]
            assert background.min() >= 225
            assert background.std(axis=0).max() < 1.0
            assert 0.03 < mask.mean() < 0.9  # the product neither vanishes nor fills the frame


def test_part_boxes_lie_in_the_image_and_on_the_product(synth_file):
    rows = read_parts(synth_file)
    with h5py.File(synth_file, "r") as f:
        assert len(rows) == f["input_image"].shape[0]
        texts = [v[0].decode().lower() for v in f["input_description"][:]]
        words_seen = set()
        for r in rows:
            mask = f["input_mask"][r["index"]] > 0
            ys, xs = np.nonzero(mask)
            assert r["product"] == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            px1, py1, px2, py2 = r["product"]
            for part in r["parts"]:
                words_seen.add(part["word"])
                assert part["word"] in re.findall(r"[a-z]+", texts[r["index"]])
                for x1, y1, x2, y2 in part["boxes"]:
                    assert 0 <= x1 < x2 <= 256 and 0 <= y1 < y2 <= 256
                    assert px1 <= x1 and py1 <= y1 and x2 <= px2 and y2 <= py2
                    assert mask[y1:y2, x1:x2].mean() > 0.2
    assert {"collar", "sleeves", "pockets", "zip", "sole", "straps", "brim"} <= words_seen


def test_pose_moves_the_part_boxes_with_the_product(synth_file):
    rows = read_parts(synth_file)
    by_product = defaultdict(list)
    for r in rows:
        by_product[r["product_id"]].append(r)
    moved = 0
    for poses in by_product.values():
        a, b = poses[0], poses[1]
        assert [p["word"] for p in a["parts"]] == [p["word"] for p in b["parts"]]
        moved += a["product"] != b["product"]
    assert moved >= len(by_product) - 1


def test_products_of_one_subcategory_differ_in_fine_grained_attributes(tmp_path):
    path = write_synthetic(tmp_path / "fg.h5", products=96, seed=3, poses=(1, 1))
    with h5py.File(path, "r") as f:
        subs = [v[0].decode() for v in f["input_subcategory"][:]]
        names = [v[0].decode() for v in f["input_name"][:]]
        side = read_parts(path)
    parts = {r["index"]: tuple(sorted(p["word"] for p in r["parts"])) for r in side}
    coloured = {r["index"]: tuple(sorted((p["word"], p["colour"]) for p in r["parts"])) for r in side}
    groups = defaultdict(list)
    for i, sub in enumerate(subs):
        groups[sub].append((names[i], coloured[i], parts[i]))
    for sub, items in groups.items():
        assert len(items) == 4, sub
        # no two products of a sub-category share colour + pattern + parts with their colours
        assert len({(n, c) for n, c, _p in items}) == len(items), (sub, items)
    # the shape alone does not identify a product: the same silhouette and parts recur
    assert any(len({p for _n, _c, p in items}) < len(items) for items in groups.values())


def test_each_part_is_drawn_in_the_colour_named_right_before_its_word(synth_file):
    """The description says "<colour> <part word>"; that colour fills part of the part's box, the
    body's colour is another, and different parts of a product have different colours. Which part
    word follows a colour word is therefore a matter of the image, not of the text."""
    rows = read_parts(synth_file)
    checked = 0
    with h5py.File(synth_file, "r") as f:
        for r in rows:
            text = f["input_description"][r["index"], 0].decode().lower()
            image = f["input_image"][r["index"]].astype(np.float64)
            colours = [p["colour"] for p in r["parts"]]
            assert len(set(colours)) == len(colours), (text, colours)
            name = f["input_name"][r["index"], 0].decode().lower()
            body = next(c for c in COLOURS if name.startswith(c + " "))
            for p in r["parts"]:
                assert re.search(rf"\b{p['colour']} {p['word']}\b", text), (p, text)
                assert p["colour"] != body
                rgb = np.array(PART_COLOURS[p["colour"]], dtype=np.float64)
                for x1, y1, x2, y2 in p["boxes"]:
                    # the pose's lighting scales the colour by 0.85 .. 1.12
                    near = [np.abs(image[y1:y2, x1:x2] - np.minimum(rgb * s, 255)).max(axis=-1) < 12
                            for s in np.linspace(0.85, 1.12, 28)]
                    assert np.any(near, axis=0).mean() > 0.05, (r["index"], p, text)
                    checked += 1
    assert checked > 100


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="products"):
        write_synthetic(tmp_path / "x.h5", products=0, seed=0)
    with pytest.raises(ValueError, match="poses"):
        write_synthetic(tmp_path / "x.h5", products=2, seed=0, poses=(3, 2))
    assert not (tmp_path / "x.h5").exists()


def test_side_file_format(synth_file):
    side = json.loads(Path(str(synth_file) + ".parts.json").read_text())
    assert side["format"] == "kaleido-synth-parts/1" and side["image_size"] == 256
