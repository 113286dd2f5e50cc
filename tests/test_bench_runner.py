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
    if {"bench_quickstart", "bench_ddp"} <= set(names):
        assert names.index("bench_quickstart") < names.index("bench_ddp")
    assert run_all.has_run("bench_loading") and not run_all.has_run("synth_speed")


def test_ddp_reuses_the_quickstart_store_and_failures_show_in_the_document(monkeypatch, tmp_path):
    monkeypatch.setenv(run_all.WORKDIR_ENV, str(tmp_path))
    args = run_all._script_args("bench_ddp", quick=True)
    assert f"output_dir={tmp_path / 'quickstart'}" in args and "data.products=40" in args
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
