"""The example plugin `examples/kaleido-span`: its masker, and the plugin path end to end
(pip install into a folder, entry point found, named in a recipe, run by `kaleido ablate`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "kaleido-span"
KALEIDO = [sys.executable, "-m", "kaleido.cli"]


@pytest.fixture(scope="module")
def span_masker_cls():
    sys.path.insert(0, str(EXAMPLE))
    try:
        from kaleido_span.masker import SpanMasker

        yield SpanMasker
    finally:
        sys.path.remove(str(EXAMPLE))


LEVELS = np.concatenate([np.full(g * g, i + 1) for i, g in enumerate((1, 2, 3, 4, 5))])


def test_span_masker_masks_contiguous_spans_and_level_quotas(span_masker_cls) -> None:
    masker = span_masker_cls(token_rate=0.3, max_predictions=10, span_p=0.2, max_span=5)
    rng = np.random.default_rng(0)
    runs = []
    for _ in range(200):
        plan = masker.plan(30, LEVELS, (1, 2, 3, 4, 5), None, rng)
        assert len(plan.tokens) == 9 and len(set(plan.tokens.tolist())) == 9  # round(0.3 * 30)
        assert plan.tokens.min() >= 0 and plan.tokens.max() < 30
        counts = {lv: int((LEVELS[plan.patches] == lv).sum()) for lv in (1, 2, 3, 4, 5)}
        assert counts == {1: 0, 2: 0, 3: 1, 4: 2, 5: 3}
        runs.append(int((np.diff(plan.tokens) == 1).sum()))
    # uniform picks of 9 of 30 have ~2.4 adjacent pairs on average; spans of mean length 5 many more
    assert np.mean(runs) > 4.5


def test_span_masker_plans_only_what_the_tasks_hide(span_masker_cls) -> None:
    from kaleido.maskers.base import Hidden, check_masker

    masker = span_masker_cls()
    check_masker(masker)  # what PretrainDataset checks at build time
    only_5x5 = Hidden(tokens=False, grids=frozenset({5}))
    plan = masker.plan(30, LEVELS, (1, 2, 3, 4, 5), None, np.random.default_rng(0), hidden=only_5x5)
    assert plan.tokens.size == 0
    assert {lv: int((LEVELS[plan.patches] == lv).sum()) for lv in (3, 4, 5)} == {3: 0, 4: 0, 5: 3}


def test_span_masker_rejects_bad_parameters(span_masker_cls) -> None:
    with pytest.raises(ValueError, match="span_p"):
        span_masker_cls(span_p=0.0)
    with pytest.raises(ValueError, match="token_rate"):
        span_masker_cls(token_rate=2.0)


# tests/recipes/tiny.toml without alignments (the random masker: the plugin's masker is compared
# with it), smaller and shorter: the ablation runs it twice.
TINY_OVERRIDES = ["aligner.name=none", "masker.name=random", "data.products=10", "data.test_products=6",
                  "pretrain.max_steps=2", "pretrain.log_every=1", "pretrain.checkpoint_every=2",
                  'eval.tasks=["itr", "tir"]', "eval.queries=4", "eval.negatives=3"]


@pytest.mark.slow
def test_plugin_end_to_end(tmp_path: Path, tiny_recipe) -> None:
    src = tmp_path / "src"
    shutil.copytree(EXAMPLE, src)  # building writes build/ and *.egg-info beside the sources
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                    "--quiet", "--target", str(site), str(src)], check=True, timeout=120)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "COLUMNS": "200"}

    def kaleido(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*KALEIDO, *args], env=env, cwd=tmp_path, capture_output=True, text=True,
                              timeout=300)

    listed = kaleido("components", "maskers")
    assert listed.returncode == 0, listed.stderr
    assert "span_geometric" in listed.stdout and "span_p=0.3" in listed.stdout
    # without the plugin on the path (this process) it is not there: the listing comes from the entry point
    from kaleido import registry

    assert "span_geometric" not in registry.maskers.names() and "random" in registry.maskers.names()

    recipe = tiny_recipe(tmp_path, TINY_OVERRIDES)
    named = tmp_path / "span.toml"
    named.write_text('extends = "tiny.toml"\n[masker]\nname = "span_geometric"\nspan_p = 0.5\n',
                     encoding="utf-8")
    checked = kaleido("check", str(named))
    assert checked.returncode == 0, checked.stderr
    assert 'name = "span_geometric"' in checked.stdout and "span_p = 0.5" in checked.stdout

    ablated = kaleido("ablate", "--base", str(recipe), "--masker", "span_geometric", "--no-progress")
    assert ablated.returncode == 0, ablated.stdout + ablated.stderr
    table = json.loads((tmp_path / "runs" / "ablate-tiny" / "ablation.json").read_text())
    (variant,) = table["variants"]
    assert variant["label"] == "span_geometric" and variant["overrides"] == ['masker.name="span_geometric"']
    for run in (variant, table["base"]):  # SumR: six recalls in percent
        assert 0.0 <= run["sum_r"]["mean"] <= 600.0
    run_dir = Path(variant["dirs"][0]).parent
    assert 'name = "span_geometric"' in (run_dir / "recipe.toml").read_text()
    # the variant pre-trained a model of its own (not the base's, reused): its own folder and log
    base_dir = Path(table["base"]["dirs"][0]).parent
    assert run_dir != base_dir
    logs = []
    for folder in (base_dir, run_dir):
        (pretrained,) = folder.glob("pretrain-*")
        assert (pretrained / "done.json").is_file()
        logs.append([json.loads(line) for line in (pretrained / "log.jsonl").read_text().splitlines()])
    assert [e["step"] for e in logs[0]] == [e["step"] for e in logs[1]] == [1, 2]
    assert [e["loss"] for e in logs[0]] != [e["loss"] for e in logs[1]]  # other masks, other losses
    assert 'name = "span_geometric"' in next(run_dir.glob("pretrain-*/recipe.toml")).read_text()
    # the masker only changes pre-training: both runs read one feature store
    assert len(list((tmp_path / "runs" / "cache").glob("store-*"))) == 1
