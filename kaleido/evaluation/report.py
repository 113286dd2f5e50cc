"""``results.md``: our figures in the layout of the paper's Tables 2 and 3.

Our columns (each scorer, and chance on the same lists / labels) come first; the paper's published
Fashion-Gen figures follow in columns whose headers say "paper" and the model name. They are never
mixed: no cell of a "paper" column is ever computed, and no cell of ours is ever copied.
"""

from __future__ import annotations

from collections.abc import Sequence

from kaleido.evaluation import paper


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _with_interval(value: float, interval: Sequence[float] | None, digits: int = 2) -> str:
    """``value`` and, where measured, its 95% interval: ``45.00 [25.8, 65.8]``."""
    return _fmt(value, digits) + ("" if interval is None else f" [{interval[0]:.1f}, {interval[1]:.1f}]")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _retrieval_rows(results: dict) -> tuple[list[str], list[list[str]]]:
    systems = [(k, v) for k, v in results.get("retrieval", {}).get("scorers", {}).items()]
    chance = results["retrieval"]["chance"]
    header = ["Table 2 (%)"] + [f"ours: {name}" for name, _ in systems] + ["chance (same lists)"]
    header += [f"paper: {m}" for m in paper.TABLE2_MODELS]
    rows = []
    for label in paper.TABLE2:
        if label == "SumR":
            ours = [_fmt(s["sum_r"]) for _, s in systems] + [_fmt(chance["sum_r"])]
        else:
            task, k = label.split(" ")
            t = task.lower()
            ours = [_with_interval(s[t][k], s.get(f"{t}_ci", {}).get(k)) for _, s in systems]
            ours.append(_fmt(chance[t][k]))
        rows.append([label, *ours, *(_fmt(v) for v in paper.TABLE2[label])])
    return header, rows


def _table3_rows(results: dict) -> tuple[list[str], list[list[str]]]:
    header = ["Table 3", "ours", "chance / baseline"] + [f"paper: {m}" for m in paper.TABLE3_MODELS]
    rows = []
    for task in ("cr", "sub"):
        if task in results:
            r = results[task]
            for metric, key, digits in (("ACC", "acc", 2), ("macro-F", "macro_f1", 3)):
                label = f"{task.upper()} {metric}"
                rows.append([label, _with_interval(r[key], r.get(f"{key}_ci"), digits),
                             _fmt(r["chance"][key], digits),
                             *(_fmt(v, digits) for v in paper.TABLE3[label])])
    if "sum_cls" in results:
        rows.append(["SumCLS", _fmt(results["sum_cls"]["ours"]), _fmt(results["sum_cls"]["chance"]),
                     *(_fmt(v) for v in paper.TABLE3["SumCLS"])])
    if "fc" in results:
        fc = results["fc"]
        for metric in ("BLEU-4", "METEOR", "ROUGE-L", "CIDEr"):
            label = f"FC {metric}"
            rows.append([label, _fmt(fc["ours"][metric]), _fmt(fc["baseline"][metric]),
                         *(_fmt(v) for v in paper.TABLE3[label])])
        rows.append(["SumCAP", _fmt(fc["ours"]["sum_cap"]), _fmt(fc["baseline"]["sum_cap"]),
                     *(_fmt(v) for v in paper.TABLE3["SumCAP"])])
    return header, rows


def render(results: dict) -> str:
    """The markdown report of one evaluation's ``results.json``."""
    info = results.get("info", {})
    lines = [f"# Evaluation: {info.get('recipe', '?')}", ""]
    for key, value in info.items():
        lines.append(f"- {key}: {value}")
    lines.append("")
    lines.append("Columns headed `ours` are measured by this run on its own test split; `chance` is a "
                 "random ranker on the same candidate lists, the majority class, or a constant caption. "
                 "Columns headed `paper:` are the figures published on Fashion-Gen (Kaleido-BERT, "
                 "CVPR 2021, Tables 2 and 3), copied, not measured here. Brackets after one of our "
                 "figures: its 95% interval (Wilson) over the queries or the test images.")
    lines.append("")
    if "retrieval" in results:
        r = results["retrieval"]
        lines.append(f"## Retrieval (ITR, TIR): {r['queries']} queries, {r['mean_list_size']:.1f} candidates "
                     f"per list on average; ties count against the positive")
        lines.append("")
        lines += _table(*_retrieval_rows(results))
        lines.append("")
    header, rows = _table3_rows(results)
    if rows:
        lines.append("## Category recognition (CR, SUB) and captioning (FC)")
        lines.append("")
        lines += _table(header, rows)
        lines.append("")
        if "fc" in results:
            lines.append(f"Captioning baseline: the most frequent training caption for every image "
                         f"({results['fc']['samples']} test images).")
            examples = results["fc"].get("examples", [])
            if examples:
                lines += ["", "| reference | ours |", "|---|---|"]
                lines += [f"| {e['reference']} | {e['generated']} |" for e in examples]
            lines.append("")
    for note in results.get("notes", []):
        lines.append(f"- {note}")
    return "\n".join(lines).rstrip() + "\n"
