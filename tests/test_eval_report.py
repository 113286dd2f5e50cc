"""The markdown report: Tables 2 and 3 layout, ours and the paper's figures in separate columns."""

from kaleido.evaluation import paper
from kaleido.evaluation.report import render


def _results():
    rec = {"R@1": 11.0, "R@5": 22.0, "R@10": 33.0}
    chance = {"R@1": 0.99, "R@5": 4.95, "R@10": 9.90}
    return {
        "info": {"recipe": "quick"},
        "retrieval": {"queries": 50, "mean_list_size": 101.0,
                      "scorers": {"pretrained ITM": {"itr": rec, "tir": dict(rec, **{"R@1": 12.5}),
                                                     "itr_ci": {"R@1": [5.6, 23.4], "R@5": [12.8, 35.2],
                                                                "R@10": [21.6, 46.8]},
                                                     "sum_r": 133.5}},
                      "chance": {"itr": chance, "tir": chance, "sum_r": 31.68}},
        "cr": {"acc": 93.5, "macro_f1": 0.81, "acc_ci": [88.04, 96.61],
               "chance": {"acc": 40.0, "macro_f1": 0.1}},
        "sub": {"acc": 70.25, "macro_f1": 0.55, "chance": {"acc": 20.0, "macro_f1": 0.05}},
        "sum_cls": {"ours": 298.75, "chance": 75.0},
        "fc": {"samples": 20,
               "ours": {"BLEU-4": 1.5, "METEOR": 2.5, "ROUGE-L": 3.5, "CIDEr": 4.5, "sum_cap": 12.0},
               "baseline": {"BLEU-4": 0.5, "METEOR": 0.5, "ROUGE-L": 0.5, "CIDEr": 0.5, "sum_cap": 2.0},
               "examples": [{"reference": "red shirt", "generated": "red top"}]},
    }


def _row(md: str, label: str) -> list[str]:
    line = next(line for line in md.splitlines() if line.startswith(f"| {label} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def _header(md: str, first: str) -> list[str]:
    line = next(line for line in md.splitlines() if line.startswith(f"| {first} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_table2_puts_ours_then_chance_then_every_paper_column():
    md = render(_results())
    header = _header(md, "Table 2 (%)")
    assert header[1:3] == ["ours: pretrained ITM", "chance (same lists)"]
    assert header[3:] == [f"paper: {m}" for m in paper.TABLE2_MODELS]
    assert _row(md, "TIR R@1")[1:3] == ["12.50", "0.99"]  # no interval given: none printed
    assert _row(md, "ITR R@10")[1:3] == ["33.00 [21.6, 46.8]", "9.90"]
    assert "Brackets after one of our figures: its 95% interval (Wilson)" in md
    assert _row(md, "SumR")[1] == "133.50" and _row(md, "SumR")[-1] == "319.52"
    assert _row(md, "ITR R@10")[3:] == [f"{v:.2f}" for v in paper.TABLE2["ITR R@10"]]


def test_table3_keeps_published_figures_apart_and_marks_missing_cells():
    md = render(_results())
    header = _header(md, "Table 3")
    assert header[1:3] == ["ours", "chance / baseline"] and header[3] == "paper: FashionBERT"
    assert _row(md, "CR ACC") == ["CR ACC", "93.50 [88.0, 96.6]", "40.00", "91.25", "90.77", "91.79", "95.07"]
    assert _row(md, "SUB ACC")[1] == "70.25"
    assert _row(md, "SUB macro-F")[1:] == ["0.550", "0.050", "0.620", "-", "0.591", "0.636"]
    assert _row(md, "SumCAP")[1:3] == ["12.00", "2.00"] and _row(md, "SumCAP")[-1] == "84.00"


def test_partial_results_render_only_what_was_run():
    res = _results()
    del res["fc"], res["sub"], res["sum_cls"]
    md = render(res)
    assert "CR ACC" in md and "SUB ACC" not in md and "SumCAP" not in md
