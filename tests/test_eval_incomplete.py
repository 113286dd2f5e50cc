"""An evaluation that skipped a task it was asked for (captioning without Java) says so in
results.json (``incomplete``), `kaleido run` evaluates it again instead of reusing it, and the
ablation table says why its figure is missing. Java is hidden by patching the check, not removed."""

from __future__ import annotations

import json

import pytest
from test_eval_run import _recipe, pretrained  # noqa: F401 - the tiny stores and objective, a fixture

from kaleido.evaluation import caption_metrics

# retrieval without fine-tuning and a half-epoch captioner on a few rows: a second or two
SETTINGS = dict(tasks=["itr", "tir", "fc"], queries=4, negatives=3, batch_size=32, finetune_itm=False,
                caption_epochs=0.5, caption_tokens=4, caption_samples=4, max_train_rows=16)


def _no_java() -> str:
    raise caption_metrics.JavaMissing("captioning metrics need Java (PTB tokenizer, METEOR): install a JRE")


def _fake_metrics(references, systems, progress=None):
    """What caption_scores_many returns once Java is there (without three JVM starts)."""
    return {name: {"BLEU-4": 1.0, "METEOR": 2.0, "ROUGE-L": 3.0, "CIDEr": 4.0} for name in systems}


def test_an_evaluation_without_java_records_captioning_as_incomplete(pretrained, monkeypatch):  # noqa: F811
    from kaleido.evaluation.run import evaluate

    monkeypatch.setattr(caption_metrics, "require_java", _no_java)
    out = pretrained / "out" / "no-java"
    res = evaluate(_recipe(pretrained, **SETTINGS), pretrained / "pretrain", out, progress=False,
                   stores=pretrained / "stores")
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["incomplete"] == res["incomplete"] == [
        {"task": "fc", "reason": "captioning metrics need Java (PTB tokenizer, METEOR): install a JRE"}]
    assert "fc" not in on_disk and "retrieval" in on_disk  # the other tasks are still measured
    assert "fc not measured: captioning metrics need Java" in (out / "results.md").read_text()


def test_run_evaluates_an_incomplete_evaluation_again_until_it_is_complete(
        pretrained, tiny_recipe, tmp_path, monkeypatch):  # noqa: F811
    """The earlier stages count as finished; the eval stage runs the real ``evaluate`` on the tiny
    stores into the recipe's eval folder. Without Java: ``incomplete``, and the next run evaluates
    again, saying why; with Java: done, then reused."""
    from kaleido.evaluation.run import evaluate
    from kaleido.recipe import load_recipe
    from kaleido.training import pipeline

    recipe = load_recipe(tiny_recipe(tmp_path))
    evals: list[str] = []

    def run_stage(r, stage, launch, progress, echo=print):
        assert stage == "eval"
        evals.append(stage)
        evaluate(_recipe(pretrained, **SETTINGS), pretrained / "pretrain", pipeline.eval_dir(r),
                 progress=False, stores=pretrained / "stores")

    real_done = pipeline.stage_done
    monkeypatch.setattr(pipeline, "stage_done", lambda r, s: s != "eval" or real_done(r, s))
    monkeypatch.setattr(pipeline, "_run_stage", run_stage)
    monkeypatch.setattr(caption_metrics, "require_java", _no_java)

    lines: list[str] = []
    status = pipeline.run_stages(recipe, progress=False, echo=lines.append)
    assert status["eval"] == "incomplete" and len(evals) == 1
    assert any(line.startswith("eval: incomplete, skipped fc (captioning metrics need Java")
               for line in lines)
    assert pipeline.eval_incomplete(recipe)[0]["task"] == "fc" and not real_done(recipe, "eval")

    lines.clear()
    status = pipeline.run_stages(recipe, progress=False, echo=lines.append)  # still no Java
    assert status["eval"] == "incomplete" and len(evals) == 2
    assert "eval: the evaluation before skipped fc (captioning metrics need Java (PTB tokenizer, " \
           "METEOR): install a JRE); evaluating again" in lines

    monkeypatch.setattr(caption_metrics, "require_java", lambda: "/usr/bin/java")
    monkeypatch.setattr(caption_metrics, "caption_scores_many", _fake_metrics)
    status = pipeline.run_stages(recipe, progress=False, echo=lines.append)  # Java installed
    assert status["eval"] == "done" and len(evals) == 3
    results = json.loads((pipeline.eval_dir(recipe) / "results.json").read_text())
    assert results["incomplete"] == [] and results["fc"]["ours"]["sum_cap"] == 10.0
    status = pipeline.run_stages(recipe, progress=False, echo=lines.append)
    assert status["eval"] == "reused" and len(evals) == 3


def test_an_unreadable_results_file_is_one_clear_error(tiny_recipe, tmp_path):
    from kaleido.recipe import load_recipe
    from kaleido.training.pipeline import StageError, eval_dir, stage_done

    recipe = load_recipe(tiny_recipe(tmp_path))
    eval_dir(recipe).mkdir(parents=True)
    (eval_dir(recipe) / "results.json").write_text('{"info": ')
    with pytest.raises(StageError, match="results.json: not a readable results file .*--force eval"):
        stage_done(recipe, "eval")


def test_the_ablation_table_says_why_a_figure_is_missing():
    from kaleido.ablation.table import Row, build_table, scores, to_markdown

    complete = {"retrieval": {"scorers": {"pre-trained ITM": {"sum_r": 30.0}}}, "sum_cls": {"ours": 5.0},
                "fc": {"ours": {"sum_cap": 9.0}}, "incomplete": []}
    skipped = {"retrieval": {"scorers": {"pre-trained ITM": {"sum_r": 31.0}}}, "sum_cls": {"ours": 6.0},
               "incomplete": [{"task": "fc", "reason": "captioning metrics need Java"}]}
    assert "missing" not in scores(complete)
    assert scores(skipped) == {"sum_r": 31.0, "sum_cls": 6.0, "sum_cap": None,
                               "missing": {"sum_cap": "fc not measured: captioning metrics need Java"}}
    base = Row("base", "base", [0, 1], [scores(complete), scores(skipped)])
    table = build_table(base, [])
    assert table["base"]["sum_cap"]["mean"] == 9.0 and table["base"]["sum_r"]["mean"] == 30.5
    note = "seed 1: SumCAP missing, fc not measured: captioning metrics need Java"
    assert table["base"]["notes"] == [note] and f"- base: {note}" in to_markdown(table)
