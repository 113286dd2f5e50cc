"""`kaleido eval RUN_DIR --recipe R` evaluates the pre-training of R's own settings, never another's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import typer

from kaleido.commands.evaluate import _pretrain_dir
from kaleido.recipe.load import load_recipe
from kaleido.training.pipeline import pretrain_dir

TINY = Path(__file__).resolve().parent / "recipes" / "tiny.toml"


def _finished(folder: Path, mtime: float) -> Path:
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "objective.json").write_text("{}")
    os.utime(folder / "model" / "objective.json", (mtime, mtime))
    return folder


def test_picks_the_recipes_own_pretrain_folder_not_the_newest(tmp_path, capsys) -> None:
    recipe = load_recipe(TINY)
    masked = load_recipe(TINY, ["masker.name=random"])
    assert pretrain_dir(recipe).name != pretrain_dir(masked).name
    mine = _finished(tmp_path / pretrain_dir(recipe).name, 1_000)
    _finished(tmp_path / pretrain_dir(masked).name, 2_000)  # newer: another variant's model
    assert _pretrain_dir(tmp_path, recipe) == mine / "model"
    assert _pretrain_dir(mine, recipe) == mine  # a pretrain folder given directly is used as it is
    with pytest.raises(typer.Exit):
        _pretrain_dir(tmp_path, load_recipe(TINY, ["pretrain.lr=0.5"]))
    said = capsys.readouterr()
    err = (said.out + said.err).replace("\n", "")
    assert "no pre-training of this recipe" in err and pretrain_dir(masked).name in err


def test_default_output_is_the_folder_kaleido_run_uses(tmp_path, monkeypatch) -> None:
    """Without --out, results go where `kaleido run` puts this recipe's evaluation (its key covers
    every section), so two variants of a run never overwrite each other's results."""
    from typer.testing import CliRunner

    import kaleido.evaluation.run as run_module
    from kaleido.cli import app
    from kaleido.training.pipeline import eval_dir

    written: list[Path] = []
    bars: list[bool] = []

    def fake_evaluate(recipe, pretrain, out, progress=True):
        written.append(Path(out))
        bars.append(progress)
        Path(out).mkdir(parents=True)
        (Path(out) / "results.md").write_text("ok")

    monkeypatch.setattr(run_module, "evaluate", fake_evaluate)
    for sets in ([], ["--set", "masker.name=random", "--no-progress"]):
        recipe = load_recipe(TINY, [s for s in sets if s not in ("--set", "--no-progress")])
        _finished(tmp_path / pretrain_dir(recipe).name, 1_000)
        result = CliRunner().invoke(app, ["eval", str(tmp_path), "--recipe", str(TINY), *sets])
        assert result.exit_code == 0, result.output
        assert written[-1] == tmp_path / eval_dir(recipe).name
    assert written[0] != written[1]
    assert bars == [True, False]  # --no-progress, as run, align and prepare take it


def test_default_output_is_keyed_on_the_pretrain_folder_read(tmp_path, monkeypatch) -> None:
    """Another variant's pretrain folder passed directly gets that variant's eval folder, never this
    recipe's (which `kaleido run` would then take for done); the recipe's own folder, given as the
    run, the pretrain folder or its model folder, gets exactly ``eval_dir(recipe)``."""
    from typer.testing import CliRunner

    import kaleido.evaluation.run as run_module
    from kaleido.cli import app
    from kaleido.training.pipeline import eval_dir

    written: list[Path] = []

    def fake_evaluate(recipe, pretrain, out, progress=True):
        written.append(Path(out))
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "results.md").write_text("ok")

    monkeypatch.setattr(run_module, "evaluate", fake_evaluate)
    recipe = load_recipe(TINY)
    masked = load_recipe(TINY, ["masker.name=random"])
    mine = _finished(tmp_path / pretrain_dir(recipe).name, 1_000)
    other = _finished(tmp_path / pretrain_dir(masked).name, 1_000)

    def evaluate_default(folder: Path) -> Path:
        result = CliRunner().invoke(app, ["eval", str(folder), "--recipe", str(TINY)])
        assert result.exit_code == 0, result.output
        return written[-1]

    assert evaluate_default(other) == tmp_path / eval_dir(masked).name
    assert evaluate_default(other / "model") == tmp_path / eval_dir(masked).name
    for folder in (tmp_path, mine, mine / "model"):
        assert evaluate_default(folder) == tmp_path / eval_dir(recipe).name
    # relative paths ("." inside the pretrain folder, "model" beside it) name the same folders
    monkeypatch.chdir(mine)
    for folder in (Path("."), Path("model")):
        assert evaluate_default(folder) == tmp_path / eval_dir(recipe).name
