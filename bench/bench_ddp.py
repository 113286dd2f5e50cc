"""2-process gloo DDP training rate against 1 process on the same machine, same recipe and global batch.

Both runs go through ``torch.distributed.run`` and ``kaleido.training.main`` (what ``kaleido run
--nproc-per-node N`` launches), one after the other in this one invocation, and the rate is read
from each run's ``log.jsonl`` (samples/s, the first logged window dropped as warm-up). The
recipe's feature store (and alignments) must exist: run ``kaleido run RECIPE`` once first.

    .venv/bin/python bench/bench_ddp.py recipes/quickstart.toml --steps 30
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def command(recipe: Path, nproc: int, steps: int, overrides: list[str], out: Path,
            log_every: int) -> list[str]:
    """The torchrun command line of one run.

    The step count, logging window and checkpoint interval come after ``overrides``: they define
    the measurement, whatever schedule the recipe (or a reused ``--set`` list) names."""
    sets = [*overrides, f"pretrain.max_steps={steps}", f"pretrain.log_every={log_every}",
            f"pretrain.checkpoint_every={10 * steps}"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
           "-m", "kaleido.training.main", "--recipe", str(recipe), "--out", str(out), "--no-progress"]
    for item in sets:
        cmd += ["--set", item]
    return cmd


def train_rate(recipe: Path, nproc: int, steps: int, overrides: list[str], out: Path,
               log_every: int = 5) -> dict:
    """Train ``steps`` steps on ``nproc`` gloo ranks; samples/s and data-wait share after warm-up."""
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // nproc))}
    cmd = command(recipe, nproc, steps, overrides, out, log_every)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{nproc}-process run failed:\n{proc.stderr[-3000:]}")
    entries = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()][1:]
    if not entries:
        raise SystemExit("too few steps to measure: raise --steps")
    return {"nproc": nproc, "samples_per_s": sum(e["samples_per_s"] for e in entries) / len(entries),
            "data_wait": sum(e["data_wait"] for e in entries) / len(entries), "wall_s": round(wall, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recipe", type=Path, nargs="?", default=REPO / "recipes" / "quickstart.toml")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--log-every", type=int, default=5, help="steps per logged rate window (the first is "
                    "dropped as warm-up, so --steps should be at least twice this)")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        one = train_rate(args.recipe, 1, args.steps, args.overrides, Path(tmp) / "one", args.log_every)
        two = train_rate(args.recipe, 2, args.steps, args.overrides, Path(tmp) / "two", args.log_every)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    report = {"recipe": str(args.recipe), "steps": args.steps, "log_every": args.log_every,
              "machine": machine, "one_process": one,
              "two_processes": two,
              "ratio_2_vs_1": round(two["samples_per_s"] / one["samples_per_s"], 3)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
