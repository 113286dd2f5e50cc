"""Recipe loading: validation messages, `extends`, `--set` overrides, resolved output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kaleido.recipe import RecipeError, load_recipe

BASE = """
name = "base"
seed = 3
[data]
name = "synthetic"
products = 40
[masker]
name = "agm"
[pretrain]
tasks = ["amlm", "itm"]
batch_size = 8
"""


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _problems(exc: RecipeError) -> dict[str, str]:
    return {p.path: str(p) for p in exc.problems}


def test_valid_recipe_builds_components(tmp_path):
    recipe = load_recipe(_write(tmp_path / "base.toml", BASE))
    assert recipe.seed == 3 and recipe.pretrain.batch_size == 8
    assert recipe.masker.name == "agm"
    assert type(recipe.build("masker")).__name__.lower().startswith("agm")
    assert recipe.params("data")["products"] == 40


def test_unknown_component_names_file_path_and_choices(tmp_path):
    path = _write(tmp_path / "r.toml", BASE.replace('name = "agm"', 'name = "agmx"'))
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    message = _problems(info.value)["masker.name"]
    assert str(path) in message and "'agmx'" in message
    assert "agm" in message and "random" in message


def test_wrong_type_and_unknown_key_and_bad_task_all_reported_at_once(tmp_path):
    text = (
        BASE.replace("batch_size = 8", 'batch_size = "eight"')
        .replace('name = "agm"', 'name = "agm"\nbogus_key = 1')
        .replace('["amlm", "itm"]', '["amlm", "itmx"]')
        .replace("seed = 3", "seed = 3\ncolour = 'red'")
    )
    path = _write(tmp_path / "r.toml", text)
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    problems = _problems(info.value)
    assert "'eight'" in problems["pretrain.batch_size"] and "integer" in problems["pretrain.batch_size"]
    assert "unknown key" in problems["colour"] or "no such key" in problems["colour"]
    assert "masker.bogus_key" in problems and "allowed keys" in problems["masker.bogus_key"]
    assert "itmx" in problems["pretrain.tasks[1]"] and "amlm" in problems["pretrain.tasks[1]"]
    assert all(str(path) in m for m in problems.values())


def test_missing_file_and_missing_extends(tmp_path):
    with pytest.raises(RecipeError, match="nope.toml"):
        load_recipe(tmp_path / "nope.toml")
    path = _write(tmp_path / "child.toml", 'extends = "gone.toml"\n')
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert "gone.toml" in str(info.value) and str(path) in str(info.value)


def test_unparsable_toml_is_one_clear_error(tmp_path):
    path = _write(tmp_path / "bad.toml", "[data\nname=")
    with pytest.raises(RecipeError, match="valid TOML"):
        load_recipe(path)


def test_extends_states_only_the_difference_and_errors_name_the_right_file(tmp_path):
    base = _write(tmp_path / "base.toml", BASE)
    child = _write(
        tmp_path / "child.toml", 'extends = "base.toml"\nname = "child"\n[masker]\nname = "random"\n'
    )
    recipe = load_recipe(child)
    assert recipe.name == "child" and recipe.masker.name == "random"
    assert recipe.seed == 3 and recipe.params("data")["products"] == 40  # inherited
    # an error in the inherited part names the base file, one in the child names the child
    _write(base, BASE.replace("seed = 3", 'seed = "x"'))
    _write(child, 'extends = "base.toml"\n[pretrain]\nlr = -1\n')
    with pytest.raises(RecipeError) as info:
        load_recipe(child)
    problems = _problems(info.value)
    assert str(base.resolve()) in problems["seed"]
    assert str(child.resolve()) in problems["pretrain.lr"]


def test_switching_component_keeps_the_parameters_it_shares(tmp_path):
    """Sections merge key by key, as confection's: a base's setting that the new component also
    takes still applies (it used to be dropped with every other key of the section)."""
    _write(tmp_path / "base.toml", BASE.replace('name = "agm"', 'name = "agm"\nmax_predictions = 7'))
    child = _write(tmp_path / "child.toml", 'extends = "base.toml"\n[masker]\nname = "random"\n')
    recipe = load_recipe(child)
    assert recipe.masker.name == "random"
    assert recipe.build("masker").max_predictions == 7 and recipe.notes() == []


QUICK = Path(__file__).resolve().parents[1] / "recipes" / "quickstart.toml"


def test_a_component_switch_by_set_or_extends_keeps_shared_settings_whatever_the_order(tmp_path):
    """`--set backbone.image_size=64 --set backbone.name=resnet50` kept only the name (mode,
    batch_size and image_size gone) and the swapped order kept image_size; a recipe extending the
    quickstart with only `[backbone] name = "resnet50"` lost them too."""
    quick = load_recipe(QUICK).data["backbone"]
    want = {**quick, "name": "resnet50", "image_size": 64}
    for order in (["backbone.image_size=64", "backbone.name=\"resnet50\""],
                  ["backbone.name=\"resnet50\"", "backbone.image_size=64"]):
        assert load_recipe(QUICK, order).data["backbone"] == want, order
    child = _write(tmp_path / "child.toml", f'extends = "{QUICK}"\n[backbone]\nname = "resnet50"\n')
    assert load_recipe(child).data["backbone"] == {**quick, "name": "resnet50"}
    assert load_recipe(child, ["backbone.image_size=64"]).data["backbone"] == want


def test_a_parameter_the_new_component_lacks_is_left_out_with_a_note_or_is_an_error(tmp_path):
    """A key written for the component a section named before (in a base, or in the files under
    `--set`) is left out, with a note naming it; a key the new component lacks given beside it, or
    one no component of the section takes (a typo), stays an error."""
    base = _write(tmp_path / "base.toml", BASE + '[sod]\nname = "background"\nmargin = 0.1\n')
    child = _write(tmp_path / "child.toml", 'extends = "base.toml"\n[sod]\nname = "none"\n')
    recipe = load_recipe(child)
    assert recipe.data["sod"] == {"name": "none"}
    assert recipe.notes() == [f"{base.resolve()}: sod.margin = 0.1: a parameter of sod 'background', not of "
                              f"'none' (the sod.name of {child.resolve()}): left out"]
    for order in (["sod.margin=0.2", 'sod.name="none"'], ['sod.name="none"', "sod.margin=0.2"]):
        notes = load_recipe(base, order).notes()
        assert notes == ["--set: sod.margin = 0.2: a parameter of sod 'background', not of 'none' (the "
                         "sod.name of --set): left out"], order
    _write(child, 'extends = "base.toml"\n[sod]\nname = "none"\nmargin = 0.3\n')  # beside the new name
    with pytest.raises(RecipeError) as info:
        load_recipe(child)
    assert "allowed keys: (none)" in _problems(info.value)["sod.margin"]
    with pytest.raises(RecipeError) as info:  # a typo is one whatever the order
        load_recipe(QUICK, ["backbone.image_sise=64", 'backbone.name="resnet50"'])
    assert list(_problems(info.value)) == ["backbone.image_sise"]


def test_set_into_a_section_the_recipe_leaves_at_its_default_component(tmp_path):
    """`--set model.max_text_len=32` on a recipe without a [model] table asked for model.name."""
    path = _write(tmp_path / "base.toml", BASE)
    recipe = load_recipe(path, ["model.max_text_len=32"])
    assert recipe.model.model.name == "kaleido" and recipe.params("model")["max_text_len"] == 32


def test_set_overrides_any_field_and_are_named_in_errors(tmp_path):
    path = _write(tmp_path / "base.toml", BASE)
    recipe = load_recipe(path, ["masker.name=random", "pretrain.lr=0.001", "pretrain.tasks=['amlm']"])
    assert recipe.masker.name == "random" and recipe.pretrain.lr == 0.001
    assert recipe.pretrain.tasks == ["amlm"]
    with pytest.raises(RecipeError) as info:
        load_recipe(path, ["pretrain.batch_size=zero"])
    assert "--set" in _problems(info.value)["pretrain.batch_size"]
    with pytest.raises(RecipeError) as info:  # a dotted path through a single value: a problem, no traceback
        load_recipe(path, ["seed.x=1"])
    assert "seed is one value" in _problems(info.value)["seed.x"]


def test_resolved_recipe_round_trips(tmp_path):
    recipe = load_recipe(_write(tmp_path / "base.toml", BASE), ["seed=9"])
    out = tmp_path / "out" / "recipe.toml"
    recipe.dump(out)
    again = load_recipe(out)
    assert again.model == recipe.model
    assert again.section_hash("data", "masker") == recipe.section_hash("data", "masker")
    assert recipe.section_hash("data") != load_recipe(out, ["data.products=41"]).section_hash("data")


def test_task_parameters_and_weights(tmp_path):
    path = _write(tmp_path / "r.toml", BASE + "\n[tasks.itm]\nweight = 2.0\n")
    weight, _params = load_recipe(path).task_params("itm")
    assert weight == 2.0
    with pytest.raises(RecipeError) as info:
        load_recipe(_write(tmp_path / "r2.toml", BASE + "\n[tasks.itm]\nweight = -1\nfoo = 2\n"))
    problems = _problems(info.value)
    assert "tasks.itm.weight" in problems and "tasks.itm.foo" in problems


def test_a_task_table_for_a_task_not_run_is_noted(tmp_path):
    path = _write(tmp_path / "r.toml", BASE + "\n[tasks.itm]\nweight = 2.0\n")
    assert load_recipe(path).notes() == []
    recipe = load_recipe(path, ['pretrain.tasks=["amlm"]'])
    assert recipe.notes() == [f"{path.resolve()}: tasks.itm: set, but 'itm' is not in pretrain.tasks (amlm): "
                              "not used"]


def test_eval_learning_rates_resolve_per_task_then_globally() -> None:
    from kaleido.recipe.schema import EvalSettings

    plain = EvalSettings()
    assert plain.encoder_lr("itm") == plain.finetune_lr and plain.fresh_head_lr("cls") is None
    s = EvalSettings(finetune_lr=1e-4, head_lr=1e-2, task_lr={"itm": 3e-4, "cls": 1e-3},
                     task_head_lr={"itm": 1e-3})
    assert (s.encoder_lr("itm"), s.encoder_lr("cls"), s.encoder_lr("fc")) == (3e-4, 1e-3, 1e-4)
    assert (s.fresh_head_lr("itm"), s.fresh_head_lr("cls")) == (1e-3, 1e-2)


def test_how_a_stage_runs_does_not_change_its_key():
    """Restarting a killed run with more loader workers, another logging or checkpoint interval,
    more aligner threads or the packed encoder must resume it, not start a new folder; a setting
    that changes the result must."""
    from kaleido.aligners.align import align_dir
    from kaleido.features.prepare import store_dir
    from kaleido.training.pipeline import eval_dir, pretrain_dir

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "quickstart.toml"
    base = load_recipe(recipe)
    for runtime in ("pretrain.num_workers=3", "pretrain.keep_last=5", "pretrain.log_every=7",
                    "pretrain.checkpoint_every=3", "pretrain.compile=true", "aligner.threads=3",
                    "aligner.device=\"cpu\"", "aligner.checkpoint_every=7", "model.packed=true",
                    "prepare.num_workers=2", "backbone.batch_size=8"):
        other = load_recipe(recipe, [runtime])
        assert (pretrain_dir(other), store_dir(other), align_dir(other), eval_dir(other)) == (
            pretrain_dir(base), store_dir(base), align_dir(base), eval_dir(base)), runtime
    # a result-changing setting moves its own stage's folder and every later one, not the earlier ones
    for setting, moved in (("backbone.image_size=96", 0), ('sod.name="none"', 0), ('patcher.name="fixed"', 0),
                           ("aligner.epochs=3", 1), ("pretrain.lr=0.5", 2), ("eval.queries=5", 3)):
        other = load_recipe(recipe, [setting])
        folders = [(f(other), f(base)) for f in (store_dir, align_dir, pretrain_dir, eval_dir)]
        same = [a == b for a, b in folders]
        assert same == [True] * moved + [False] * (4 - moved), setting


def test_roi_settings_do_not_key_a_crop_store():
    """``roi_separate`` / ``roi_maps`` / ``roi_output`` change what ``roi`` computes, nothing of
    ``crop`` (each patch its own pass): a crop store must not be prepared again over them."""
    from kaleido.features.prepare import store_dir

    crop = ['backbone.mode="crop"']
    base = store_dir(load_recipe(QUICK, crop))
    for roi_only in ("backbone.roi_separate=[]", 'backbone.roi_maps="shared"', "backbone.roi_output=3"):
        assert store_dir(load_recipe(QUICK, [*crop, roi_only])) == base, roi_only
        assert store_dir(load_recipe(QUICK, [roi_only])) != store_dir(load_recipe(QUICK)), roi_only
    assert store_dir(load_recipe(QUICK, [*crop, "backbone.image_size=96"])) != base


def test_a_recipe_saved_with_a_utf8_byte_order_mark_loads(tmp_path):
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + BASE.encode("utf-8"))
    assert load_recipe(path).seed == 3


@pytest.mark.parametrize("name", ["../../escape", "a/b", "..", ".", "", "a\\b"])
def test_a_recipe_name_that_would_leave_output_dir_is_refused(tmp_path, name):
    path = _write(tmp_path / "base.toml", BASE)
    assert load_recipe(path, ['name="v1..2"']).name == "v1..2"  # dots inside a name are fine
    with pytest.raises(RecipeError) as info:
        load_recipe(path, [f"name={json.dumps(name)}"])
    message = _problems(info.value)["name"]
    assert message.startswith("--set: name: got") and "folder name" in message


def test_an_unknown_section_given_by_set_is_blamed_on_set_not_the_file(tmp_path):
    path = _write(tmp_path / "base.toml", BASE + "\n[bogus]\nx = 1\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(path, ["foo.bar=1", "pretrain.foo=2"])
    problems = _problems(info.value)
    assert problems["foo"].startswith("--set: foo: no such key; allowed keys: name, seed")
    assert problems["bogus"].startswith(f"{path.resolve()}: bogus:")  # the file's own is still the file's
    assert "allowed keys: name, seed" in problems["foo"] and "pretrain" in problems["foo"]
    assert problems["pretrain.foo"].startswith("--set: pretrain.foo:")
    assert "allowed keys: tasks, batch_size, grad_accum" in problems["pretrain.foo"]


def test_an_unknown_key_or_name_suggests_the_close_one(tmp_path):
    """`--set pretrain.epoch=3` read "got 3, expected no such key; allowed keys: ..." (the 3 was
    not the problem) and left `epochs` to be found in eighteen keys; a mistyped name likewise."""
    path = _write(tmp_path / "r.toml", BASE + "weight_decey = 0.1\n[sod]\nname = \"backgrund\"\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(path, ["pretrain.epoch=3", 'masker.name="agn"', 'pretrain.tasks=["amlm", "itn"]',
                           "pretrian.lr=1", "backbone.zzzzzz=1"])
    problems = _problems(info.value)
    file = path.resolve()
    assert problems["pretrain.epoch"].startswith(
        "--set: pretrain.epoch: no such key (did you mean 'epochs'?); allowed keys: tasks, batch_size, ")
    assert problems["pretrain.weight_decey"].startswith(
        f"{file}: pretrain.weight_decey: no such key (did you mean 'weight_decay'?); allowed keys: tasks, ")
    assert problems["pretrian"].startswith("--set: pretrian: no such key (did you mean 'pretrain'?); "
                                           "allowed keys: name, seed, ")
    assert problems["backbone.zzzzzz"].startswith("--set: backbone.zzzzzz: no such key; allowed keys: ")
    assert problems["masker.name"].startswith("--set: masker.name: got 'agn', expected one of: agm, ")
    assert problems["masker.name"].endswith(" (did you mean 'agm'?)")
    assert problems["pretrain.tasks[1]"].endswith(", rr (did you mean 'itm'?)")
    assert problems["sod.name"].startswith(f"{file}: sod.name: got 'backgrund', expected one of: ")
    assert problems["sod.name"].endswith(" (did you mean 'background'?)")
    assert all("\n" not in m for m in problems.values())


def test_kaleido_run_prints_the_notes_check_prints(tmp_path, monkeypatch):
    """A parameter left out by a component switch is said by `run` too, not only by `check`."""
    from typer.testing import CliRunner

    from kaleido.cli import app
    from kaleido.training import pipeline

    monkeypatch.setattr(pipeline, "run_stages", lambda recipe, **kw: {"prepare": "done"})
    base = _write(tmp_path / "base.toml", BASE + '[sod]\nname = "background"\nmargin = 0.1\n')
    result = CliRunner().invoke(app, ["run", str(base), "--set", 'sod.name="none"'])
    assert result.exit_code == 0, result.output
    assert (f"note: {base.resolve()}: sod.margin = 0.1: a parameter of sod 'background', not of 'none' "
            "(the sod.name of --set): left out") in result.output.replace("\n", "")


def test_a_components_annotated_constraints_are_the_recipes_limits(tmp_path) -> None:
    """`Annotated[float, Field(gt=0, le=1)]` on a parameter was reduced to `float` (the hints were
    read without their extras), so a plugin's bounds went unchecked and each component checked by hand."""
    from typing import Annotated

    from pydantic import Field, ValidationError

    from kaleido.recipe.params import params_model

    def masker(rate: Annotated[float, Field(gt=0, le=1)] = 0.15, span: int = 3) -> None:
        """A plugin's factory."""

    schema = params_model(masker)
    assert schema(rate=0.5).rate == 0.5 and schema().rate == 0.15
    with pytest.raises(ValidationError, match="less than or equal to 1"):
        schema(rate=1.5)
    with pytest.raises(ValidationError, match="greater than 0"):
        schema(rate=0)
