"""Feature store round trip, sharding, and `prepare`: bad rows, resume after a crash, reuse."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from kaleido import registry
from kaleido.data.rows import BadRow, Row, RowMeta
from kaleido.features.prepare import prepare_rows, shard_positions
from kaleido.features.store import FeatureStore, ShardWriter, shard_name

SPEC = {"grids": [1, 2], "patches": 5, "feature_dim": 3, "grey": 0, "dtype": "float16"}


pytestmark = pytest.mark.usefixtures("one_thread_per_module")


def _rows(n: int, start: int) -> tuple[dict, list[RowMeta]]:
    rng = np.random.default_rng(start)
    rows = {"features": rng.normal(size=(n, 5, 3)), "rotations": rng.normal(size=(n, 3, 3)),
            "grey": np.zeros((n, 0, 3)), "positions": rng.random((n, 5, 5)), "boxes": rng.random((n, 5, 4)),
            "source": np.arange(start, start + n) * 10, "fallback": np.arange(n) % 2}
    metas = [RowMeta(index=10 * i, text=f"text {i} é", category="C", subcategory="S", product_id=f"p{i // 2}",
                     pose="1") for i in range(start, start + n)]
    return rows, metas


def test_store_round_trip_and_index_arrays(tmp_path):
    w = ShardWriter(tmp_path / shard_name(0, 1), "k", SPEC, capacity=6)
    a, ma = _rows(2, 0)
    b, mb = _rows(3, 2)
    w.commit(a, ma, next_pos=2)
    w.commit(b, mb, next_pos=6, skipped=[(40, "truncated JPEG")], fallbacks=1)
    w.finish()
    store = FeatureStore(tmp_path)
    assert len(store) == 5 and store.grids == (1, 2) and store.levels.tolist() == [1, 2, 2, 2, 2]
    assert store.features(0).dtype == np.float16 and store.features(0).shape == (5, 3)
    np.testing.assert_allclose(store.features(3), b["features"][1].astype(np.float16))
    np.testing.assert_allclose(store.features(np.array([4, 0])),
                               np.stack([b["features"][2], a["features"][0]]).astype(np.float16))
    positions = np.concatenate([a["positions"], b["positions"]])
    np.testing.assert_allclose(store.positions(np.arange(5)), positions, rtol=1e-6)
    assert store.rotations(2).shape == (3, 3) and store.grey(np.array([1, 2])).shape == (2, 0, 3)
    assert store.source(4) == 40 and store.source(np.array([0, 1])).tolist() == [0, 10]
    assert store.meta(1) == ma[1] and store.meta(np.array([2, 4])) == [mb[0], mb[2]]
    assert store.product_ids().tolist() == ["p0", "p0", "p1", "p1", "p2"]
    # an entry without how the reader names the row (a store of older code) reads as "row N"
    assert store.skipped == [(40, "truncated JPEG", "row 40")] and store.fallbacks == 1
    with pytest.raises(IndexError):
        store.features(5)
    clone = pickle.loads(pickle.dumps(store))  # what a DataLoader worker gets
    np.testing.assert_array_equal(clone.boxes(np.arange(5)), store.boxes(np.arange(5)))


def test_shards_join_and_incomplete_store_is_refused(tmp_path):
    for rank in (0, 1):
        w = ShardWriter(tmp_path / shard_name(rank, 2), "k", SPEC, capacity=3)
        rows, metas = _rows(2, 10 * rank)
        w.commit(rows, metas, next_pos=2)
        if rank == 0:
            w.finish()
    with pytest.raises(ValueError, match="incomplete"):
        FeatureStore(tmp_path)
    ShardWriter(tmp_path / shard_name(1, 2), "k", SPEC, capacity=3).finish()  # resumes, then finishes
    store = FeatureStore(tmp_path)
    assert len(store) == 4 and store.source(np.arange(4)).tolist() == [0, 10, 100, 110]
    assert shard_positions(10, 7, 0, 3) == [0, 1] and shard_positions(10, 7, 1, 3) == [2, 3]
    assert shard_positions(10, 7, 2, 3) == [4, 5, 6] and shard_positions(10, None, 0, 1) == list(range(10))


class FlakyReader:
    """Wraps a reader: given rows are corrupt, grey or RGBA; ``crash_at`` raises like a killed run."""

    def __init__(self, reader, crash_at: int | None = None) -> None:
        self.reader, self.crash_at = reader, crash_at
        self.text_fallbacks = 0

    def __len__(self) -> int:
        return len(self.reader)

    def meta(self, i: int) -> RowMeta:
        return self.reader.meta(i)

    def product_ids(self) -> np.ndarray:
        return self.reader.product_ids()

    def row(self, i: int) -> Row:
        if i == self.crash_at:
            raise KeyboardInterrupt("simulated crash")
        row = self.reader.row(i)
        if i == 2:
            raise BadRow(i, "truncated image data")
        if i == 3:  # grey-scale source image
            return Row(**{**vars(row), "image": row.image.mean(axis=2).astype(np.uint8)})
        if i == 5:  # RGBA source image, fully transparent: composited on white, no foreground
            rgba = np.concatenate([row.image, np.zeros(row.image.shape[:2] + (1,), np.uint8)], axis=2)
            return Row(**{**vars(row), "image": rgba})
        return row


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    data = registry.datasets.get("synthetic")(dir=str(tmp_path_factory.mktemp("data")), products=6,
                                              test_products=2, seed=3)
    reader = data.open("train")
    sod = registry.sod.get("background")()
    patcher = registry.patchers.get("kaleido")()
    backbone = registry.backbones.get("mobilenet_v2")(mode="roi", image_size=64, batch_size=8, device="cpu")
    return reader, sod, patcher, backbone


def _arrays(path) -> dict:
    store = FeatureStore(path)
    idx = np.arange(len(store))
    names = ("features", "rotations", "grey", "positions", "boxes", "source", "fallback")
    return {name: getattr(store, name)(idx) for name in names} | {"meta": store.meta(idx)}


def test_prepare_skips_bad_rows_and_resumes_identically(parts, tmp_path):
    reader, sod, patcher, backbone = parts
    n = len(reader)
    full = prepare_rows(FlakyReader(reader), sod, patcher, backbone, tmp_path / "full", "k", batch_size=3)
    assert full.rows == n - 1 and full.fallbacks == 1
    assert full.skipped == [(2, "truncated image data", "row 2")]  # (row, why, how messages name it)
    ref = _arrays(tmp_path / "full")
    assert ref["features"].shape == (n - 1, 55, 1280) and ref["grey"].shape == (n - 1, 16, 1280)
    assert 2 not in ref["source"] and ref["fallback"][ref["source"].tolist().index(5)]
    assert np.isfinite(ref["features"].astype(np.float32)).all() and np.abs(ref["features"]).max() > 0

    with pytest.raises(KeyboardInterrupt):
        prepare_rows(FlakyReader(reader, crash_at=7), sod, patcher, backbone, tmp_path / "cut", "k",
                     batch_size=3)
    with pytest.raises(ValueError, match="incomplete"):
        FeatureStore(tmp_path / "cut")
    passes = backbone.passes
    resumed = prepare_rows(FlakyReader(reader), sod, patcher, backbone, tmp_path / "cut", "k", batch_size=3)
    assert resumed.resumed_at == 5  # rows 0..5 committed (2 skipped) before the crash in batch 6..8
    # only the rest was extracted: in roi, a pass per level (the 2x2 level's 4 patches one by one),
    # 3 rotated and 1 grey per row
    per_row = len(patcher.grids) - 1 + 4 + 3 + 1
    assert backbone.passes - passes == per_row * (n - 6)
    cut = _arrays(tmp_path / "cut")
    for name, value in ref.items():
        if name == "meta":
            assert cut[name] == value
        else:
            np.testing.assert_array_equal(cut[name], value, err_msg=name)
    again = prepare_rows(FlakyReader(reader), sod, patcher, backbone, tmp_path / "cut", "k", batch_size=3)
    assert again.reused and again.rows == n - 1 and backbone.passes - passes == per_row * (n - 6)


def test_prepare_ranks_write_shards_joined_by_the_reader(parts, tmp_path):
    reader, sod, patcher, backbone = parts
    for rank in (0, 1):
        prepare_rows(reader, sod, patcher, backbone, tmp_path, "k", batch_size=4, max_rows=7, rank=rank,
                     world_size=2)
    store = FeatureStore(tmp_path)
    # the rows in reader order, as one process writes them: the same seed, the same batches
    assert store.source(np.arange(len(store))).tolist() == list(range(7))
    # one process later: the finished 2-shard store is reused, not joined by a third shard
    passes = backbone.passes
    again = prepare_rows(reader, sod, patcher, backbone, tmp_path, "k", batch_size=4, max_rows=7)
    assert again.reused and again.rows == 7 and backbone.passes == passes
    assert len(list(tmp_path.glob("shard-*"))) == 2 and len(FeatureStore(tmp_path)) == 7
    # an unfinished 2-process store is never mixed with a 1-process shard
    prepare_rows(reader, sod, patcher, backbone, tmp_path / "half", "k", batch_size=4, max_rows=7, rank=0,
                 world_size=2)
    with pytest.raises(ValueError, match=r"written by 2 process\(es\).*--nproc-per-node 2"):
        prepare_rows(reader, sod, patcher, backbone, tmp_path / "half", "k", batch_size=4, max_rows=7)
    single = prepare_rows(reader, sod, patcher, backbone, tmp_path / "one", "k", batch_size=4, max_rows=7)
    one = FeatureStore(tmp_path / "one")
    assert single.rows == 7
    order = np.argsort(store.source(np.arange(7)))
    np.testing.assert_allclose(store.features(order).astype(np.float32), one.features(np.arange(7)).astype(
        np.float32), atol=2e-3)
