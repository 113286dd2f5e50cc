"""Caption metrics via pycocoevalcap (PTB tokenizer, BLEU-4, METEOR, ROUGE-L, CIDEr) on a known example."""

import shutil

import pytest

from kaleido.evaluation import caption_metrics
from kaleido.evaluation.caption_metrics import (
    JavaMissing,
    caption_scores,
    caption_scores_many,
    one_line,
    require_java,
    sum_cap,
)

REFS = {"1": ["a red cotton shirt with long sleeves"], "2": ["black leather boots."]}


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("java") is None, reason="needs Java")
def test_scores_on_a_small_known_example():
    out = caption_scores_many(REFS, {
        "close": {"1": "a red shirt with long sleeves", "2": "black boots"},
        "exact": {"1": "A red cotton shirt with long sleeves.", "2": "black leather boots"},
    })
    close, exact = out["close"], out["exact"]
    # the PTB tokenizer lower-cases and drops the full stop, so "exact" matches the references
    assert exact["BLEU-4"] == pytest.approx(100.0, abs=1e-3)
    assert exact["ROUGE-L"] == pytest.approx(100.0, abs=1e-3)
    # hand check of BLEU-4 for "close": 8 of 8 unigrams, 4/6 bigrams, 2/4 trigrams, 1/3 4-grams,
    # brevity penalty exp(1 - 10/8)
    import math
    bleu = math.exp(1 - 10 / 8) * (1 * 4 / 6 * 2 / 4 * 1 / 3) ** 0.25
    assert close["BLEU-4"] == pytest.approx(100 * bleu, rel=1e-3)
    assert close["METEOR"] == pytest.approx(38.06, abs=0.05)  # pycocoevalcap's METEOR 1.5
    assert close["ROUGE-L"] == pytest.approx(84.13, abs=0.05)
    assert 0 < close["CIDEr"] < exact["CIDEr"]
    assert sum_cap(close) == pytest.approx(sum(close.values()))


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("java") is None, reason="needs Java")
def test_a_line_break_inside_a_caption_does_not_shift_later_captions():
    # Java breaks lines at "\r", U+2028 and U+0085 too; the tokenizer's one-caption-per-line
    # input once put every later caption against the wrong image's references (BLEU-4 ~0)
    caption = "red cotton shirt with two pockets"
    refs = {"0": ["red cotton shirt\rwith two pockets"], "1": [caption], "2": [caption]}
    hyps = {"0": caption, "1": "red cotton\u2028shirt with two pockets", "2": f"red\x85{caption[4:]}"}
    scores = caption_scores(refs, hyps)
    assert scores["BLEU-4"] == pytest.approx(100.0, abs=1e-3)
    assert scores["ROUGE-L"] == pytest.approx(100.0, abs=1e-3)


def test_one_line_joins_every_kind_of_line_break():
    assert one_line(" a\rb\u2028c\x85d\u2029e\x0bf\x0cg\x1ch\n\r\ni ") == "a b c d e f g h i"


def test_missing_java_is_one_line_saying_what_to_install(monkeypatch):
    monkeypatch.setattr(caption_metrics.shutil, "which", lambda name: None)
    with pytest.raises(JavaMissing, match="install a JRE") as exc:
        require_java()
    assert "\n" not in str(exc.value)


def test_hypotheses_must_cover_the_references():
    with pytest.raises(ValueError, match="exactly the ids"):
        caption_scores_many(REFS, {"x": {"1": "a shirt"}})
