"""`kaleido run`: stage keys, the torchrun command line, and the whole chain on a tiny recipe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kaleido.cli import app
from kaleido.features.prepare import store_dir
from kaleido.recipe import load_recipe
from kaleido.training.logs import read_log
from kaleido.training.pipeline import Launch, StageError, eval_dir, launch_args, pretrain_dir, run_dir

REPO = Path(__file__).resolve().parents[1]

@pytest.fixture
def tiny(tiny_recipe, tmp_path) -> Path:
    """tests/recipes/tiny.toml as it is: every stage, all seven tasks."""
    return tiny_recipe(tmp_path)


def test_stage_keys_follow_the_sections_that_shape_each_stage(tiny, tmp_path):
    from kaleido.aligners.align import align_dir

    path = tiny
    base = load_recipe(path)
    masker = load_recipe(path, ["masker.name=random"])
    evals = load_recipe(path, ["eval.queries=9"])
    assert store_dir(masker) == store_dir(base) and align_dir(masker) == align_dir(base)
    assert pretrain_dir(masker) != pretrain_dir(base) and eval_dir(masker) != eval_dir(base)
    assert pretrain_dir(evals) == pretrain_dir(base) and eval_dir(evals) != eval_dir(base)
    assert pretrain_dir(base).parent == run_dir(base) == tmp_path / "runs" / "tiny"


def test_the_pretrain_key_follows_the_model_and_the_task_settings(tiny):
    """A bigger model or another task weight trains another model: a new pre-training folder (and
    evaluation), on the same store and alignments."""
    from kaleido.aligners.align import align_dir

    base = load_recipe(tiny)
    for setting in ("model.num_layers=2", "model.hidden_size=64", "tasks.itm.weight=2.0",
                    "tasks.amlm.weight=0.5"):
        other = load_recipe(tiny, [setting])
        assert (store_dir(other), align_dir(other)) == (store_dir(base), align_dir(base)), setting
        assert pretrain_dir(other) != pretrain_dir(base) and eval_dir(other) != eval_dir(base), setting


def test_the_resolved_recipe_reloads_to_the_same_stage_keys(tiny, tmp_path):
    base = load_recipe(tiny, ["pretrain.lr=3e-4"])
    base.dump(tmp_path / "resolved.toml")
    again = load_recipe(tmp_path / "resolved.toml")
    assert pretrain_dir(again) == pretrain_dir(base) and eval_dir(again) == eval_dir(base)


def test_torchrun_command_line():
    single_node = launch_args(Path("r.toml"), Path("out"), Launch(nproc_per_node=2), progress=False)
    assert single_node[:5] == ["--nproc-per-node", "2", "--nnodes", "1", "--standalone"]
    # --from-run: a checkpoint of another recipe is refused with kaleido run's own hint (--force pretrain)
    assert single_node[-8:] == ["-m", "kaleido.training.main", "--recipe", "r.toml", "--out", "out",
                                "--from-run", "--no-progress"]
    two_nodes = Launch(4, nnodes=2, node_rank=1, rdzv_endpoint="h:29500")
    multi = launch_args(Path("r.toml"), Path("out"), two_nodes, progress=True)
    assert "--standalone" not in multi
    for flag, value in (("--node-rank", "1"), ("--rdzv-endpoint", "h:29500"), ("--rdzv-backend", "c10d")):
        assert multi[multi.index(flag) + 1] == value
    from torch.distributed.run import get_args_parser

    parsed = get_args_parser().parse_args(multi)  # exactly what torchrun accepts
    assert parsed.nproc_per_node == "4" and parsed.module
    assert parsed.training_script == "kaleido.training.main"
    with pytest.raises(StageError, match="rdzv-endpoint"):
        launch_args(Path("r.toml"), Path("out"), Launch(2, nnodes=2), progress=True)


def test_a_second_node_waits_for_node_0s_store_and_alignments_instead_of_writing_them(tiny, monkeypatch):
    """Two nodes share one output folder: only node 0 prepares and aligns (they would race over one
    store); node 1 polls until each is finished, then goes on to pre-training."""
    from kaleido.training import pipeline

    recipe = load_recipe(tiny, ['stages=["prepare", "align", "pretrain"]'])
    polls = {"prepare": 0, "align": 0}
    ran: list[str] = []

    def done(r, stage):
        if stage in polls:
            polls[stage] += 1
            return polls[stage] > 2  # node 0 finishes it while node 1 polls
        return False

    monkeypatch.setattr(pipeline, "stage_done", done)
    monkeypatch.setattr(pipeline, "_run_stage", lambda r, stage, *a, **k: ran.append(stage))
    monkeypatch.setattr(pipeline, "WAIT_POLL_S", 0.0)
    node1 = Launch(2, nnodes=2, node_rank=1, rdzv_endpoint="h:29500")
    lines: list[str] = []
    status = pipeline.run_stages(recipe, launch=node1, progress=False, echo=lines.append)
    assert status == {"prepare": "by node 0", "align": "by node 0", "pretrain": "done", "eval": "off"}
    assert ran == ["pretrain"] and polls == {"prepare": 3, "align": 3}
    assert sum("waiting for node 0" in line for line in lines) == 2
    with pytest.raises(StageError, match="--force prepare: node 0 redoes prepare and align"):
        pipeline.run_stages(recipe, force=("prepare",), launch=node1, progress=False, echo=lines.append)
    ran.clear()
    monkeypatch.setattr(pipeline, "stage_done", lambda r, stage: False)
    node0 = Launch(2, nnodes=2, node_rank=0, rdzv_endpoint="h:29500")
    with pytest.raises(StageError, match="prepare: finished without its output"):
        pipeline.run_stages(recipe, launch=node0, progress=False, echo=lines.append)
    assert ran == ["prepare"]  # node 0 runs it itself, never waits


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_recipe):
    root = tmp_path_factory.mktemp("run")
    recipe = tiny_recipe(root)
    result = CliRunner().invoke(app, ["run", str(recipe), "--no-progress"])
    assert result.exit_code == 0, (result.output, result.exception)
    return root, recipe, result


@pytest.mark.slow
def test_run_chains_every_stage_and_writes_its_outputs(finished_run):
    root, recipe_path, result = finished_run
    recipe = load_recipe(recipe_path)
    pre = pretrain_dir(recipe)
    assert (run_dir(recipe) / "recipe.toml").is_file() and (pre / "recipe.toml").is_file()
    entries = read_log(pre / "log.jsonl")
    assert [e["step"] for e in entries] == [2, 4, 6]
    tasks = {k.split("/", 1)[1] for k in entries[0] if k.startswith("loss/")}
    assert tasks == {"amlm", "itm", "rr", "jps", "cp", "g2cm", "b2cm"}
    assert (pre / "loss.png").is_file() and (pre / "model" / "objective.json").is_file()
    assert json.loads((pre / "done.json").read_text())["steps"] == 6
    results = json.loads((eval_dir(recipe) / "results.json").read_text())
    # the evaluation stage wrote the figures of tiny.toml's [eval] tasks (itr, tir, cr)
    assert {"retrieval", "cr"} <= set(results)
    scored = results["retrieval"]["scorers"]["pre-trained ITM"]
    assert results["retrieval"]["queries"] == 8 and set(scored["itr"]) == set(scored["tir"])
    assert all(0.0 <= v <= 100.0 for v in [*scored["itr"].values(), *scored["tir"].values()])
    assert 0.0 <= results["cr"]["acc"] <= 100.0
    for stage in ("prepare", "align", "pretrain", "eval"):
        assert f"{stage} done" in result.output.replace("\n", " ")


@pytest.mark.slow
def test_run_again_reuses_and_force_redoes_that_stage_and_the_later_ones(finished_run):
    root, recipe_path, _ = finished_run
    recipe = load_recipe(recipe_path)
    model_file = pretrain_dir(recipe) / "model" / "model.safetensors"
    before = model_file.stat().st_mtime_ns
    again = CliRunner().invoke(app, ["run", str(recipe_path), "--no-progress"])
    assert again.exit_code == 0, again.output
    assert "finished before, reused" in again.output and model_file.stat().st_mtime_ns == before
    results = eval_dir(recipe) / "results.json"
    eval_before = results.stat().st_mtime_ns
    forced = CliRunner().invoke(app, ["run", str(recipe_path), "--no-progress", "--force", "eval"])
    assert forced.exit_code == 0, forced.output
    assert results.stat().st_mtime_ns != eval_before and model_file.stat().st_mtime_ns == before
    store = store_dir(recipe) / "train"
    store_before, eval_before = store.stat().st_mtime_ns, results.stat().st_mtime_ns
    forced = CliRunner().invoke(app, ["run", str(recipe_path), "--no-progress", "--force", "pretrain"])
    assert forced.exit_code == 0, forced.output
    # the model is new, so the evaluation made from the old one is redone too; the store is kept
    assert model_file.stat().st_mtime_ns != before and results.stat().st_mtime_ns != eval_before
    assert store.stat().st_mtime_ns == store_before
    bad = CliRunner().invoke(app, ["run", str(recipe_path), "--force", "train"])
    assert bad.exit_code == 1 and "expected one of: prepare, align, pretrain, eval" in bad.output


@pytest.mark.slow
def test_torchrun_by_hand_trains_the_real_objective_on_two_gloo_ranks(finished_run, tmp_path):
    """Every random choice of an example is seeded by its index and the losses are normalised by
    the global counts, so without dropout two ranks of half the batch each (gradients averaged)
    train what one process does with the whole batch: the same losses and weights."""
    import torch
    from safetensors.torch import load_file

    from kaleido.training.main import main as train_main

    root, recipe_path, _ = finished_run
    recipe = load_recipe(recipe_path)
    args = ["--recipe", str(pretrain_dir(recipe) / "recipe.toml"), "--set", "model.dropout=0.0",
            "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "kaleido.training.main", *args, "--out", str(tmp_path / "ddp")]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert train_main([*args, "--out", str(tmp_path / "one")]) == 0  # the one-process reference, here
    ddp = read_log(tmp_path / "ddp" / "log.jsonl")
    one = read_log(tmp_path / "one" / "log.jsonl")
    assert [e["step"] for e in ddp] == [e["step"] for e in one] == [2, 4, 6]
    for a, b in zip(ddp, one, strict=True):
        assert set(a) == set(b)
        for key in (k for k in b if k == "loss" or k.startswith("loss/")):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), (a["step"], key)
    files = sorted(p.name for p in (tmp_path / "one" / "model").glob("*.safetensors"))
    assert "model.safetensors" in files and "heads.safetensors" in files
    for name in files:
        wa, wb = (load_file(tmp_path / run / "model" / name) for run in ("ddp", "one"))
        assert wa.keys() == wb.keys(), name
        for key in wb:
            torch.testing.assert_close(wa[key], wb[key], rtol=1e-4, atol=1e-5,
                                       msg=lambda m, k=f"{name}: {key}": f"{k}: {m}")
    assert (tmp_path / "ddp" / "model" / "objective.json").is_file()


def test_plot_command_draws_a_log(tmp_path):
    log = tmp_path / "pretrain-x" / "log.jsonl"
    log.parent.mkdir()
    lines = [{"step": s, "loss": 3.0 / s, "loss/amlm": 2.0 / s, "loss/itm": 1.0 / s} for s in range(1, 6)]
    log.write_text("".join(json.dumps(e) + "\n" for e in lines), encoding="utf-8")
    result = CliRunner().invoke(app, ["plot", str(tmp_path), "--out", str(tmp_path / "curves.png")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "curves.png").stat().st_size > 5000
    # no suffix: a PNG all the same (the temporary file's name must not decide the format)
    result = CliRunner().invoke(app, ["plot", str(tmp_path), "--out", str(tmp_path / "curves")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "curves").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    missing = CliRunner().invoke(app, ["plot", str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "no log.jsonl" in missing.output
