"""Every shipped recipe validates with `kaleido check`, and each Table-4 recipe differs from
the full one exactly in its column's factor."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from kaleido.cli import app
from kaleido.recipe import load_recipe

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
SHIPPED = sorted(RECIPES.glob("*.toml"))

# column recipe -> the settings (dotted keys) it changes against full.toml, besides `name`; a
# component switch also drops the old component's parameters (sod.weights, patcher.levels)
TASKS = {"pretrain.tasks"}
COLUMNS = {
    "scale-fixed.toml": {"sod.name", "sod.weights", "patcher.name", "patcher.grid", "patcher.levels",
                         "aligner.levels", "pretrain.tasks"},
    "kaleido-no-sod.toml": {"sod.name", "sod.weights"},
    "random-masking.toml": {"masker.name"},
    "tasks-b.toml": TASKS,
    "tasks-b-i.toml": TASKS,
    "tasks-b-i-ii.toml": TASKS,
    "tasks-b-i-iii.toml": TASKS,
    "tasks-b-i-iv.toml": TASKS,
    "tasks-b-v.toml": TASKS,
}


def test_every_table4_column_ships() -> None:
    names = {p.name for p in SHIPPED}
    assert {"full.toml", *COLUMNS} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_kaleido_check_passes(path: Path) -> None:
    """Every shipped recipe is valid; the paper's hold placeholder weight paths, so only the
    quickstart (offline weights) also builds every component."""
    build = [] if path.name == "quickstart.toml" else ["--no-build"]
    result = CliRunner().invoke(app, ["check", str(path), *build])
    assert result.exit_code == 0, result.output
    assert "[pretrain]" in result.output  # the resolved recipe is printed


def test_kaleido_check_builds_the_components_to_catch_what_only_constructors_know(tmp_path) -> None:
    """Ranges that tie parameters together or read files are the constructors'; `check` reports
    each at its field and where it was set, as any recipe error, and the paper's recipe names the
    weight files still to be given."""
    quick = RECIPES / "quickstart.toml"
    local = tmp_path / "mine.toml"
    local.write_text(f'extends = "{quick}"\n[model]\nkeep_layers = 0\n', encoding="utf-8")
    result = CliRunner().invoke(app, ["check", str(local), "--set", 'sod.name="unet"',
                                      "--set", "aligner.low_level=2"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 3 and "Traceback" not in result.output
    assert any(line.startswith(f"error: {local}: model.keep_layers: got 0") for line in lines)
    assert any(line.startswith("error: --set: sod: got 'unet'") and "weights" in line for line in lines)
    assert any("--set: aligner.low_level: got 2" in line and "low_level = 1" in line for line in lines)
    assert CliRunner().invoke(app, ["check", str(local), "--no-build"]).exit_code == 0  # loads fine
    # the field the message names first, not the first set one the message happens to contain
    sized = CliRunner().invoke(app, ["check", str(quick), "--set", "model.hidden_size=512"])
    assert sized.exit_code == 2 and "error: --set: model.hidden_size: got 512" in sized.output, sized.output
    paper = CliRunner().invoke(app, ["check", str(RECIPES / "full.toml")])
    assert paper.exit_code == 2
    placeholders = {line.split(": got ")[0].split(": ")[-1]: line.split(": got ")[1].split(",")[0]
                    for line in paper.output.replace("\n", "").split("error: ")[1:]}
    assert placeholders == {  # every "/path/to" of the paper's recipe is named, and only those
        "data.train": "'/path/to/fashiongen_256_256_train.h5'",
        "data.test": "'/path/to/fashiongen_256_256_validation.h5'",
        "sod.weights": "'/path/to/sod-unet.safetensors'",
        "backbone.weights": "'/path/to/resnet50-imagenet.pth'",
        "model.init": "'/path/to/bert-base-uncased'"}, paper.output


# recipe -> (patcher grids, the grids its tasks hide patches of, the masker's patch budget per level
# id, level g being the g x g grid of the Kaleido layout): CP camouflages one 3x3 patch, G2CM greys
# 4x4 ones, B2CM blanks 5x5 ones (quotas 1 / 2 / 3); a recipe of none of these plans no patch
KALEIDO_GRIDS = (1, 2, 3, 4, 5)
ALL_TASKS = (KALEIDO_GRIDS, {3, 4, 5}, {3: 1, 4: 2, 5: 3})
HIDDEN = {
    "full.toml": ALL_TASKS,
    "kaleido-no-sod.toml": ALL_TASKS,
    "quickstart.toml": ALL_TASKS,
    "random-masking.toml": ALL_TASKS,
    "scale-fixed.toml": ((8,), set(), {}),
    "tasks-b.toml": (KALEIDO_GRIDS, set(), {}),
    "tasks-b-i.toml": (KALEIDO_GRIDS, set(), {}),
    "tasks-b-i-ii.toml": (KALEIDO_GRIDS, set(), {}),
    "tasks-b-i-iii.toml": (KALEIDO_GRIDS, {3}, {3: 1}),
    "tasks-b-i-iv.toml": (KALEIDO_GRIDS, {3, 4}, {3: 1, 4: 2}),
    "tasks-b-v.toml": (KALEIDO_GRIDS, {5}, {5: 3}),
}


def test_every_shipped_recipe_has_its_hidden_grids_stated() -> None:
    assert set(HIDDEN) == {p.name for p in SHIPPED}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_tasks_and_masker_fit_the_patch_layout(path: Path) -> None:
    """A task whose Kaleido level the patcher lacks would only fail after feature extraction."""
    from kaleido.tasks.base import hidden_by, patch_layout

    recipe = load_recipe(path)
    grids = tuple(recipe.build("patcher").grids)
    tasks = [recipe.build_task(name) for name in recipe.pretrain.tasks]
    for task in tasks:
        task.bind(grids)  # raises for a missing level
    hidden = hidden_by(tasks)
    budgets = hidden.patch_budgets(patch_layout(grids), grids, recipe.build("masker").patch_quotas)
    # a task that hides patches gets some to hide; with none (B, scale-fixed) none are planned
    assert (sum(budgets.values()) > 0) == bool(hidden.grids), f"{path.name}: {budgets} for grids {grids}"
    want_grids, want_hidden, want_budgets = HIDDEN[path.name]
    assert grids == want_grids and hidden.grids == want_hidden and hidden.tokens
    assert budgets == want_budgets, f"{path.name}: {budgets}"


def _diff(a: dict, b: dict) -> set[str]:
    """The dotted keys whose values differ (a key on one side only counts)."""
    from kaleido.recipe.load import leaves

    a, b = dict(leaves(a)), dict(leaves(b))
    return {k for k in set(a) | set(b) if a.get(k) != b.get(k)}


@pytest.mark.parametrize("column", sorted(COLUMNS))
def test_column_changes_only_its_factor(column: str) -> None:
    text = (RECIPES / column).read_text(encoding="utf-8")
    assert 'extends = "full.toml"' in text and "paper: SumR" in text
    full = load_recipe(RECIPES / "full.toml").model.model_dump()
    variant = load_recipe(RECIPES / column).model.model_dump()
    assert _diff(full, variant) - {"name"} == COLUMNS[column]
    assert variant["name"] == column.removesuffix(".toml")


def test_full_recipe_is_the_paper_setting() -> None:
    r = load_recipe(RECIPES / "full.toml")
    assert r.pretrain.tasks == ["amlm", "itm", "rr", "jps", "cp", "g2cm", "b2cm"]
    assert (r.pretrain.lr, r.pretrain.weight_decay, r.pretrain.warmup_steps) == (2e-5, 1e-4, 5000)
    assert r.launch.nproc_per_node == 8
    assert (r.sod.name, r.patcher.name, r.backbone.name, r.aligner.name, r.masker.name) == (
        "unet", "kaleido", "resnet50", "sat", "agm")
    assert r.model.data.name == "fashiongen"
    assert tuple(r.build("patcher").grids) == (1, 2, 3, 4, 5)


def test_task_columns_grow_one_level_at_a_time() -> None:
    order = ["tasks-b", "tasks-b-i", "tasks-b-i-ii", "tasks-b-i-iii", "tasks-b-i-iv", "full"]
    lists = [load_recipe(RECIPES / f"{n}.toml").pretrain.tasks for n in order]
    for shorter, longer in zip(lists, lists[1:], strict=False):
        assert longer[: len(shorter)] == shorter and len(longer) == len(shorter) + 1
    assert load_recipe(RECIPES / "tasks-b-v.toml").pretrain.tasks == ["amlm", "itm", "b2cm"]
