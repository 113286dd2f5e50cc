"""Run every benchmark of the project and rewrite docs/PERFORMANCE.md from this one run.

    .venv/bin/python bench/run_all.py [--quick] [--only NAME ...] [--out docs/PERFORMANCE.md]

Interface for a benchmark module ``bench/bench_<name>.py``: either expose
``run(quick: bool) -> Section`` (a title, the command, rows of a figure against its baseline
measured side by side, notes), which this script calls in a fresh subprocess, or be a plain
script whose standard output is copied into its section verbatim (the arguments used for
``--quick`` are listed in ``SCRIPTS``). Every benchmark runs in its own process, one after the
other, so none inherits another's memory or threads; the machine, the load and the date of the
run head the document.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

from kaleido.atomic import write_text

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
WORKDIR_ENV = "KALEIDO_BENCH_DIR"  # a folder shared by the benchmarks of one run_all invocation

# Plain scripts (no ``run``) of other pieces: section title and the arguments per mode.
# --quick keeps every comparison side by side, smaller: extraction leaves the peak memory of prepare
# to bench_memory (which measures it too), the step keeps its shape (the AMLM decoder streams the
# whole vocabulary matrix once per step, so a smaller batch would raise the ratio) with fewer
# repeats, retrieval ranks fewer lists.
SCRIPTS: dict[str, tuple[str, list[str], list[str]]] = {
    "synth_speed": ("Synthetic data", ["--products", "50", "--poses", "2"], []),
    "bench_extraction": ("Extraction", ["--images", "6", "--crop-images", "1", "--size", "160",
                                        "--repeats", "2", "--no-memory"], []),
    "bench_step": ("Pre-training step", ["--repeats", "7", "--warmup", "2"], []),
    "bench_retrieval": ("Retrieval", ["--lists", "2"], []),
}
# The order sections appear in; anything else found in bench/ follows alphabetically.
ORDER = ["bench_extraction", "bench_step", "bench_loading", "bench_retrieval", "bench_memory",
         "bench_quickstart", "bench_ddp", "synth_speed"]
SKIP = {"run_all", "gpu_train"}  # gpu_train needs a CUDA device: see its own section


@dataclass
class Section:
    """One benchmark's part of the document."""

    title: str
    command: str
    rows: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    text: str = ""  # verbatim output of a plain script
    seconds: float = 0.0
    error: str = ""

    def markdown(self) -> str:
        out = [f"## {self.title}", "", f"`.venv/bin/python {self.command}` ({self.seconds:.0f} s)", ""]
        if self.error:
            out += [f"**Failed in this run:** {self.error}", ""]
        if self.rows:
            out += ["| what | figure | baseline (same run) | baseline figure | ratio | target | met |",
                    "|---|---|---|---|---|---|---|"]
            for r in self.rows:
                met = "" if r.get("met") is None else ("yes" if r["met"] else "**no**")
                target = r.get("target") or ""
                out.append(f"| {r['what']} | {_num(r['value'])} | {r['baseline']} "
                           f"| {_num(r['baseline_value'])} | {r['ratio']:.2f}x | {target} | {met} |")
            out.append("")
        if self.text and "|---" in self.text:  # the script prints markdown itself: keep it as it is
            out += [self.text.strip(), ""]
        elif self.text:
            out += ["```", self.text.strip(), "```", ""]
        out += [f"- {n}" for n in self.notes]
        return "\n".join(out).rstrip() + "\n"


def _num(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def row(what: str, value: float, baseline: str, baseline_value: float, target: str | None = None) -> dict:
    """A figure against its baseline; ``target`` like ``">= 5x"`` or ``"<= 1.2x"`` on the ratio."""
    ratio = value / baseline_value if baseline_value else float("nan")
    met = None
    if target:
        m = re.match(r"\s*(>=|<=)\s*([\d.]+)", target)
        if m:
            limit = float(m.group(2))
            met = ratio >= limit if m.group(1) == ">=" else ratio <= limit
    return {"what": what, "value": float(value), "baseline": baseline,
            "baseline_value": float(baseline_value), "ratio": float(ratio), "target": target, "met": met}


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{model}, {os.cpu_count()} cores, {gpu}; Python {platform.python_version()}, "
            f"torch {torch.__version__}")


def discover() -> list[str]:
    names = {p.stem for p in BENCH.glob("*.py")} - SKIP
    names = {n for n in names if n.startswith("bench_") or n in SCRIPTS}
    return [n for n in ORDER if n in names] + sorted(names - set(ORDER))


def has_run(name: str) -> bool:
    return bool(re.search(r"^def run\(quick", (BENCH / f"{name}.py").read_text(), re.M))


def _script_args(name: str, quick: bool) -> list[str]:
    if name == "bench_ddp":  # trains on the feature store the quickstart benchmark left behind
        from bench_quickstart import overrides

        sets = [x for o in overrides(Path(os.environ[WORKDIR_ENV]), quick) for x in ("--set", o)]
        # --quick: batch 8 (the quickstart's reduced recipe), 4 steps, the last 3 measured
        steps = ["--steps", "4", "--log-every", "1"] if quick else ["--steps", "30"]
        return [str(REPO / "recipes" / "quickstart.toml"), *steps, *sets]
    _, quick_args, full_args = SCRIPTS.get(name, ("", [], []))
    return quick_args if quick else full_args


def _title(name: str) -> str:
    if name in SCRIPTS:
        return SCRIPTS[name][0]
    if name == "bench_ddp":
        return "Training: 2-process gloo DDP vs 1 process"
    doc = (BENCH / f"{name}.py").read_text().split('"""')
    return doc[1].strip().splitlines()[0].rstrip(".") if len(doc) > 2 else name


def run_one(name: str, quick: bool, timeout: int) -> Section:
    """Run one benchmark in a fresh process and return its section (an error is reported, not raised)."""
    env = {**os.environ, "PYTHONPATH": f"{BENCH}{os.pathsep}{REPO}"}
    start = time.perf_counter()
    if has_run(name):
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
            result = Path(fh.name)
        cmd = [sys.executable, str(BENCH / "run_all.py"), "--child", name, "--json", str(result)]
        cmd += ["--quick"] if quick else []
    else:
        args = _script_args(name, quick)
        cmd = [sys.executable, str(BENCH / f"{name}.py"), *args]
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
        error = "" if proc.returncode == 0 else f"exit {proc.returncode}: {_last_line(proc.stderr)}"
    except subprocess.TimeoutExpired:
        proc, error = None, f"timed out after {timeout} s"
    seconds = time.perf_counter() - start
    if has_run(name):
        try:
            section = Section(**json.loads(result.read_text())) if not error else None
        except (OSError, json.JSONDecodeError) as exc:
            section, error = None, f"no result ({exc})"
        finally:
            result.unlink(missing_ok=True)
        section = section or Section(title=_title(name), command=f"bench/{name}.py{' --quick' * quick}")
    else:
        rel = " ".join(a.replace(str(REPO) + "/", "") for a in _script_args(name, quick))
        section = Section(title=_title(name), command=f"bench/{name}.py {rel}".strip(),
                          text=proc.stdout if proc is not None else "")
    section.seconds, section.error = seconds, error
    return section


def _last_line(text: str) -> str:
    lines = [x for x in text.strip().splitlines() if x.strip()]
    return lines[-1][:300] if lines else "no output"


def document(sections: list[Section], command: str, started: float, load: tuple[float, float]) -> str:
    targets = [r for s in sections for r in s.rows if r.get("met") is not None]
    head = [
        "# Performance",
        "",
        "Everything above the marker line near the end is generated by `bench/run_all.py` (do not edit "
        "it; each benchmark's module says what it measures); each piece's owner keeps notes below it. "
        "Every ratio compares two things measured side by side in this one run.",
        "",
        f"- command: `{command}`",
        f"- date: {date.today().isoformat()}, total {time.perf_counter() - started:.0f} s",
        f"- machine: {machine()}",
        f"- load average (1 min) at start / end: {load[0]:.1f} / {os.getloadavg()[0]:.1f} "
        "(a shared machine: absolute figures move with it, ratios much less)",
        f"- targets met in the tables run_all builds: {sum(r['met'] for r in targets)} of {len(targets)} "
        "(the plain scripts state their own targets in their output); benchmarks that failed: "
        f"{sum(bool(s.error) for s in sections)} of {len(sections)}",
        "",
    ]
    gpu = ["## GPU training (`bench/gpu_train.py`)", "",
           "Not part of this suite (it needs a CUDA device): `bash bench/gpu_check.sh OUT` runs every "
           "GPU check as one script (`bench/gpu_train.py`: bf16, BERT-base shape, up to 64 text + 55 "
           "patch positions, each batch's text padded to its longest; MFU counts the real positions, not "
           "the text padding; the padded FLOPs formula is checked against torch's flop counter by "
           "`tests/test_gpu_train.py`; `bash bench/gpu_check.sh OUT quick` is the 8-minute set of six runs). "
           "Target on an H100: MFU >= 40%. The measured figures are in the hand-written note "
           "\"GPU training on an H100\" below.", ""]
    return "\n".join(head) + "\n" + "\n".join(s.markdown() for s in sections) + "\n" + "\n".join(gpu)


MARKER = "<!-- bench/run_all.py: generated above this line; hand-written notes below are kept -->"
KEPT_TITLE = "# Notes by each piece's owner (hand-written, from their own runs; kept by run_all)"


def assemble(generated: str, previous: str) -> str:
    """The generated part, then the owners' hand-written notes of the previous file, kept as they are.

    Before the first generated version the whole previous file is hand-written: all of it but its
    title is kept; afterwards, whatever follows the marker.
    """
    if MARKER in previous:
        kept = previous.split(MARKER, 1)[1].strip()
    else:
        lines = previous.strip().splitlines()
        kept = "\n".join(lines[1:] if lines and lines[0].startswith("# ") else lines).strip()
        kept = f"{KEPT_TITLE}\n\n{kept}" if kept else ""
    return generated.rstrip() + "\n\n" + MARKER + "\n\n" + (kept + "\n" if kept else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: the whole suite in a few minutes")
    ap.add_argument("--only", nargs="*", default=None, help="run only these benchmarks (names without .py)")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "PERFORMANCE.md")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per benchmark")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--json", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:  # inside the fresh process of one benchmark
        import importlib

        section = importlib.import_module(args.child).run(args.quick)
        write_text(args.json, json.dumps(asdict(section)))
        return
    started, load = time.perf_counter(), os.getloadavg()
    names = discover() if not args.only else args.only
    command = "python bench/run_all.py" + (" --quick" if args.quick else "") + (
        f" --only {' '.join(args.only)}" if args.only else "")
    sections = []
    with tempfile.TemporaryDirectory(prefix="kaleido-bench-") as work:
        os.environ[WORKDIR_ENV] = work
        for name in names:
            print(f"[run_all] {name} ...", flush=True)
            section = run_one(name, args.quick, args.timeout)
            print(section.markdown(), flush=True)
            sections.append(section)
    previous = args.out.read_text(encoding="utf-8") if args.out.is_file() else ""
    write_text(args.out, assemble(document(sections, command, started, load), previous))
    print(f"[run_all] wrote {args.out}")


if __name__ == "__main__":
    main()
