"""bench/run_all.py: finds every benchmark, judges targets on the ratio, renders failures visibly."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import run_all  # noqa: E402


def test_row_ratio_and_targets_in_both_directions():
    up = run_all.row("load", 60.0, "step", 10.0, target=">= 5x")
    assert up["ratio"] == pytest.approx(6.0) and up["met"] is True
    assert run_all.row("load", 40.0, "step", 10.0, target=">= 5x")["met"] is False
    assert run_all.row("rss", 1.05, "rss small", 1.0, target="<= 1.1x")["met"] is True
    assert run_all.row("rss", 1.3, "rss small", 1.0, target="<= 1.1x")["met"] is False
    assert run_all.row("t", 1.0, "b", 2.0)["met"] is None


def test_discovers_every_benchmark_but_the_gpu_script_and_orders_quickstart_before_ddp():
    names = run_all.discover()
    on_disk = {p.stem for p in BENCH.glob("bench_*.py")}
    assert on_disk <= set(names) and "gpu_train" not in names and "run_all" not in names
    assert "align_quality" not in names  # a 20-minute quality study, reported in docs/ALIGNMENT.md
    if {"bench_quickstart", "bench_ddp"} <= set(names):
        assert names.index("bench_quickstart") < names.index("bench_ddp")
    assert run_all.has_run("bench_loading") and not run_all.has_run("synth_speed")


def test_ddp_reuses_the_quickstart_store_and_failures_show_in_the_document(monkeypatch, tmp_path):
    import bench_ddp
    import bench_quickstart

    monkeypatch.setenv(run_all.WORKDIR_ENV, str(tmp_path))
    args = run_all._script_args("bench_ddp", quick=True)
    assert f"output_dir={tmp_path / 'quickstart'}" in args and "data.products=12" in args
    assert args[args.index("--steps") + 1] == "4" and "pretrain.max_steps=2" in bench_quickstart.QUICK
    # the DDP benchmark's own schedule wins over the quickstart's reduced one it reuses
    reused = ["pretrain.max_steps=4", "pretrain.log_every=9"]
    cmd = bench_ddp.command(Path("r.toml"), 2, 7, reused, tmp_path, log_every=2)
    sets = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--set"]
    assert [s for s in sets if s.startswith("pretrain.max_steps")][-1] == "pretrain.max_steps=7"
    assert [s for s in sets if s.startswith("pretrain.log_every")][-1] == "pretrain.log_every=2"
    assert cmd[cmd.index("--nproc-per-node") + 1] == "2"
    failed = run_all.Section(title="X", command="bench/x.py", error="timed out after 5 s")
    ok = run_all.Section(title="Y", command="bench/y.py",
                         rows=[run_all.row("a", 10.0, "b", 1.0, target=">= 5x")])
    doc = run_all.document([failed, ok], "python bench/run_all.py", 0.0, (1.0, 1.0))
    assert "**Failed in this run:** timed out after 5 s" in doc and "| 10.00x | >= 5x | yes |" in doc
    assert "targets met in the tables run_all builds: 1 of 1" in doc and "failed: 1 of 2" in doc


def test_owners_hand_written_notes_survive_every_rewrite():
    hand = "# Performance\n\n## Step\n\nowner's analysis\n"
    first = run_all.assemble("# Performance\n\ngenerated 1\n", hand)
    assert first.index("generated 1") < first.index(run_all.MARKER) < first.index("owner's analysis")
    assert first.count("# Performance") == 1
    second = run_all.assemble("# Performance\n\ngenerated 2\n", first.replace("analysis", "analysis, edited"))
    assert "generated 1" not in second and "generated 2" in second
    assert "owner's analysis, edited" in second and second.count(run_all.KEPT_TITLE) == 1


def test_quick_quickstart_shows_the_last_full_figure_labelled_a_full_run_records_it(monkeypatch, tmp_path):
    import bench_quickstart as bq

    monkeypatch.setattr(bq, "FULL_RECORD", tmp_path / "full.json")
    stdout = "prepare: running -> x\nprepare: finished in 31.5 s\nalign: finished in 9.0 s\n"
    alone = bq.section(True, 5.0, 60.0, stdout, bq.last_full())  # nothing recorded yet
    assert [r["target"] for r in alone.rows] == [None] and "none is recorded" in alone.notes[-1]
    assert alone.rows[0]["ratio"] == pytest.approx(12.0) and "prepare 32 s, align 9 s" in alone.notes[0]
    recall = {"R@1": 15.0, "R@5": 30.0, "R@10": 45.0}
    chance = {"R@1": 1.0, "R@5": 5.0, "R@10": 9.9}
    results = {"retrieval": {"chance": {"itr": chance, "tir": chance},
                             "scorers": {"fine-tuned ITM": {"itr": recall, "tir": {**recall, "R@10": 40.0}}}},
               "cr": {"acc": 99.5, "macro_f1": 99.4}, "fc": {"ours": {"sum_cap": 24.8},
                                                             "baseline": {"sum_cap": 69.1}}}
    bq.record_full(347.0, stdout, load=2.0, results=results)  # what a run without --quick leaves behind
    record = bq.last_full()
    assert record["stages"] == {"prepare": 31.5, "align": 9.0}
    assert record["results"] == {
        "fine-tuned ITM ITR R@1 / R@5 / R@10": [15.0, 30.0, 45.0],
        "fine-tuned ITM TIR R@1 / R@5 / R@10": [15.0, 30.0, 40.0],
        "chance ITR R@1 / R@5 / R@10": [1.0, 5.0, 9.9], "chance TIR R@1 / R@5 / R@10": [1.0, 5.0, 9.9],
        "cr accuracy / macro-F1": [99.5, 99.4], "SumCAP ours / constant caption": [24.8, 69.1]}
    assert record["recipe_sha"] == bq.recipe_sha() and record["commit"]
    quick = bq.section(True, 5.0, 60.0, stdout, bq.last_full())
    budget = quick.rows[1]
    assert "recorded full run" in budget["what"] and "not re-run by --quick" in budget["what"]
    assert "stale" not in budget["what"]
    # an old figure is shown against its target but not counted as a target this run met
    assert budget["value"] == 347.0 and budget["target"] == "<= 1x" and budget["met"] is None
    other = tmp_path / "quickstart.toml"
    shipped = bq.RECIPE.read_text(encoding="utf-8")
    other.write_text("# a comment changes no setting\n" + shipped, encoding="utf-8")
    monkeypatch.setattr(bq, "RECIPE", other)
    assert "stale" not in bq.section(True, 5.0, 60.0, stdout, bq.last_full()).rows[1]["what"]
    assert "\nseed = 0\n" in shipped
    other.write_text(shipped.replace("\nseed = 0\n", "\nseed = 1\n"), encoding="utf-8")
    stale = bq.section(True, 5.0, 60.0, stdout, bq.last_full()).rows[1]
    assert "made with another recipe: stale" in stale["what"]
    full = bq.section(False, 5.0, 700.0, stdout, None)
    assert full.rows[1]["value"] == 700.0 and full.rows[1]["met"] is False
    assert "recorded full run" not in run_all.document([full], "c", 0.0, (1.0, 1.0))


def test_align_quality_sizes_the_data_in_their_own_folders_and_tabulates_the_ratio(tmp_path):
    import align_quality

    from kaleido.recipe.load import load_recipe

    recipe = BENCH.parent / "recipes" / "quickstart.toml"
    small, big = (load_recipe(recipe, align_quality.overrides(tmp_path, n, ["aligner.epochs=3"]))
                  for n in (150, 600))
    assert small.params("data")["products"] == 150 and big.params("data")["products"] == 600
    assert small.params("data")["dir"] != big.params("data")["dir"] and small.output_dir != big.output_dir
    assert big.params("aligner")["epochs"] == 3
    row = {"products": 600, "train_rows": 1232, "seed": 1, "steps": 780, "final_ce": 0.143, "items": 2601,
           "precision": 0.584, "random": 0.270, "ratio": 2.16, "precision_centre": 0.423,
           "random_centre": 0.137, "ratio_centre": 3.1, "align_s": 201.4}
    lines = align_quality.table([row]).splitlines()
    assert len(lines) == 3 and lines[1].count("---") == lines[0].count("|") - 1
    assert "| 600 | 1232 | 1 | 780 |" in lines[2] and "0.584 / 0.270 | 2.16x" in lines[2]
