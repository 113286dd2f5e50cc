"""`kaleido ablate` pieces: variant derivation, the Table-4 comparison, and the run orchestration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kaleido.ablation.runner import plan_variant, run_ablation
from kaleido.ablation.table import Row, build_table, mean_sd, to_markdown, write_all
from kaleido.ablation.variants import (
    PAPER_COLUMNS,
    Variant,
    VariantError,
    component_variant,
    file_overrides,
    file_variant,
    paper_variants,
    parse_tasks,
    tasks_variant,
    with_column,
)
from kaleido.recipe import load_recipe

RECIPES = Path(__file__).resolve().parents[1] / "recipes"

SMALL = """
name = "small"
output_dir = "{root}/runs"
[data]
name = "synthetic"
dir = "{root}/data"
[sod]
name = "background"
[aligner]
name = "none"
[masker]
name = "agm"
[model]
name = "kaleido"
init = "scratch"
"""


@pytest.fixture()
def small(tmp_path: Path) -> Path:
    path = tmp_path / "small.toml"
    path.write_text(SMALL.format(root=tmp_path), encoding="utf-8")
    return path


# -- variants ---------------------------------------------------------------------------------
@pytest.mark.parametrize("spec, tasks", [
    ("B", ["amlm", "itm"]),
    ("B+I", ["amlm", "itm", "rr"]),
    ("B+I~III", ["amlm", "itm", "rr", "jps", "cp"]),
    ("B+I~V", ["amlm", "itm", "rr", "jps", "cp", "g2cm", "b2cm"]),
    ("b+v", ["amlm", "itm", "b2cm"]),
    ("B+IV+II", ["amlm", "itm", "jps", "g2cm"]),
    ("amlm,itm,cp", ["amlm", "itm", "cp"]),
])
def test_task_shorthands(spec: str, tasks: list[str]) -> None:
    assert parse_tasks(spec) == tasks


@pytest.mark.parametrize("spec", ["B+VI", "B+III~I", "B+IIII"])
def test_bad_task_shorthand_is_one_clear_error(spec: str) -> None:
    with pytest.raises(VariantError, match="--tasks"):
        parse_tasks(spec)


def test_component_values_become_overrides(small: Path) -> None:
    v = component_variant("masker", "random token_rate=0.3")
    assert v.overrides == ('masker.name="random"', "masker.token_rate=0.3")
    r = load_recipe(small, list(v.overrides))
    assert r.masker.name == "random" and r.build("masker").token_rate == 0.3
    with pytest.raises(VariantError, match="key=value"):
        component_variant("masker", "random fast")
    with pytest.raises(VariantError, match="component name"):
        component_variant("sod", "weights=x")


@pytest.mark.parametrize("column", PAPER_COLUMNS, ids=lambda c: c.recipe)
def test_column_file_as_overrides_equals_the_column_recipe(column) -> None:
    """--paper applies a column's own keys to the base: on full.toml that must give the column recipe."""
    derived = load_recipe(RECIPES / "full.toml", file_overrides(RECIPES / f"{column.recipe}.toml"))
    shipped = load_recipe(RECIPES / f"{column.recipe}.toml")
    a, b = derived.model.model_dump(), shipped.model.model_dump()
    a.pop("name"), b.pop("name")
    assert a == b


def _tasks(*names: str) -> str:
    return "pretrain.tasks=[" + ", ".join(f'"{n}"' for n in ("amlm", "itm", *names)) + "]"


# SPEC section 8, Table 4 (copied here, not from the code): each column's figures and exactly
# what its recipe changes against full.toml
TABLE4 = {
    "Scale-fixed": ((276.97, 313.43, 76.6), {'sod.name="none"', 'patcher.name="fixed"', "patcher.grid=8",
                                             "aligner.levels=[1]", _tasks()}),
    "Kaleido (no SOD)": ((303.80, 314.96, 79.7), {'sod.name="none"'}),
    "Random masking": ((299.50, 314.31, 78.6), {'masker.name="random"'}),
    "B": ((295.70, 297.40, 77.9), {_tasks()}),
    "B+I": ((297.18, 298.77, 79.0), {_tasks("rr")}),
    "B+I~II": ((300.82, 307.54, 79.2), {_tasks("rr", "jps")}),
    "B+I~III": ((312.65, 315.30, 81.6), {_tasks("rr", "jps", "cp")}),
    "B+I~IV": ((316.10, 316.88, 83.4), {_tasks("rr", "jps", "cp", "g2cm")}),
    "B+V": ((287.70, 300.21, 78.6), {_tasks("b2cm")}),
}


def test_paper_variants_are_table4_with_the_papers_figures_and_changes() -> None:
    variants = paper_variants(RECIPES)
    assert [v.label for v in variants] == list(TABLE4)
    for v in variants:
        figures, changes = TABLE4[v.label]
        assert (v.paper["sum_r"], v.paper["sum_cls"], v.paper["sum_cap"]) == figures, v.label
        assert set(v.overrides) == changes, v.label
    assert {v.factor for v in variants} == {"patcher", "masker", "tasks"}
    with pytest.raises(VariantError, match="missing"):
        paper_variants(RECIPES / "nowhere")


def test_a_variant_that_is_a_column_carries_it_however_it_was_asked_for(tmp_path: Path) -> None:
    """By content, not by name: --masker random is the "Random masking" column; a file named like a
    column that changes something else is not; a renamed copy of a column file is."""
    assert with_column(component_variant("masker", "random"), RECIPES).label == "Random masking"
    assert with_column(component_variant("sod", "none"), RECIPES).paper["sum_r"] == 303.80
    b_iv = with_column(tasks_variant("B+I~IV"), RECIPES)
    assert (b_iv.factor, b_iv.label, b_iv.paper["sum_cap"]) == ("tasks", "B+I~IV", 83.4)
    tuned = with_column(component_variant("masker", "random token_rate=0.3"), RECIPES)
    assert (tuned.label, tuned.paper) == ("random token_rate=0.3", None)
    v = file_variant(RECIPES / "kaleido-no-sod.toml", RECIPES)
    assert (v.factor, v.label, v.overrides) == ("patcher", "Kaleido (no SOD)", ('sod.name="none"',))
    assert v.paper == {"sum_r": 303.80, "sum_cls": 314.96, "sum_cap": 79.7}
    impostor = tmp_path / "random-masking.toml"
    impostor.write_text('extends = "full.toml"\n[masker]\ntoken_rate = 0.3\n')
    assert file_variant(impostor, RECIPES) == Variant("recipe", "random-masking", ("masker.token_rate=0.3",))
    copy = tmp_path / "mine.toml"
    copy.write_text('extends = "full.toml"\nname = "mine"\n[masker]\nname = "random"\n')
    assert file_variant(copy, RECIPES).label == "Random masking"


def test_the_full_models_figures_go_beside_full_toml_only() -> None:
    """--paper's base row: full.toml with its /path/to placeholders filled is the paper's full
    model; another base (or full.toml with a changed setting) is shown under its own name."""
    from kaleido.ablation.variants import FULL_COLUMN, base_variant

    filled = load_recipe(RECIPES / "full.toml", ['data.train="/d/train.h5"', 'model.init="/bert"',
                                                 'backbone.weights="/r50.pth"', "launch.nproc_per_node=2"])
    assert base_variant(filled, RECIPES) == Variant("base", FULL_COLUMN.label, (), FULL_COLUMN.paper)
    tuned = base_variant(load_recipe(RECIPES / "full.toml", ["pretrain.lr=1e-4"]), RECIPES)
    assert (tuned.label, tuned.paper) == ("full", None) and "pretrain.lr differs" in tuned.notes[0]
    quick = base_variant(load_recipe(RECIPES / "quickstart.toml"), RECIPES)
    assert (quick.label, quick.paper) == ("quickstart", None) and "not full.toml" in quick.notes[0]


def test_a_variant_file_merges_nested_tables_and_refuses_a_typo(small: Path, tmp_path: Path) -> None:
    """A file's nested table merges into the base's (as ``extends`` does), a parameter no
    component takes is an error (not a variant equal to the base), and a file's seed is the
    ablation's to set."""
    nested = tmp_path / "lr.toml"
    nested.write_text('extends = "x.toml"\nseed = 7\n[eval.task_lr]\ncls = 5e-3\n')
    v = file_variant(nested, RECIPES)
    assert v.overrides == ("seed=7", "eval.task_lr.cls=0.005")
    planned = plan_variant(small, [], v, "small-lr", [0])
    base = load_recipe(small)
    assert planned.recipes[0].eval.task_lr == {**base.eval.task_lr, "cls": 0.005}
    assert planned.recipes[0].seed == 0 and any("seed=7 left out" in n for n in planned.variant.notes)
    typo = tmp_path / "typo.toml"
    typo.write_text('extends = "x.toml"\n[masker]\ntoken_rat = 0.3\n')
    with pytest.raises(VariantError, match="masker.token_rat: no masker component takes 'token_rat'"):
        plan_variant(small, [], file_variant(typo, RECIPES), "small-typo", [0])


def test_slugs_are_distinct_per_column() -> None:
    slugs = [v.slug for v in paper_variants(RECIPES)]
    assert len(set(slugs)) == len(slugs) and all("/" not in s and "~" not in s for s in slugs)


def test_plan_drops_tasks_without_their_level_and_params_the_base_lacks(small: Path) -> None:
    """The scale-fixed column on a base without an aligner: aligner.levels has nowhere to go, and
    every AKPM task of a base with all seven loses its level on the 8x8 grid."""
    scale_fixed = paper_variants(RECIPES)[0]
    planned = plan_variant(small, [], scale_fixed, "small-sf", [0, 1])
    r = planned.recipes[1]
    assert (r.patcher.name, r.sod.name, r.seed, r.name) == ("fixed", "none", 1, "small-sf")
    assert r.pretrain.tasks == ["amlm", "itm"]  # the column recipe says so itself
    assert any("aligner.levels left out" in n for n in planned.variant.notes)

    fixed = plan_variant(small, [], component_variant("patcher", "fixed grid=6"), "small-fixed", [0])
    assert fixed.recipes[0].pretrain.tasks == ["amlm", "itm"]
    assert any("rr, jps, cp, g2cm, b2cm dropped" in n for n in fixed.variant.notes)

    five = plan_variant(small, [], component_variant("patcher", "fixed grid=5"), "small-five", [0])
    assert five.recipes[0].pretrain.tasks == ["amlm", "itm", "b2cm"]  # 5x5 exists: B2CM stays


def test_plan_rejects_a_bad_variant_before_running(small: Path) -> None:
    with pytest.raises(VariantError, match="no_such_masker"):
        plan_variant(small, [], component_variant("masker", "no_such_masker"), "x", [0])
    with pytest.raises(VariantError, match="token_rate"):
        plan_variant(small, [], component_variant("masker", "random token_rate=7"), "x", [0])
    with pytest.raises(VariantError, match="X\\+I"):  # not a shorthand: a task list with an unknown task
        plan_variant(small, [], tasks_variant("X+I"), "x", [0])


# -- table ------------------------------------------------------------------------------------
def _row(label: str, values: list[tuple[float | None, float | None, float | None]], factor: str = "masker",
         paper: dict | None = None) -> Row:
    runs = [{"sum_r": a, "sum_cls": b, "sum_cap": c} for a, b, c in values]
    return Row(factor, label, list(range(len(values))), runs, paper)


def test_mean_sd_and_paired_delta() -> None:
    assert mean_sd([1.0, 3.0]) == (2.0, pytest.approx(2 ** 0.5))
    assert mean_sd([5.0]) == (5.0, None) and mean_sd([None]) == (None, None)
    base = _row("agm", [(100.0, 200.0, 10.0), (110.0, 210.0, 12.0)], "base")
    var = _row("random", [(90.0, 205.0, None), (104.0, 205.0, None)])
    assert var.delta(base, "sum_r") == (-8.0, pytest.approx(2 ** 0.5 * 2))  # diffs -10, -6
    assert var.delta(base, "sum_cls")[0] == 0.0
    assert var.delta(base, "sum_cap") == (None, None)


def test_markdown_layout(tmp_path: Path) -> None:
    base = _row("full", [(300.0, 310.0, 80.0), (302.0, 312.0, 82.0)], "base",
                {"sum_r": 319.52, "sum_cls": 318.14, "sum_cap": 84.0})
    masker = _row("Random masking", [(290.0, 300.0, 70.0), (296.0, 306.0, 72.0)], "masker",
                  {"sum_r": 299.50, "sum_cls": 314.31, "sum_cap": 78.6})
    tasks = _row("B", [(None, 1.0, 2.0), (None, 3.0, 4.0)], "tasks")
    table = build_table(base, [masker, tasks], {"sum_r": 30.0, "sum_cls": 5.0, "sum_cap": 1.5})
    md = to_markdown(table, "T")
    lines = md.splitlines()
    assert "Seeds per setting: 2." in md
    base_line = next(line for line in lines if "full (base)" in line)
    assert "301.00 ± 1.41" in base_line and "(" not in base_line.split("|")[3]
    random_line = next(line for line in lines if "Random masking" in line)
    assert "293.00 ± 4.24 (-8.00 ± 2.83)" in random_line
    assert "299.50 (-20.02)" in random_line  # the paper's own change beside ours
    b_line = next(line for line in lines if "| B |" in line)
    assert b_line.split("|")[3].strip() == "-"
    assert "| chance |" in md and "30.00" in md

    paths = write_all(table, tmp_path / "out", "T")
    assert json.loads(paths["json"].read_text())["variants"][0]["sum_r"]["delta"] == -8.0
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert paths["md"].read_text() == md
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ablation.json", "ablation.md",
                                                                    "ablation.png"]


# -- orchestration ----------------------------------------------------------------------------
def test_run_ablation_seeds_dedup_and_failures(small: Path, tmp_path: Path) -> None:
    """A fake stage chain that scores from the recipe: checks which recipes run, in what order,
    that an identical recipe runs once, and that a failed run shows as '-' without stopping."""
    calls: list[tuple[str, int, str, tuple]] = []

    def runner(recipe, launch, echo):
        calls.append((recipe.name, recipe.seed, recipe.masker.name, tuple(recipe.pretrain.tasks)))
        if recipe.masker.name == "random" and recipe.seed == 1:
            raise RuntimeError("boom\nsecond line")
        out = tmp_path / "fake" / f"{recipe.name}-{recipe.seed}"
        out.mkdir(parents=True)
        score = 10.0 * len(recipe.pretrain.tasks) + recipe.seed + (5 if recipe.masker.name == "agm" else 0)
        results = {"retrieval": {"scorers": {"pre-trained ITM": {"sum_r": score}}, "chance": {"sum_r": 3.0}},
                   "sum_cls": {"ours": 2 * score, "chance": 1.0}}
        (out / "results.json").write_text(json.dumps(results))
        return out / "results.json"

    variants = [component_variant("masker", "random"), component_variant("masker", "agm"), tasks_variant("B")]
    table, paths = run_ablation(small, variants, seeds=2, progress=False, runner=runner,
                                out_dir=tmp_path / "abl", echo=lambda line: None)
    # the "agm" variant is the base itself: it never runs again
    assert [c[:2] for c in calls] == [("small", 0), ("small", 1), ("small-masker-random", 0),
                                      ("small-masker-random", 1), ("small-tasks-b", 0), ("small-tasks-b", 1)]
    assert calls[-1][3] == ("amlm", "itm")
    base, random_, agm, b = table["base"], *table["variants"]
    assert base["sum_r"]["mean"] == 75.5 and base["sum_r"]["sd"] == pytest.approx(0.5 ** 0.5)
    assert random_["sum_r"]["mean"] == 70.0 and random_["sum_r"]["sd"] is None  # seed 1 failed
    assert random_["sum_r"]["delta"] == -5.0
    assert any("seed 1 failed: RuntimeError: boom" == n for n in random_["notes"])
    assert agm["sum_r"]["delta"] == 0.0 and agm["dirs"] == base["dirs"]
    assert b["sum_r"]["delta"] == -50.0 and b["sum_cap"]["mean"] is None
    assert table["failures"] == 1 and table["chance"]["sum_r"] == 3.0
    assert paths["md"].is_file() and "| Masking | random |" in paths["md"].read_text()


def test_run_ablation_rejects_duplicate_variants(small: Path) -> None:
    with pytest.raises(VariantError, match="twice"):
        run_ablation(small, [tasks_variant("B"), tasks_variant("B")], progress=False,
                     runner=lambda *a: None)


def test_cli_without_variants_fails_clearly(small: Path) -> None:
    from typer.testing import CliRunner

    from kaleido.cli import app

    result = CliRunner().invoke(app, ["ablate", "--base", str(small)])
    assert result.exit_code == 2 and "nothing to compare" in result.output
    result = CliRunner().invoke(app, ["ablate", "--base", str(small), "--tasks", "B+VII"])
    assert result.exit_code == 2 and "B+VII" in result.output


def test_variant_slug_is_a_folder_safe_name() -> None:
    assert Variant("tasks", "B+I~V").slug == "tasks-b-i-v"
    assert Variant("masker", "Random").slug == "masker-random"
    assert Variant("base", "my recipe/v2").slug == "base-my-recipe-v2"


@pytest.mark.slow
def test_cli_passes_nproc_per_node_to_every_run(small: Path, tmp_path: Path, monkeypatch) -> None:
    """The command line end to end, with the stage chain replaced by one that records its launch."""
    from typer.testing import CliRunner

    import kaleido.training.pipeline as pipeline
    from kaleido.cli import app

    seen: list[tuple[str, int, bool]] = []

    def fake_run_stages(recipe, *, launch, progress, echo, force=()):
        seen.append((recipe.name, launch.nproc_per_node, progress))
        out = pipeline.eval_dir(recipe)
        out.mkdir(parents=True, exist_ok=True)  # the launch does not shape results: same folder
        (out / "results.json").write_text(json.dumps({"sum_cls": {"ours": 100.0 + len(recipe.pretrain.tasks),
                                                                  "chance": 1.0}}))
        return {}

    monkeypatch.setattr(pipeline, "run_stages", fake_run_stages)
    runner = CliRunner()
    result = runner.invoke(app, ["ablate", "--base", str(small), "--tasks", "B", "--nproc-per-node", "3",
                                 "--no-progress", "--out", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    assert seen == [("small", 3, False), ("small-tasks-b", 3, False)]
    table = json.loads((tmp_path / "a" / "ablation.json").read_text())
    assert table["variants"][0]["sum_cls"]["delta"] == -5.0  # 2 tasks against the default 7

    seen.clear()
    result = runner.invoke(app, ["ablate", "--base", str(small), "--set", "launch.nproc_per_node=2",
                                 "--masker", "random", "--no-progress", "--out", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    assert [s[1] for s in seen] == [2, 2]
    # --masker random is Table 4's "Random masking" column; the base is not full.toml, so the
    # paper's full-model figures are not put beside it (nor its change computed against them)
    table = json.loads((tmp_path / "b" / "ablation.json").read_text())
    (random_row,) = table["variants"]
    assert (random_row["label"], random_row["paper"]["sum_r"]) == ("Random masking", 299.50)
    assert (table["base"]["label"], table["base"]["paper"]) == ("small", None)
    assert any("not full.toml" in n for n in table["base"]["notes"])
