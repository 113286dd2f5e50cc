"""Wall time of the quickstart (`kaleido run recipes/quickstart.toml`, every stage, from nothing).

The baseline, measured in the same run, is `kaleido check` of the same recipe: the command
line's own start-up and recipe validation, which every `kaleido` call pays. The target is the
recipe's promise: every stage within 10 minutes on a 2-core CPU. ``--quick`` shrinks the data
set and the schedule (see :func:`overrides`); the run folder is left in ``$KALEIDO_BENCH_DIR``
(when set) for the DDP benchmark, which trains on its feature store.

    .venv/bin/python bench/bench_quickstart.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_all import REPO, WORKDIR_ENV, Section, row  # noqa: E402

RECIPE = REPO / "recipes" / "quickstart.toml"
BUDGET_S = 600.0


def overrides(work: Path, quick: bool) -> list[str]:
    """``--set`` items: a private output folder and data folder; smaller sizes for ``--quick``."""
    out = [f"output_dir={work / 'quickstart'}", f"data.dir={work / 'synthetic'}"]
    if quick:
        out += ["data.products=40", "data.test_products=12", "backbone.image_size=96", "aligner.epochs=1",
                "pretrain.epochs=1", "eval.queries=10", "eval.negatives=10", "eval.finetune_itm=false",
                "eval.cls_epochs=1", "eval.caption_epochs=1", "eval.caption_samples=10"]
    return out


def _timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[1:3])} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return time.perf_counter() - start


def run(quick: bool) -> Section:
    kaleido = str(Path(sys.executable).with_name("kaleido"))
    shared = os.environ.get(WORKDIR_ENV)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(shared or tmp)
        sets = [x for o in overrides(work, quick) for x in ("--set", o)]
        check_s = _timed([kaleido, "check", str(RECIPE), *sets])
        run_s = _timed([kaleido, "run", str(RECIPE), "--no-progress", *sets])
    size = "reduced (--quick: 40 products, 1 epoch, small eval)" if quick else "as shipped"
    return Section(
        title="Quickstart wall time",
        command=f"bench/bench_quickstart.py{' --quick' if quick else ''}",
        rows=[row("`kaleido run recipes/quickstart.toml`, s", run_s, "`kaleido check` of the same recipe, s",
                  check_s),
              row("quickstart, s", run_s, "the 10-minute budget, s", BUDGET_S, target="<= 1x")],
        notes=[f"recipe {size}; data drawn, prepared, aligned, pre-trained and evaluated from nothing"],
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    print(run(ap.parse_args().quick).markdown())
