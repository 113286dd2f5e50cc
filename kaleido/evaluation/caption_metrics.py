"""Captioning metrics through ``pycocoevalcap``: PTB tokenizer, BLEU-4, METEOR, ROUGE-L, CIDEr, SumCAP.

Scores are reported x100, the unit of the paper's Table 3 (BLEU-4 5.70, METEOR 12.8, ROUGE-L 32.9,
CIDEr 32.6, SumCAP 84.0). The PTB tokenizer and METEOR run Java; without it one line says what
to install instead of a Java stack trace from a subprocess.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence

METRICS: tuple[str, ...] = ("BLEU-4", "METEOR", "ROUGE-L", "CIDEr")


class JavaMissing(RuntimeError):
    """pycocoevalcap needs a Java runtime for its PTB tokenizer and METEOR."""


def require_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise JavaMissing("captioning metrics need Java (PTB tokenizer, METEOR): "
                          "install a JRE, e.g. `apt-get install default-jre-headless`, then rerun")
    return java


def one_line(text: str) -> str:
    """``text`` with every run of whitespace made one space.

    The PTB tokenizer gets one caption per line and pycocoevalcap only replaces ``"\\n"``, but Java
    also breaks lines at ``"\\r"``, U+0085, U+2028, ...; one such character would shift every later
    caption onto the wrong image. ``str.split()`` splits on all of them.
    """
    return " ".join(text.split())


def caption_scores(references: Mapping[str, Sequence[str]],
                   hypotheses: Mapping[str, str]) -> dict[str, float]:
    """Corpus-level scores of one hypothesis per image against its reference captions, x100."""
    return caption_scores_many(references, {"_": hypotheses})["_"]


def caption_scores_many(references: Mapping[str, Sequence[str]],
                        systems: Mapping[str, Mapping[str, str]],
                        progress: Callable[[int, int], None] | None = None) -> dict[str, dict[str, float]]:
    """Score several systems' hypotheses on the same references in three Java start-ups however
    many systems (PTB tokenizer for the references, for all hypotheses, one METEOR: each JVM costs
    seconds); returns ``{system: {metric: score x100}}``. ``progress(steps done, steps)`` after
    each step: the two tokenizations, then each system's four metrics."""
    if not references or any(not refs for refs in references.values()):
        raise ValueError("need a non-empty set of ids, each with at least one reference caption")
    for name, hyps in systems.items():
        if set(hyps) != set(references):
            raise ValueError(f"system {name!r}: hypotheses must cover exactly the ids of the references")
    require_java()
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    ids = sorted(references)
    names = list(systems)
    total, done = 2 + 4 * len(names), [0]

    def step() -> None:
        done[0] += 1
        if progress is not None:
            progress(done[0], total)

    if progress is not None:
        progress(0, total)
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({k: [{"caption": one_line(c)} for c in references[k]] for k in ids})
    step()
    # one tokenizer call for every system: keys are (system index, id) flattened to strings
    flat = tokenizer.tokenize({f"{s}\t{k}": [{"caption": one_line(systems[n][k])}]
                               for s, n in enumerate(names) for k in ids})
    step()
    meteor_scorer = Meteor()
    out = {}
    try:
        for s, name in enumerate(names):
            # PTB tokenization can empty a caption (punctuation only); the scorers need a token
            res = {k: [flat[f"{s}\t{k}"][0] or "<empty>"] for k in ids}
            bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
            step()
            meteor, _ = meteor_scorer.compute_score(gts, res)
            step()
            rouge, _ = Rouge().compute_score(gts, res)
            step()
            cider, _ = Cider().compute_score(gts, res)
            step()
            out[name] = {"BLEU-4": 100.0 * float(bleu[3]), "METEOR": 100.0 * float(meteor),
                         "ROUGE-L": 100.0 * float(rouge), "CIDEr": 100.0 * float(cider)}
    finally:
        _close_meteor(meteor_scorer)
    return out


def _close_meteor(scorer: object) -> None:
    """Stop METEOR's Java subprocess now rather than at interpreter exit."""
    proc = getattr(scorer, "meteor_p", None)
    if proc is not None and proc.poll() is None:
        try:
            proc.stdin.close()
            proc.kill()
            proc.wait(timeout=5)
        except Exception:  # best effort: the process may already be gone
            pass


def sum_cap(scores: Mapping[str, float]) -> float:
    """SumCAP = BLEU-4 + METEOR + ROUGE-L + CIDEr (each x100)."""
    return float(sum(scores[m] for m in METRICS))
