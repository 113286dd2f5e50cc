"""The Fashion-Gen HDF5 reader: laziness, decoding fallback, poses, worker safety, bad files."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from kaleido.data.fashiongen import FashionGenReader
from kaleido.data.images import to_rgb
from kaleido.data.rows import BadRow, DataError
from kaleido.data.synth import write_synthetic


@pytest.fixture(scope="module")
def h5_file(tmp_path_factory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("fg") / "fg.h5", products=6, seed=2, poses=(2, 3))


def _write(path: Path, images: np.ndarray, texts: list[bytes] | None = None) -> Path:
    n = images.shape[0]
    texts = texts or [f"item {i}".encode() for i in range(n)]
    with h5py.File(path, "w") as f:
        f["input_image"] = images
        f["input_description"] = np.array(texts).reshape(-1, 1)
        f["input_category"] = np.array([b"TOPS"] * n).reshape(-1, 1)
        f["input_subcategory"] = np.array([b"SHIRTS"] * n).reshape(-1, 1)
        f["input_productID"] = np.arange(n, dtype=np.float64).reshape(-1, 1) + 7  # floats, as in the release
    return path


def test_rows_match_the_file(h5_file):
    reader = FashionGenReader(h5_file)
    with h5py.File(h5_file, "r") as f:
        assert len(reader) == f["input_image"].shape[0]
        for i in (0, len(reader) - 1):
            row = reader.row(i)
            assert row.image.dtype == np.uint8 and row.image.shape == (256, 256, 3)
            assert np.array_equal(row.image, f["input_image"][i])
            assert row.text == f["input_description"][i, 0].decode()
            assert row.category == f["input_category"][i, 0].decode()
            assert row.subcategory == f["input_subcategory"][i, 0].decode()
            assert row.product_id == str(f["input_productID"][i, 0])
            assert row.pose.startswith("id_gridfs_")
    assert reader.meta(1).index == 1 and not hasattr(reader.meta(1), "image")
    with pytest.raises(IndexError):
        reader.meta(len(reader))


def test_poses_are_grouped_by_product(h5_file):
    reader = FashionGenReader(h5_file)
    ids = reader.product_ids()
    assert len(ids) == len(reader) and len(np.unique(ids)) == 6
    for pid in np.unique(ids):
        rows = np.nonzero(ids == pid)[0]
        assert len(rows) >= 2
        assert len({reader.meta(int(r)).text for r in rows}) == 1


def test_undecodable_text_uses_the_counted_cp1252_fallback(h5_file, tmp_path):
    copy = tmp_path / "bad.h5"
    shutil.copy(h5_file, copy)
    with h5py.File(copy, "r+") as f:
        ds = f["input_description"]
        ds[1, 0] = b"Caf\xe9 \x93navy\x94 shirt"  # cp1252 bytes, invalid as UTF-8
    reader = FashionGenReader(copy)
    assert reader.text_fallbacks == 0
    with h5py.File(copy, "r") as f:
        assert reader.meta(0).text == f["input_description"][0, 0].decode("utf-8")
    assert reader.text_fallbacks == 0  # valid UTF-8 takes no fallback
    assert reader.meta(1).text == "Caf\u00e9 \u201cnavy\u201d shirt"
    assert reader.text_fallbacks == 1
    reader.meta(1)
    assert reader.text_fallbacks == 1  # counted once per row
    fresh = FashionGenReader(copy)
    assert fresh.count_text_fallbacks() == 1
    assert fresh.summary()["text_fallbacks"] == 1


def test_lazy_and_picklable(h5_file):
    reader = FashionGenReader(h5_file)
    assert reader._handle is not None and reader._handle["input_image"].id.valid
    clone = pickle.loads(pickle.dumps(reader))
    assert clone._handle is None  # the handle never travels
    assert np.array_equal(clone.row(2).image, reader.row(2).image)
    # a "forked" copy (pid changed) must reopen instead of sharing the parent's handle
    reader._pid = -1
    old = reader._handle
    reader.row(0)
    assert reader._handle is not old


@pytest.mark.slow  # importing torch alone takes seconds on a busy machine
def test_dataloader_with_two_workers_reads_every_row(h5_file):
    import torch
    from torch.utils.data import DataLoader, Dataset

    reader = FashionGenReader(h5_file)
    reader.row(0)  # the parent has an open handle before the workers fork

    class Images(Dataset):
        def __len__(self) -> int:
            return len(reader)

        def __getitem__(self, i: int):
            row = reader.row(i)
            return i, int(row.image.astype(np.int64).sum()), row.product_id

    expected = {i: int(reader.row(i).image.astype(np.int64).sum()) for i in range(len(reader))}
    got = {}
    for idx, sums, _pids in DataLoader(Images(), batch_size=3, num_workers=2):
        got.update(dict(zip(idx.tolist(), torch.as_tensor(sums).tolist(), strict=True)))
    assert got == expected


def test_missing_key_names_file_and_key(h5_file, tmp_path):
    copy = tmp_path / "nokey.h5"
    shutil.copy(h5_file, copy)
    with h5py.File(copy, "r+") as f:
        del f["input_subcategory"]
    with pytest.raises(DataError, match=r"nokey\.h5: missing HDF5 key 'input_subcategory'"):
        FashionGenReader(copy)


def test_truncated_and_missing_files_give_one_line_errors(h5_file, tmp_path):
    data = h5_file.read_bytes()
    truncated = tmp_path / "trunc.h5"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as err:
        FashionGenReader(truncated)
    assert "trunc.h5" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(DataError, match="no such file"):
        FashionGenReader(tmp_path / "absent.h5")
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not an hdf5 file at all" * 10)
    with pytest.raises(DataError, match="not a readable HDF5 file"):
        FashionGenReader(junk)


def test_grey_and_rgba_become_rgb_and_bad_shapes_are_bad_rows(tmp_path):
    grey = np.full((2, 16, 16), 90, np.uint8)
    r = FashionGenReader(_write(tmp_path / "grey.h5", grey))
    image = r.row(0).image
    assert image.shape == (16, 16, 3) and (image == 90).all()
    assert r.meta(1).product_id == "8"  # float ids read as integers
    assert r.product_ids().tolist() == ["7", "8"]

    rgba = np.zeros((1, 16, 16, 4), np.uint8)
    rgba[0, :8, :, :] = (200, 10, 10, 255)  # opaque red top half, transparent bottom half
    image = FashionGenReader(_write(tmp_path / "rgba.h5", rgba)).row(0).image
    assert image.shape == (16, 16, 3)
    assert tuple(image[0, 0]) == (200, 10, 10) and tuple(image[-1, -1]) == (255, 255, 255)

    two = np.zeros((1, 16, 16, 2), np.uint8)
    with pytest.raises(BadRow, match="shape"):
        FashionGenReader(_write(tmp_path / "two.h5", two)).row(0)


def test_to_rgb_rejects_tiny_and_non_uint8():
    with pytest.raises(BadRow, match="smaller"):
        to_rgb(np.zeros((4, 40, 3), np.uint8), 0)
    with pytest.raises(BadRow, match="dtype"):
        to_rgb(np.zeros((20, 20, 3), np.float32), 3)
