"""`kaleido data synth` and `kaleido data info` through the real Typer app."""

from __future__ import annotations

import re
import shutil

import h5py
from typer.testing import CliRunner

from kaleido.cli import app

runner = CliRunner()


def test_synth_then_info(tmp_path):
    out = tmp_path / "s.h5"
    result = runner.invoke(app, ["data", "synth", "--out", str(out), "--products", "4", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert out.is_file() and (tmp_path / "s.h5.parts.json").is_file()
    with h5py.File(out, "r") as f:
        rows = f["input_image"].shape[0]
    result = runner.invoke(app, ["data", "info", str(out)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert f"rows │ {rows}" in text and "products │ 4" in text
    assert "256 x 256 x 3" in text and "text decoding fallbacks │ 0" in text

    bad = tmp_path / "bad.h5"
    shutil.copy(out, bad)
    with h5py.File(bad, "r+") as f:
        f["input_description"][0, 0] = b"\xff\xfe broken"
    result = runner.invoke(app, ["data", "info", str(bad)])
    assert "text decoding fallbacks │ 1" in " ".join(result.output.split())


def test_info_on_jsonl(myntra_dir):
    result = runner.invoke(app, ["data", "info", str(myntra_dir / "pairs.jsonl")])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "rows │ 500" in text and "categories │ 4:" in text and "sub-categories │ 33:" in text


def test_info_decodes_every_jsonl_image_as_prepare_does(tmp_path, myntra_dir):
    """info read only the headers: a truncated JPEG passed it and was then skipped by prepare."""
    import json

    photo = sorted((myntra_dir / "images").glob("*.jpg"))[0].read_bytes()
    (tmp_path / "good.jpg").write_bytes(photo)
    (tmp_path / "cut.jpg").write_bytes(photo[: len(photo) // 2])
    lines = [{"image": name, "text": f"t {i}", "category": "c", "subcategory": "s", "product_id": str(i)}
             for i, name in enumerate(["good.jpg", "cut.jpg", "gone.jpg"])]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    result = runner.invoke(app, ["data", "info", str(tmp_path / "d.jsonl")], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "unreadable images (fully decoded) │ 2" in text
    # by JSONL line, as the dropped lines and prepare name them ("row 2" was the file's third row)
    assert "line 2: unreadable image" in text and "truncated" in text
    assert "line 3: image file not found" in text
    # a long path wraps whole: it was cut to "…/gone…", hiding which file is missing
    assert "…" not in result.output and str(tmp_path / "gone.jpg") in re.sub(r"[│\s]", "", result.output)


def test_errors_are_one_line(tmp_path):
    result = runner.invoke(app, ["data", "info", str(tmp_path / "absent.h5")])
    assert result.exit_code == 2 and "no such file" in result.output
    result = runner.invoke(app, ["data", "synth", "--out", str(tmp_path / "x.h5"), "--products", "2",
                                 "--min-poses", "3", "--max-poses", "2"])
    assert result.exit_code == 2 and "--min-poses 3 is more than --max-poses 2" in result.output
