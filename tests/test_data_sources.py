"""The registered datasets: synthetic written once and atomically, fashiongen paths, jsonl splits."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from kaleido import registry
from kaleido.data.fashiongen import FashionGenReader
from kaleido.data.rows import DataError
from kaleido.data.sources import open_file
from kaleido.data.synth import write_synthetic


def test_synthetic_writes_disjoint_splits_once(tmp_path):
    data = registry.datasets.get("synthetic")(dir=str(tmp_path / "syn"), products=5, test_products=3, seed=4)
    train, test = data.open("train"), data.open("test")
    assert isinstance(train, FashionGenReader)
    assert len(np.unique(train.product_ids())) == 5 and len(np.unique(test.product_ids())) == 3
    assert not set(train.product_ids()) & set(test.product_ids())
    stamp = (tmp_path / "syn" / "train.h5").stat().st_mtime_ns
    data.open("train")
    assert (tmp_path / "syn" / "train.h5").stat().st_mtime_ns == stamp  # not rewritten
    # the train split is exactly what `kaleido data synth --seed 4` writes
    ref = write_synthetic(tmp_path / "ref.h5", products=5, seed=4)
    assert ref.read_bytes() == (tmp_path / "syn" / "train.h5").read_bytes()
    assert sorted(p.name for p in (tmp_path / "syn").iterdir()) == [
        "synthetic.json", "test.h5", "test.h5.parts.json", "train.h5", "train.h5.parts.json"]
    with pytest.raises(ValueError, match="unknown split 'val'"):
        data.open("val")


def test_synthetic_refuses_a_folder_made_with_other_parameters(tmp_path):
    registry.datasets.get("synthetic")(dir=str(tmp_path), products=3, test_products=2).open("test")
    other = registry.datasets.get("synthetic")(dir=str(tmp_path), products=4, test_products=2)
    with pytest.raises(DataError, match="data.dir: .* holds synthetic data made with"):
        other.open("train")


def test_synthetic_files_without_their_manifest_are_drawn_again(tmp_path):
    """A run stopped after writing the splits but before synthetic.json: the files' parameters are
    unknown, so they are redrawn, never reused under another recipe's manifest."""
    registry.datasets.get("synthetic")(dir=str(tmp_path), products=3, test_products=2).open("test")
    (tmp_path / "synthetic.json").unlink()
    data = registry.datasets.get("synthetic")(dir=str(tmp_path), products=4, test_products=2, seed=1)
    assert len(set(data.open("train").product_ids())) == 4
    assert (tmp_path / "train.h5").read_bytes() == write_synthetic(tmp_path / "ref.h5", 4, 1).read_bytes()
    assert json.loads((tmp_path / "synthetic.json").read_text())["products"] == 4


def test_fashiongen_missing_file_names_param_and_path(tmp_path):
    write_synthetic(tmp_path / "tr.h5", products=2, seed=0)
    data = registry.datasets.get("fashiongen")(train=str(tmp_path / "tr.h5"), test=str(tmp_path / "nope.h5"))
    assert len(data.open("train")) >= 2
    with pytest.raises(DataError, match=r"data\.test: no such file: .*nope\.h5"):
        data.open("test")


def test_jsonl_split_is_by_product_and_deterministic(tmp_path):
    lines = [{"image": f"{i}.jpg", "text": "t", "category": "c", "subcategory": "s",
              "product_id": str(i // 2)} for i in range(40)]  # 20 products, 2 poses each
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines))
    data = registry.datasets.get("jsonl")(train=str(path), test_fraction=0.25, seed=1)
    train, test = data.open("train"), data.open("test")
    assert len(train) + len(test) == 40 and len(np.unique(test.product_ids())) == 5
    assert not set(train.product_ids()) & set(test.product_ids())
    again = registry.datasets.get("jsonl")(train=str(path), test_fraction=0.25, seed=1).open("test")
    assert again.product_ids().tolist() == test.product_ids().tolist()
    other = registry.datasets.get("jsonl")(train=str(path), test_fraction=0.25, seed=2).open("test")
    assert set(other.product_ids()) != set(test.product_ids())
    explicit = registry.datasets.get("jsonl")(train=str(path), test=str(path)).open("test")
    assert len(explicit) == 40
    with pytest.raises(DataError, match=r"data\.train: no such file"):
        registry.datasets.get("jsonl")(train=str(tmp_path / "x.jsonl")).open("train")


def test_open_file_by_suffix(tmp_path, myntra_dir):
    assert len(open_file(myntra_dir / "pairs.jsonl")) == 500
    (tmp_path / "a.csv").write_text("x")
    with pytest.raises(DataError, match="unknown data file type '.csv'"):
        open_file(tmp_path / "a.csv")


def test_an_edited_jsonl_file_gets_a_new_feature_store(tmp_path, monkeypatch):
    """The store's key held only the recipe's values (the file's path): an edited JSONL file was
    read from the stale store. Its contents now count; a synthetic recipe's key is unchanged."""
    from kaleido.features import prepare as prepare_module
    from kaleido.features.prepare import PREPARE_SECTIONS, store_dir
    from kaleido.recipe import load_recipe

    data = tmp_path / "pairs.jsonl"
    rows = [{"image": f"{i}.jpg", "text": f"shirt {i}", "category": "TOPS", "subcategory": "SHIRTS",
             "product_id": str(i)} for i in range(4)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'[data]\nname = "jsonl"\ntrain = "{data}"\n', encoding="utf-8")
    before = store_dir(load_recipe(recipe))
    assert store_dir(load_recipe(recipe)) == before  # the same bytes, the same store
    rows[0]["text"] = "a corrected title"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    edited = store_dir(load_recipe(recipe))
    assert edited != before
    # the content hash is kept per (path, size, mtime): an edit of the same size is still seen
    rows[0]["text"] = "a corrected TITLE"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    stat = data.stat()
    os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert store_dir(load_recipe(recipe)) not in (before, edited)
    synthetic = load_recipe(recipe, ['data={name = "synthetic"}'])
    assert store_dir(synthetic).name == f"store-{synthetic.section_hash(*PREPARE_SECTIONS, upstream='v2')}"
    # code that gives other rows for the same settings raises PREPARE_VERSION: a new store
    monkeypatch.setattr(prepare_module, "PREPARE_VERSION", 3)
    assert store_dir(synthetic).name == f"store-{synthetic.section_hash(*PREPARE_SECTIONS, upstream='v3')}"


def _bad_lines_file(path, n: int = 12):
    """``n`` rows of ``n`` products, then 2 lines that are no rows (not JSON, a missing key)."""
    rows = [json.dumps({"image": f"{i}.jpg", "text": f"t {i}", "category": "c", "subcategory": "s",
                        "product_id": str(i)}) for i in range(n)]
    path.write_text("\n".join([*rows, "{not json", json.dumps({"image": "x.jpg", "text": "no ids"})]) + "\n")
    return path


def test_dropped_lines_of_one_file_count_once_across_its_splits(tmp_path, caplog):
    """Both splits of one JSONL file reported (and logged) its dropped lines: 2 bad lines read as
    2 for train and 2 more for test. They are the train split's now; the test reader says so."""
    path = _bad_lines_file(tmp_path / "d.jsonl")
    data = registry.datasets.get("jsonl")(train=str(path), test_fraction=0.25)
    with caplog.at_level("WARNING", logger="kaleido.data.jsonl"):
        train, test, again = data.open("train"), data.open("test"), data.open("train")
    assert train.skipped == again.skipped == ["line 13: not JSON (Expecting property name enclosed in double "
                                              "quotes)", "line 14: missing category, subcategory, product_id"]
    assert test.skipped == [] and "its 2 dropped lines are reported under train" in test.skipped_note
    assert len(train) + len(test) == 12 and train.skipped_note == ""
    logged = [r.getMessage() for r in caplog.records]
    assert [sum(f"skipped line {n}" in m for m in logged) for n in (13, 14)] == [1, 1]
    # the same file named as both train and test: counted once too
    both = registry.datasets.get("jsonl")(train=str(path), test=str(path))
    assert len(both.open("train").skipped) == 2 and both.open("test").skipped == []
    assert "also data.train" in both.open("test").skipped_note
    # a test file of its own reports its own dropped lines
    own = _bad_lines_file(tmp_path / "t.jsonl", n=3)
    separate = registry.datasets.get("jsonl")(train=str(path), test=str(own))
    assert len(separate.open("test").skipped) == 2 and separate.open("test").skipped_note == ""


def test_prepare_reports_dropped_lines_with_their_file_and_where_the_others_are(tmp_path):
    """The test split of a shared file writes 0 dropped lines and the note; train names the file."""
    from types import SimpleNamespace

    from kaleido.features.prepare import _reused, prepare_rows
    from kaleido.features.store import FeatureStore

    path = _bad_lines_file(tmp_path / "d.jsonl")
    data = registry.datasets.get("jsonl")(train=str(path), test_fraction=0.25)
    backbone = SimpleNamespace(feature_dim=4, passes=0)  # every image is missing: it never runs
    sod, patcher = registry.sod.get("none")(), registry.patchers.get("kaleido")()
    reports = {split: prepare_rows(data.open(split), sod, patcher, backbone, tmp_path / split, key="k",
                                   split=split) for split in ("train", "test")}
    train, test = (reports[s].lines() for s in ("train", "test"))
    assert "  dropped by the reader (never rows): 2" in train
    assert "    d.jsonl line 14: missing category, subcategory, product_id" in train
    assert "  dropped by the reader (never rows): 0" in test
    assert "    (d.jsonl is split by product: its 2 dropped lines are reported under train)" in test
    assert "0 dropped by the reader" in reports["test"].summary()
    reused = _reused(FeatureStore(tmp_path / "test", require_done=True), "test")  # from the manifest
    assert reused.lines()[-2:] == test[-2:]


def test_drawing_synthetic_data_on_first_use_shows_a_bar_per_split(tmp_path, capsys):
    """Drawing the data on first use printed nothing (~7 s at quickstart size)."""
    data = registry.datasets.get("synthetic")(dir=str(tmp_path / "d"), products=3, test_products=2)
    data.ensure()
    err = " ".join(capsys.readouterr().err.split())
    rows = {split: len(FashionGenReader(data.path(split))) for split in ("train", "test")}
    assert "drawing synthetic train data (3 products) ━" in err and f"{rows['train']}/{rows['train']}" in err
    assert "drawing synthetic test data (2 products) ━" in err and f"{rows['test']}/{rows['test']}" in err
    data.ensure()  # drawn already: nothing to show
    quiet = registry.datasets.get("synthetic")(dir=str(tmp_path / "q"), products=2, test_products=1)
    quiet.ensure(progress=False)
    assert capsys.readouterr().err == "" and quiet.path("test").is_file()


def test_a_test_file_sharing_products_with_train_is_warned_about(tmp_path, caplog):
    """Train/test leakage is allowed (a memorisation check) but said, once per process (every stage
    opens the test split again, and the train file is read to compare)."""
    import json

    def write(path, products):
        lines = [{"image": "x.jpg", "text": f"item {p}", "category": "c", "subcategory": "s",
                  "product_id": p} for p in products]
        path.write_text("".join(json.dumps(x) + "\n" for x in lines))
        return str(path)

    train = write(tmp_path / "train.jsonl", ["a", "b", "c"])
    leaky = registry.datasets.get("jsonl")(train=train, test=write(tmp_path / "t1.jsonl", ["c", "d"]))
    clean = registry.datasets.get("jsonl")(train=train, test=write(tmp_path / "t2.jsonl", ["d", "e"]))
    with caplog.at_level("WARNING", logger="kaleido.data.sources"):
        leaky.open("train")
        assert caplog.records == []
        leaky.open("test")
        assert [r.getMessage() for r in caplog.records] == [
            "data.test: 1 of its 2 products are also in data.train (t1.jsonl, e.g. c): figures on them "
            "measure memorisation, not generalisation"]
        caplog.clear()
        clean.open("test")
        leaky.open("test")  # said already
        assert caplog.records == []
