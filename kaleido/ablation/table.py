"""The Table-4 comparison: SumR, SumCLS and SumCAP of each run, mean +- sd over seeds, and the
change of each variant relative to the base, as markdown, JSON and a PNG chart.

Scores are read from each run's ``results.json`` (stage 4): SumR of the pre-trained ITM scorer
(the paper's protocol), SumCLS, and SumCAP of the generated captions. A metric a run did not
produce stays ``None`` and prints as "-"; nothing is filled in. Where the run's evaluation names the
task as skipped (``incomplete``: captioning without Java), the row's notes say why.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kaleido.atomic import atomic_file, write_json, write_text
from kaleido.evaluation.retrieval import sum_r_per_query

METRICS: tuple[tuple[str, str], ...] = (("sum_r", "SumR"), ("sum_cls", "SumCLS"), ("sum_cap", "SumCAP"))
SCORER = "pre-trained ITM"
TASK_METRIC = {"itr": "sum_r", "tir": "sum_r", "cr": "sum_cls", "sub": "sum_cls", "fc": "sum_cap"}
FACTOR_TITLES = {"base": "Base", "patcher": "KPG (patcher)", "sod": "KPG (saliency)",
                 "masker": "Masking", "aligner": "Alignment", "tasks": "AKPM tasks", "recipe": "Recipes"}


def scores(results: dict) -> dict[str, Any]:
    """SumR / SumCLS / SumCAP of one ``results.json`` (``None`` for a metric it lacks); under
    ``missing``, why a metric is ``None`` where the evaluation recorded the task as skipped."""
    scorer = results.get("retrieval", {}).get("scorers", {}).get(SCORER, {})
    fc = results.get("fc", {}).get("ours", {})
    out: dict[str, Any] = {"sum_r": scorer.get("sum_r"), "sum_cls": results.get("sum_cls", {}).get("ours"),
                           "sum_cap": fc.get("sum_cap")}
    if "itr_ranks" in scorer and "tir_ranks" in scorer:  # per query, to pair two runs' SumR query by query
        out["sum_r_queries"] = sum_r_per_query(scorer["itr_ranks"], scorer["tir_ranks"]).tolist()
        out["lists"] = results["retrieval"].get("lists_sha")
    missing = {}
    for skipped in results.get("incomplete", []):
        metric = TASK_METRIC.get(skipped.get("task"))
        if metric is not None and out[metric] is None and metric not in missing:
            missing[metric] = f"{skipped['task']} not measured: {skipped.get('reason', 'no reason recorded')}"
    if missing:
        out["missing"] = missing
    return out


def chance(results: dict) -> dict[str, float | None]:
    """The same sums for chance ranking / majority class / the constant-caption baseline."""
    fc = results.get("fc", {}).get("baseline", {})
    return {"sum_r": results.get("retrieval", {}).get("chance", {}).get("sum_r"),
            "sum_cls": results.get("sum_cls", {}).get("chance"), "sum_cap": fc.get("sum_cap")}


def mean_sd(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample sd (n - 1) of the values present; sd is ``None`` below two values."""
    present = [float(v) for v in values if v is not None]
    if not present:
        return None, None
    mean = sum(present) / len(present)
    if len(present) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in present) / (len(present) - 1))


@dataclass
class Row:
    """One setting of the table: its per-seed scores and, where known, the paper's figures."""

    factor: str
    label: str
    seeds: list[int]
    runs: list[dict[str, Any]]  # one scores() per seed, same order as seeds
    paper: dict[str, float] | None = None
    notes: tuple[str, ...] = ()
    dirs: tuple[str, ...] = ()
    overrides: tuple[str, ...] = ()

    def stat(self, metric: str) -> tuple[float | None, float | None]:
        return mean_sd([r[metric] for r in self.runs])

    def sum_r_interval(self, base: Row) -> list[float] | None:
        """The change of SumR relative to the base, its 95% interval over the test queries: each
        seed's run against the base's of the same seed, query by query, where both ranked the
        same candidate lists; ``None`` where no pair qualifies. Seeds that ranked the same lists
        are averaged per query first: the query, not the (seed, query) pair, is the unit resampled."""
        base_by_seed = dict(zip(base.seeds, base.runs, strict=True))
        by_lists: dict[str, list[list[float]]] = {}
        for seed, run in zip(self.seeds, self.runs, strict=True):
            other = base_by_seed.get(seed, {})
            mine, theirs = run.get("sum_r_queries"), other.get("sum_r_queries")
            same_lists = run.get("lists") is not None and run.get("lists") == other.get("lists")
            if mine is None or theirs is None or not same_lists:
                continue
            by_lists.setdefault(run["lists"], []).append([a - b for a, b in zip(mine, theirs, strict=True)])
        diffs = [sum(seeds) / len(seeds) for group in by_lists.values() for seeds in zip(*group, strict=True)]
        return paired_interval(diffs)

    def delta(self, base: Row, metric: str) -> tuple[float | None, float | None]:
        """Change relative to the base: mean and sd of the differences paired by seed."""
        base_by_seed = dict(zip(base.seeds, (r[metric] for r in base.runs), strict=True))
        diffs = [r[metric] - base_by_seed[s] for s, r in zip(self.seeds, self.runs, strict=True)
                 if r[metric] is not None and base_by_seed.get(s) is not None]
        return mean_sd(diffs)


def paired_interval(diffs: Sequence[float], confidence: float = 0.95) -> list[float] | None:
    """The 95% interval of the mean of paired differences, by bootstrap over the pairs (scipy,
    percentile method, a fixed seed: the table is the same each time it is written)."""
    from scipy.stats import bootstrap

    if len(diffs) < 2:
        return None
    ci = bootstrap((np.asarray(diffs, dtype=float),), np.mean, confidence_level=confidence, n_resamples=9999,
                   method="percentile", rng=np.random.default_rng(0)).confidence_interval
    return [float(ci.low), float(ci.high)]


def build_table(base: Row, rows: Sequence[Row], chance_scores: dict[str, float | None] | None = None) -> dict:
    """The comparison as plain data (what ``ablation.json`` holds)."""
    def entry(row: Row) -> dict:
        labels = dict(METRICS)
        why = [f"seed {seed}: {labels[m]} missing, {reason}"
               for seed, run in zip(row.seeds, row.runs, strict=True)
               for m, reason in run.get("missing", {}).items()]
        out: dict[str, Any] = {"factor": row.factor, "label": row.label, "seeds": row.seeds,
                               "runs": row.runs, "paper": row.paper, "notes": [*row.notes, *why],
                               "dirs": list(row.dirs), "overrides": list(row.overrides)}
        for key, _ in METRICS:
            mean, sd = row.stat(key)
            d_mean, d_sd = row.delta(base, key)
            out[key] = {"mean": mean, "sd": sd, "delta": d_mean, "delta_sd": d_sd}
            if key == "sum_r" and row is not base:
                out[key]["delta_ci"] = row.sum_r_interval(base)
            if row.paper is not None and base.paper is not None:
                out[key]["paper_delta"] = round(row.paper[key] - base.paper[key], 2)
        return out

    return {"base": entry(base), "variants": [entry(r) for r in rows], "chance": chance_scores,
            "seeds": len(base.seeds), "scorer": SCORER}


def _fmt(mean: float | None, sd: float | None, signed: bool = False) -> str:
    if mean is None:
        return "-"
    text = f"{mean:+.2f}" if signed else f"{mean:.2f}"
    return f"{text} ± {sd:.2f}" if sd is not None else text


def _cell(metric: dict, with_delta: bool) -> str:
    value = _fmt(metric["mean"], metric["sd"])
    if with_delta and metric["mean"] is not None:
        interval = metric.get("delta_ci")
        within = "" if not interval else f"; 95% [{interval[0]:+.2f}, {interval[1]:+.2f}]"
        value += f" ({_fmt(metric['delta'], metric['delta_sd'], signed=True)}{within})"
    return value


def _paper_cell(entry: dict, key: str) -> str:
    if not entry["paper"]:
        return "-"
    paper = f"{entry['paper'][key]:.2f}"
    delta = entry[key].get("paper_delta")
    return paper if delta is None or entry["factor"] == "base" else f"{paper} ({delta:+.2f})"


def to_markdown(table: dict, title: str = "Ablation") -> str:
    """Table 4's layout: one block per factor, the base first, each cell ``mean ± sd (change)``."""
    base = table["base"]
    has_paper = any(e["paper"] for e in [base, *table["variants"]])
    head = ["factor", "setting", *(label for _, label in METRICS)]
    if has_paper:
        head += [f"paper {label}" for _, label in METRICS]
    lines = [f"# {title}", "",
             f"Seeds per setting: {table['seeds']}. Cells: mean ± sd over seeds; in brackets the change "
             "relative to the base (mean ± sd of the differences paired by seed; for SumR, after `95%`, "
             "the interval of the change over the test queries, both runs having ranked the same lists: "
             "a paired bootstrap). SumR ranks with the "
             f"{table['scorer']} score.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def line(entry: dict, factor: str, is_base: bool) -> str:
        cells = [factor, entry["label"] + (" (base)" if is_base else "")]
        cells += [_cell(entry[k], not is_base) for k, _ in METRICS]
        if has_paper:
            cells += [_paper_cell(entry, k) for k, _ in METRICS]
        return "| " + " | ".join(cells) + " |"

    lines.append(line(base, FACTOR_TITLES["base"], True))
    seen: list[str] = []
    for entry in table["variants"]:
        title_of = FACTOR_TITLES.get(entry["factor"], entry["factor"])
        lines.append(line(entry, title_of if entry["factor"] not in seen else "", False))
        seen.append(entry["factor"])
    chance_scores = table.get("chance") or {}
    if any(v is not None for v in chance_scores.values()):
        cells = ["chance", "(random ranking, majority class, constant caption)"]
        cells += ["-" if chance_scores.get(k) is None else f"{chance_scores[k]:.2f}" for k, _ in METRICS]
        if has_paper:
            cells += ["-"] * len(METRICS)
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"- {e['label']}: {n}" for e in [base, *table["variants"]] for n in e["notes"]]
    if notes:
        lines += ["", "Notes:", *notes]
    return "\n".join(lines) + "\n"


def plot(table: dict, path: Path, title: str = "Ablation") -> None:
    """One panel per metric, one bar per setting (error bar: sd over seeds), chance as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = [table["base"], *table["variants"]]
    labels = [e["label"] for e in entries]
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4 + 0.9 * len(entries) * len(METRICS) / 2, 4.2),
                             squeeze=False)
    colours = ["#4c72b0"] + ["#dd8452"] * (len(entries) - 1)
    for ax, (key, label) in zip(axes[0], METRICS, strict=True):
        means = [e[key]["mean"] if e[key]["mean"] is not None else float("nan") for e in entries]
        sds = [e[key]["sd"] or 0.0 for e in entries]
        ax.bar(range(len(entries)), means, yerr=sds, color=colours, capsize=3)
        chance_value = (table.get("chance") or {}).get(key)
        if chance_value is not None:
            ax.axhline(chance_value, color="grey", linestyle="--", linewidth=1, label="chance")
            ax.legend(loc="lower right", fontsize=7)
        ax.set_title(label)
        ax.set_xticks(range(len(entries)), labels, rotation=45, ha="right", fontsize=7)
    fig.suptitle(f"{title} ({table['seeds']} seed{'s' if table['seeds'] != 1 else ''}; base in blue)")
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def write_all(table: dict, out_dir: Path, title: str = "Ablation") -> dict[str, Path]:
    """``ablation.md``, ``ablation.json`` and ``ablation.png`` in ``out_dir`` (each written atomically)."""
    out_dir = Path(out_dir)
    paths = {kind: out_dir / f"ablation.{kind}" for kind in ("md", "json", "png")}
    markdown = to_markdown(table, title)
    write_text(paths["md"], markdown)
    write_json(paths["json"], table, indent=2)
    plot(table, paths["png"], title)
    return paths
