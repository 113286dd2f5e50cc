"""`kaleido check` catches what `kaleido run` would refuse later, each at its file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from kaleido.recipe import load_recipe
from kaleido.recipe.construct import construction_problems


def _recipe(tmp_path, text: str = "") -> Path:
    """A small recipe of the offline components (MiniLM, MobileNetV2) plus ``text``."""
    path = tmp_path / "r.toml"
    head = f'[data]\nname = "synthetic"\ndir = "{tmp_path / "data"}"\n[model]\nname = "kaleido"\n'
    path.write_text(head + text, encoding="utf-8")
    return path


def _problems(path: Path, overrides: list[str], section: str) -> list:
    recipe = load_recipe(path, overrides)
    return [p for p in construction_problems(recipe) if p.path.split(".")[0] == section]


@pytest.mark.parametrize(("overrides", "field", "value", "words"), [
    (['model.init="minilmx"'], "model.init", "minilmx", "no such BERT folder"),
    (["model.max_text_len=1"], "model.max_text_len", 1, ">= 3"),
    (["model.max_text_len=513"], "model.max_text_len", 513, "at most 512"),
    (["model.keep_layers=9"], "model.keep_layers", 9, "6 layers"),
    (['model.init="scratch"', "model.keep_layers=2"], "model.keep_layers", 2, "num_layers"),
])
def test_the_model_factory_refuses_what_pretraining_would(tmp_path, overrides, field, value, words) -> None:
    """A missing init folder failed after prepare (`BERT weights not found at minilmx`), max_text_len 1
    when pre-training started; keep_layers beyond the init's layers kept them all, silently."""
    problems = _problems(_recipe(tmp_path), overrides, "model")
    assert [(p.file, p.path, p.given) for p in problems] == [("--set", field, value)]
    assert words in problems[0].expected
    assert _problems(_recipe(tmp_path), ["model.keep_layers=6", "model.max_text_len=512"], "model") == []


def test_a_pretrained_init_folder_must_hold_a_bert_config(tmp_path) -> None:
    from kaleido.models.kaleido import Kaleido

    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no config.json"):
        Kaleido(init=str(tmp_path / "empty"))
    Kaleido(init="minilm", keep_layers=6, max_text_len=512)  # the edges fit


def test_a_missing_data_file_is_a_check_error_at_its_field(tmp_path) -> None:
    """`data.train = "/nonexistent/pairs.jsonl"` passed check and failed only when prepare opened it."""
    train = tmp_path / "pairs.jsonl"
    train.write_text("", encoding="utf-8")
    path = tmp_path / "j.toml"
    path.write_text(f'[data]\nname = "jsonl"\ntrain = "{train}"\ntest = "{tmp_path / "gone.jsonl"}"\n',
                    encoding="utf-8")
    problems = _problems(path, [], "data")
    assert [(p.file, p.path, p.given) for p in problems] == [
        (str(path.resolve()), "data.test", str(tmp_path / "gone.jsonl"))]
    assert "an existing test data file" in problems[0].expected
    assert _problems(path, [f'data.test="{train}"'], "data") == []
    # the test file is read only by eval: a recipe that stops before it does not need one
    assert _problems(path, ['stages=["prepare", "align", "pretrain"]'], "data") == []
    # a folder is not a data file (prepare would refuse it)
    problems = _problems(path, [f'data.test="{tmp_path}"'], "data")
    assert [p.path for p in problems] == ["data.test"]


def _load_problems(path: Path, overrides: list[str]) -> dict[str, str]:
    from kaleido.recipe import RecipeError

    with pytest.raises(RecipeError) as info:
        load_recipe(path, overrides)
    return {p.path: str(p) for p in info.value.problems}


def test_a_batch_that_grad_accum_does_not_divide_is_a_recipe_error(tmp_path) -> None:
    """Pre-training refused it only when it started, without a field: `global batch 8 is not
    divisible by ranks x grad_accum = 1 x 3`."""
    path = _recipe(tmp_path, "[pretrain]\nbatch_size = 8\n")
    problems = _load_problems(path, ["pretrain.grad_accum=3"])
    assert list(problems) == ["pretrain.grad_accum"]
    accum = problems["pretrain.grad_accum"]
    assert accum.startswith("--set: pretrain.grad_accum: got 3, expected a divisor of "
                            "pretrain.batch_size = 8 (1, 2, 4, 8)")
    # the field set last is the one blamed, and what would fit is named
    blamed = _load_problems(tmp_path / "r.toml", ["pretrain.grad_accum=3", "pretrain.batch_size=10"])
    assert list(blamed) == ["pretrain.grad_accum"]
    path.write_text(path.read_text(encoding="utf-8") + "grad_accum = 3\n", encoding="utf-8")
    moved = _load_problems(path, ["pretrain.batch_size=10"])
    assert moved["pretrain.batch_size"].startswith(
        "--set: pretrain.batch_size: got 10, expected a multiple of pretrain.grad_accum = 3 (e.g. 9 or 12)")
    assert load_recipe(path, ["pretrain.batch_size=12"]).pretrain.grad_accum == 3


def test_fc_captions_must_fit_the_model_text_positions(tmp_path) -> None:
    """`caption_tokens=24 does not fit the model's 24 text positions` came after pre-training."""
    path = _recipe(tmp_path, "max_text_len = 24\n[eval]\ntasks = [\"itr\", \"fc\"]\n")
    problems = _load_problems(path, [])
    assert problems == {"model.max_text_len": (
        f"{path.resolve()}: model.max_text_len: got 24, expected at least 25 for eval.caption_tokens = 24 "
        "(fc captions are [CLS] + caption_tokens slots of the model's text positions; or set "
        "eval.caption_tokens <= 23, or leave fc out of eval.tasks)")}
    tokens = _load_problems(path, ["eval.caption_tokens=30"])["eval.caption_tokens"]
    assert tokens.startswith("--set: eval.caption_tokens: got 30, expected at most 23 for "
                             "model.max_text_len = 24")
    assert load_recipe(path, ["eval.caption_tokens=23"]).eval.caption_tokens == 23
    assert load_recipe(path, ['eval.tasks=["itr"]']).eval.caption_tokens == 24  # no fc: no rule


MULTI = """name = "multi"
sed = 1
[data]
name = "synthetic"
products = "x"
[masker]
name = "agmx"
[backbone]
name = "mobilenet_v2"
image_sise = 3
[model]
name = "kaleido"
keep_layers = 0
[pretrain]
tasks = ["amlm", "itmx"]
batch_size = -1
[tasks.itm]
weight = "x"
negative_ratio = 5
"""


def test_check_reports_the_constructors_problems_with_the_schemas_at_once(tmp_path) -> None:
    """keep_layers = 0 and negative_ratio = 5 were reported only once the six schema errors were
    fixed: each section whose own fields validate is built, and all problems come in one list."""
    from typer.testing import CliRunner

    from kaleido.cli import app
    from kaleido.recipe import RecipeError

    path = tmp_path / "multi.toml"
    path.write_text(MULTI, encoding="utf-8")
    schema = ["pretrain.batch_size", "sed", "data.products", "backbone.image_sise", "masker.name",
              "pretrain.tasks[1]", "tasks.itm.weight"]
    assert sorted(_load_problems(path, [])) == sorted(schema)  # a plain load builds nothing
    with pytest.raises(RecipeError) as info:
        load_recipe(path, [], build=True)
    found = {p.path: p for p in info.value.problems}
    assert sorted(found) == sorted([*schema, "model.keep_layers", "tasks.itm.negative_ratio"])
    ratio = found["tasks.itm.negative_ratio"]
    assert ratio.given == 5 and "[0, 1)" in ratio.expected
    result = CliRunner().invoke(app, ["check", str(path)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.count("error: ") == 9, result.output


def test_run_refuses_what_only_a_constructor_checks_before_any_stage_starts(tmp_path) -> None:
    """`kaleido run` loaded the recipe without building it: `keep_layers = 9` surfaced only when
    pre-training started, after the data were drawn and prepared."""
    from typer.testing import CliRunner

    from kaleido.cli import app

    path = _recipe(tmp_path)
    head = f'output_dir = "{tmp_path / "runs"}"\n'
    path.write_text(head + path.read_text(encoding="utf-8"), encoding="utf-8")
    result = CliRunner().invoke(app, ["run", str(path), "--no-progress", "--set", "model.keep_layers=9"])
    assert result.exit_code == 2
    assert "--set: model.keep_layers: got 9" in result.output
    assert not (tmp_path / "data").exists() and not (tmp_path / "runs").exists()  # nothing was started
