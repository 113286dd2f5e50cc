"""The JSONL reader on the real myntra-500 photos and on broken input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kaleido.data.jsonl import JsonlReader
from kaleido.data.rows import BadRow, DataError


def test_reads_myntra_as_is(myntra_dir):
    reader = JsonlReader(myntra_dir / "pairs.jsonl")
    lines = [json.loads(x) for x in (myntra_dir / "pairs.jsonl").read_text().splitlines()[:3]]
    assert len(reader) == 500 and reader.text_fallbacks == 0 and reader.skipped == []
    for i, obj in enumerate(lines):
        row = reader.row(i)
        assert row.text == obj["text"] and row.category == obj["category"]
        assert row.subcategory == obj["subcategory"] and row.product_id == obj["product_id"]
        with Image.open(myntra_dir / obj["image"]) as img:
            assert row.image.shape == (img.height, img.width, 3)
        assert row.image.dtype == np.uint8 and row.image.std() > 5  # a real photo, not a blank
    assert reader.product_ids()[:3].tolist() == [obj["product_id"] for obj in lines]


def _line(image: str, pid: str, **extra) -> str:
    obj = {"image": image, "text": f"item {pid}", "category": "TOPS", "subcategory": "SHIRTS",
           "product_id": pid, **extra}
    return json.dumps(obj)


@pytest.fixture()
def broken_dir(tmp_path: Path, myntra_dir: Path) -> Path:
    real = sorted((myntra_dir / "images").glob("*.jpg"))[0].read_bytes()
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "good.jpg").write_bytes(real)
    (tmp_path / "img" / "truncated.jpg").write_bytes(real[: len(real) // 3])
    (tmp_path / "img" / "garbage.jpg").write_bytes(b"\x00\x01 not an image" * 50)
    Image.new("L", (20, 12), 77).save(tmp_path / "img" / "grey.png")
    rgba = Image.new("RGBA", (20, 12), (0, 0, 0, 0))
    rgba.paste((10, 200, 10, 255), (0, 0, 10, 12))
    rgba.save(tmp_path / "img" / "rgba.png")
    lines = [
        _line("img/good.jpg", "1", pose="front"),
        _line("img/truncated.jpg", "2"),
        _line("img/garbage.jpg", "3"),
        _line("img/missing.jpg", "4"),
        "{not json",
        json.dumps({"image": "img/good.jpg", "text": "no category"}),
        _line("img/grey.png", "5"),
        _line("img/rgba.png", "6"),
    ]
    raw = ("\n".join(lines) + "\n").encode() + _line("img/good.jpg", "7").replace("item", "caf\u00e9").encode(
        "cp1252") + b"\n"
    (tmp_path / "data.jsonl").write_bytes(raw)
    return tmp_path


def test_bad_images_are_bad_rows_with_the_reason(broken_dir):
    reader = JsonlReader(broken_dir / "data.jsonl")
    assert len(reader) == 7
    assert reader.row(0).pose == "front" and reader.row(0).image.ndim == 3
    with pytest.raises(BadRow, match="truncated"):
        reader.row(1)
    with pytest.raises(BadRow, match="unreadable image .*garbage.jpg"):
        reader.row(2)
    with pytest.raises(BadRow, match="not found: .*missing.jpg"):
        reader.row(3)
    assert reader.meta(3).product_id == "4"  # metadata stays readable without the pixels


def test_bad_lines_are_skipped_and_counted(broken_dir, caplog):
    with caplog.at_level("WARNING"):
        reader = JsonlReader(broken_dir / "data.jsonl")
    assert len(reader.skipped) == 2
    assert reader.skipped[0].startswith("line 5: not JSON")
    assert "line 6: missing category, subcategory, product_id" == reader.skipped[1]
    # every reason in the log, not only the first
    assert "skipped line 5: not JSON" in caplog.text and "skipped line 6: missing category" in caplog.text
    assert reader.text_fallbacks == 1 and reader.meta(6).text == "caf\u00e9 7"
    # each image decoded in full, as prepare reads it: the truncated file too (its header is good)
    summary = reader.summary()
    assert summary["unreadable_images"] == 3
    assert [why.split(":")[0] for why in summary["unreadable"]] == ["line 2", "line 3", "line 4"]
    assert "truncated" in summary["unreadable"][0] and "not found" in summary["unreadable"][2]


def test_a_bad_row_names_its_jsonl_line(broken_dir):
    """A missing image on line 4 was "row 3" to `data info` and "row 2" to prepare's train split
    (rows renumbered after dropped lines and per split), while dropped lines were "line N"."""
    reader = JsonlReader(broken_dir / "data.jsonl")
    with pytest.raises(BadRow) as info:
        reader.row(3)
    assert str(info.value).startswith("row 3 (data.jsonl line 4): image file not found: ")
    assert info.value.where == "row 3 (data.jsonl line 4)" and info.value.reason.startswith("image file")
    part = reader.subset([2, 3, 4])  # a split: its own row numbers, the same lines
    assert [part.line(i) for i in range(3)] == [3, 4, 7]
    with pytest.raises(BadRow, match=r"^row 1 \(data.jsonl line 4\): image file not found"):
        part.row(1)


def test_grey_and_rgba_images_become_rgb(broken_dir):
    reader = JsonlReader(broken_dir / "data.jsonl")
    grey = reader.row(4).image
    assert grey.shape == (12, 20, 3) and (grey == 77).all()
    rgba = reader.row(5).image
    assert tuple(rgba[0, 0]) == (10, 200, 10) and tuple(rgba[0, -1]) == (255, 255, 255)


def test_subset_rows_reindex(broken_dir, caplog):
    reader = JsonlReader(broken_dir / "data.jsonl", rows=[6, 0])
    assert len(reader) == 2 and reader.meta(0).product_id == "7" and reader.meta(1).index == 1
    assert reader.text_fallbacks == 1
    # a split taken from a reader already read: the same rows, without reading (or logging) again
    whole = JsonlReader(broken_dir / "data.jsonl")
    caplog.clear()
    with caplog.at_level("WARNING"):
        part = whole.subset([6, 0])
    assert not caplog.text and [part.meta(i) for i in range(2)] == [reader.meta(i) for i in range(2)]
    assert part.text_fallbacks == 1 and part.image_path(0) == reader.image_path(0)
    assert part.subset([1]).meta(0).product_id == reader.meta(1).product_id  # a subset of a subset
    with pytest.raises(IndexError):
        whole.subset([len(whole)])


def test_no_usable_rows_is_an_error(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text('{"image": "a.jpg"}\n')
    with pytest.raises(DataError, match="no usable rows.*line 1: missing text"):
        JsonlReader(path)
    with pytest.raises(DataError, match="no such file"):
        JsonlReader(tmp_path / "absent.jsonl")


def test_whitespace_only_fields_are_missing(tmp_path):
    """A title of blanks is no description: skipped and counted, never a row with no words."""
    path = tmp_path / "blank.jsonl"
    path.write_text("\n".join([_line("a.jpg", "1"), _line("b.jpg", "2", text=" \t "),
                               _line("c.jpg", "3", category="  ")]) + "\n")
    reader = JsonlReader(path)
    assert len(reader) == 1 and reader.meta(0).product_id == "1"
    assert reader.skipped == ["line 2: missing text", "line 3: missing category"]


def _write_rows(folder: Path, images: dict[str, Image.Image], **save) -> JsonlReader:
    """A JSONL file with one row per image, saved under ``folder``; the reader over it."""
    (folder / "img").mkdir(exist_ok=True)
    lines = []
    for pid, (name, img) in enumerate(images.items()):
        img.save(folder / "img" / name, **save.get(name, {}))
        lines.append(_line(f"img/{name}", str(pid)))
    (folder / "rows.jsonl").write_text("\n".join(lines) + "\n")
    return JsonlReader(folder / "rows.jsonl")


def test_deep_grey_is_scaled_to_eight_bits_not_clipped_to_white(tmp_path):
    """convert("RGB") clips 16-bit grey (0..65535) to 255; the high byte keeps the picture."""
    ramp16 = np.tile(np.arange(0, 65536, 2048, dtype=np.uint16), (10, 1))  # 10 x 32, 0 .. 63488
    eight = ramp16 >> 8
    reader = _write_rows(tmp_path, {
        "grey16.png": Image.fromarray(ramp16),  # PNG 16-bit grey: PIL mode I;16
        "grey16.tif": Image.fromarray(ramp16.astype(">u2")),  # I;16B
        "int32.tif": Image.fromarray(ramp16.astype(np.int32)),  # I, values over 255: 16-bit
        "int8.tif": Image.fromarray(eight.astype(np.int32)),  # I, values within 0..255: 8-bit
        "int_wide.tif": Image.fromarray(np.full((10, 32), 70_000, dtype=np.int32)),
        "float.tif": Image.fromarray(np.full((10, 32), 0.5, dtype=np.float32)),
    })
    for i in range(4):
        image = reader.row(i).image
        assert image.shape == (10, 32, 3) and image.dtype == np.uint8
        assert (image == eight[:, :, None]).all(), reader.image_path(i).name
    with pytest.raises(BadRow, match="32-bit grey image with values 70000..70000: its range is unknown"):
        reader.row(4)
    with pytest.raises(BadRow, match="floating-point grey image .*range is unknown"):
        reader.row(5)


def test_exif_orientation_is_applied(tmp_path):
    """A phone photo stores the sensor's landscape pixels and "rotate 90" in EXIF: read upright."""
    sensor = np.zeros((20, 40, 3), dtype=np.uint8)  # landscape, left half red, right half blue
    sensor[:, :20] = (255, 0, 0)
    sensor[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to view"
    reader = _write_rows(tmp_path, {"phone.png": Image.fromarray(sensor)},
                         **{"phone.png": {"exif": exif.tobytes()}})
    image = reader.row(0).image
    assert image.shape == (40, 20, 3)  # portrait
    assert tuple(image[0, 0]) == (255, 0, 0) and tuple(image[-1, 0]) == (0, 0, 255)  # red on top
    assert reader.summary()["image_shape"] == (40, 20, 3)


def test_a_utf8_bom_does_not_cost_the_first_row(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes("\n".join([_line("a.jpg", "1"), _line("b.jpg", "2")]).encode("utf-8-sig") + b"\n")
    reader = JsonlReader(path)
    assert reader.skipped == [] and [reader.meta(i).product_id for i in range(len(reader))] == ["1", "2"]


def test_a_text_that_is_not_a_string_is_a_counted_skip(tmp_path):
    """``"text": 123`` was read as the description "123"; a number, list or boolean where text or an
    image path belongs is now a skipped line with its reason. Integer ids read as their digits."""
    path = tmp_path / "typed.jsonl"
    path.write_text("\n".join([
        _line("a.jpg", "1"),
        _line("b.jpg", "2", text=123),
        _line("c.jpg", "3", text=["a", "list"]),
        _line(7, "4"),
        _line("e.jpg", "5", pose=True),
        json.dumps({"image": "f.jpg", "text": "int ids", "category": 3, "subcategory": 4, "product_id": 14893,
                    "pose": None}),
        _line("g.jpg", "7", pose=0),  # pose 0 is "0", not empty
    ]) + "\n")
    reader = JsonlReader(path)
    assert reader.skipped == ["line 2: text is 123 (int), not a string",
                              'line 3: text is ["a", "list"] (list), not a string',
                              "line 4: image is 7 (int), not a string",
                              "line 5: pose is true (bool), not a string or integer"]
    assert [reader.meta(i).text for i in range(len(reader))] == ["item 1", "int ids", "item 7"]
    assert (reader.meta(1).category, reader.meta(1).product_id, reader.meta(1).pose) == ("3", "14893", "")
    assert reader.meta(2).pose == "0"


def test_the_reader_version_is_part_of_the_store_key(tmp_path, monkeypatch):
    """A store written by a reader that took other lines as rows is not reused."""
    from kaleido import registry
    from kaleido.data import jsonl

    path = tmp_path / "d.jsonl"
    path.write_text(_line("a.jpg", "1") + "\n")
    data = registry.datasets.get("jsonl")(train=str(path))
    before = data.fingerprint()
    monkeypatch.setattr(jsonl, "READER_VERSION", jsonl.READER_VERSION + 1)
    assert data.fingerprint() != before
