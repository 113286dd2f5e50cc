"""The stage-1 commands: `kaleido prepare` (store keyed by the recipe, reused), `show`, `sod train|eval`."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
from typer.testing import CliRunner

from kaleido.cli import app
from kaleido.features.prepare import prepare, store_dir
from kaleido.features.store import FeatureStore
from kaleido.recipe import load_recipe

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_thread_per_module")


@pytest.fixture(scope="module")
def recipe_path(tmp_path_factory):
    root = tmp_path_factory.mktemp("prep")
    path = root / "tiny.toml"
    path.write_text(textwrap.dedent(f"""
        name = "tiny"
        output_dir = "{root / 'runs'}"
        [data]
        name = "synthetic"
        dir = "{root / 'data'}"
        products = 4
        test_products = 2
        [sod]
        name = "background"
        [patcher]
        name = "kaleido"
        [backbone]
        name = "mobilenet_v2"
        image_size = 64
        device = "cpu"
        [prepare]
        batch_size = 4
    """))
    return path


@pytest.mark.slow
def test_prepare_command_writes_and_reuses_the_store(recipe_path):
    result = runner.invoke(app, ["prepare", str(recipe_path), "--no-progress"])
    assert result.exit_code == 0, result.output
    recipe = load_recipe(recipe_path)
    train = FeatureStore(store_dir(recipe) / "train")
    test = FeatureStore(store_dir(recipe) / "test")
    assert len(train) > 0 and len(test) > 0 and train.features(0).shape == (55, 1280)
    assert "skipped: 0" in result.output
    report = prepare(recipe, "train", progress=False)
    assert report.reused and report.rows == len(train)
    # another preparation setting is another store; a training-only setting is not
    other = load_recipe(recipe_path, ["patcher.levels=3"])
    assert store_dir(other) != store_dir(recipe)
    assert store_dir(load_recipe(recipe_path, ["pretrain.lr=0.5"])) == store_dir(recipe)


def test_prepare_reports_a_bad_recipe_in_one_line(recipe_path):
    result = runner.invoke(app, ["prepare", str(recipe_path), "--set", "backbone.mode=grid"])
    assert result.exit_code == 2 and "backbone.mode" in result.output


def test_show_writes_a_png_for_a_row_and_a_photo(recipe_path, myntra_dir, tmp_path):
    out = tmp_path / "row.png"
    result = runner.invoke(app, ["show", "0", "--recipe", str(recipe_path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000
    photo = json.loads((myntra_dir / "pairs.jsonl").read_text().splitlines()[0])["image"]
    out2 = tmp_path / "photo"  # no suffix: a PNG
    result = runner.invoke(app, ["show", str(myntra_dir / photo), "--recipe", str(recipe_path),
                                 "--out", str(out2)])
    assert result.exit_code == 0 and "foreground box" in result.output, result.output
    assert out2.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = runner.invoke(app, ["show", "nonsense", "--recipe", str(recipe_path)])
    assert result.exit_code == 2 and "neither an image file nor a row number" in result.output


def test_draw_layout_draws_every_patch_and_the_box():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kaleido.patchers.draw import draw_layout
    from kaleido.patchers.layout import grid_layout

    fig, ax = plt.subplots()
    layout = grid_layout([10, 10, 90, 70], 100, 80, (1, 2, 3))
    draw_layout(ax, np.zeros((80, 100, 3), np.uint8), layout, np.array([10, 10, 90, 70]))
    assert len(ax.patches) == 14 + 1
    plt.close(fig)


def test_sod_train_and_eval_commands(recipe_path, tmp_path):
    weights = tmp_path / "unet.safetensors"
    result = runner.invoke(app, ["sod", "train", "--recipe", str(recipe_path), "--out", str(weights),
                                 "--steps", "3", "--size", "32", "--width", "4", "--batch-size", "4"])
    assert result.exit_code == 0, result.output
    assert weights.is_file()
    result = runner.invoke(app, ["sod", "eval", "--recipe", str(recipe_path), "--set", "sod.name=unet",
                                 "--set", f"sod.weights={json.dumps(str(weights))}", "--set", "sod.size=32",
                                 "--set", "sod.width=4"])
    assert result.exit_code == 0, result.output
    assert "box IoU mean" in result.output


def test_bad_input_to_show_and_sod_eval_is_one_line_not_a_traceback(recipe_path, tmp_path):
    bad_photo = tmp_path / "broken.jpg"
    bad_photo.write_bytes(b"\xff\xd8\xff not really a jpeg")
    cases = [
        (["show", "1", "--recipe", str(recipe_path), "--split", "val"], "unknown split 'val'"),
        (["show", "1", "--recipe", str(recipe_path), "--out", str(tmp_path)], "is a folder"),
        (["show", "9999", "--recipe", str(recipe_path)], "row 9999 is out of range: split train has"),
        (["sod", "eval", "--recipe", str(recipe_path), "--set", "sod.name=unet"], "needs `weights`"),
        (["sod", "eval", "--recipe", str(recipe_path), "--split", "val"], "unknown split 'val'"),
        (["sod", "train", "--recipe", str(recipe_path), "--out", str(tmp_path / "w.safetensors"),
          "--size", "100"], "multiple of 8"),
        (["show", str(bad_photo), "--recipe", str(recipe_path)], "not a usable image"),
    ]
    for args, says in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert says in result.output.replace("\n", " ") and "Traceback" not in result.output, args
    assert not list(tmp_path.glob(".*.tmp-*"))


def _gone_rows(n: int) -> list[str]:
    """JSONL lines of ``n`` products whose images do not exist: every row skipped, no backbone pass."""
    return [json.dumps({"image": f"gone{i}.jpg", "text": f"t {i}", "category": "c", "subcategory": "s",
                        "product_id": str(i)}) for i in range(n)]


def _jsonl_recipe(tmp_path, data: str, extra: str = ""):
    """A recipe on ``tmp_path/d.jsonl`` (``data``: more [data] keys), no saliency, a 64-px MobileNetV2."""
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'output_dir = "{tmp_path / "runs"}"\n[data]\nname = "jsonl"\n'
                      f'train = "{tmp_path / "d.jsonl"}"\n{data}\n[sod]\nname = "none"\n'
                      f'[backbone]\nname = "mobilenet_v2"\nimage_size = 64\ndevice = "cpu"\n{extra}\n')
    return recipe


def test_the_prepare_bar_starts_at_its_row_count(tmp_path, monkeypatch):
    """The bars started as `0/? -- img/s` although the row count is known before the first batch."""
    from rich.progress import Progress

    (tmp_path / "d.jsonl").write_text("\n".join(_gone_rows(5)) + "\n")
    recipe = _jsonl_recipe(tmp_path, "test_fraction = 0.4", "[prepare]\nbatch_size = 2")
    added, add_task = [], Progress.add_task

    def spy(self, description, *args, **kwargs):
        added.append((description, kwargs.get("total"), kwargs.get("completed", 0)))
        return add_task(self, description, *args, **kwargs)

    monkeypatch.setattr(Progress, "add_task", spy)
    report = prepare(load_recipe(recipe), "train", out_dir=tmp_path / "store", progress=True)
    assert added == [("prepare train", 3, 0)] and len(report.skipped) == 3


def test_prepare_names_a_skipped_jsonl_row_by_its_line(tmp_path, caplog):
    """Line 4's missing image was "train: row 2 skipped" beside "d.jsonl line 1: not JSON"."""
    rows = _gone_rows(3)
    (tmp_path / "d.jsonl").write_text("\n".join(["{not json", *rows]) + "\n")
    (tmp_path / "t.jsonl").write_text(rows[0] + "\n")
    recipe = _jsonl_recipe(tmp_path, f"test = \"{tmp_path / 't.jsonl'}\"")
    with caplog.at_level("WARNING"):
        report = prepare(load_recipe(recipe), "train", out_dir=tmp_path / "store", progress=False)
    gone = f"image file not found: {tmp_path / 'gone2.jpg'}"
    assert f"train: row 2 (d.jsonl line 4) skipped: {gone}" in caplog.text
    lines = report.lines()
    assert f"    row 2 (d.jsonl line 4): {gone}" in lines
    assert "    d.jsonl line 1: not JSON (Expecting property name enclosed in double quotes)" in lines
    reused = prepare(load_recipe(recipe), "train", out_dir=tmp_path / "store", progress=False)
    assert reused.reused and reused.lines()[4:] == lines[4:]  # a reused store names them alike


def test_the_speed_column_has_a_figure_before_rich_has_two_samples():
    """A split of one batch finished as `9/9 -- img/s`: rich's estimate needs two updates."""
    import io

    from rich.console import Console
    from rich.progress import Progress

    from kaleido.progress import SpeedColumn

    clock = [0.0]
    bar = Progress(console=Console(file=io.StringIO()), get_time=lambda: clock[0])
    task = bar.add_task("test", total=9, completed=3, resumed=3)  # 3 rows done by an earlier run
    clock[0] = 2.0
    bar.update(task, completed=9)
    assert SpeedColumn().render(bar.tasks[0]).plain == "3.0 img/s"  # 6 rows in 2 s, not 9
