"""The ``none`` aligner: no alignments at all (the alignment-guided masker then masks at random)."""

from __future__ import annotations

from pathlib import Path

from kaleido import registry
from kaleido.aligners.base import AlignSource, Pairs


@registry.aligners.register("none")
class NoAligner:
    """No token-patch alignments: every row gets an empty list."""

    def __init__(self) -> None:
        pass

    def key(self) -> dict:
        return {"name": "none"}

    def fit(self, train: AlignSource, workdir: Path, progress: bool = True) -> dict:
        return {"trained": False}

    def align(self, source: AlignSource, workdir: Path, progress: bool = True) -> tuple[list[Pairs], dict]:
        return [[] for _ in range(len(source))], {"rows": len(source), "aligned_rows": 0, "pairs": 0}
