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
