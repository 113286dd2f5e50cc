"""The WordPiece tokenizer every stage shares (the aligner's token positions depend on it)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from kaleido.weights import local_file, minilm_dir


def bert_dir(init: str) -> Path:
    """Resolve a model's ``init``: ``"minilm"`` (the offline default), ``"scratch"`` (random
    weights, MiniLM's bert-base-uncased vocabulary) or a local BERT folder."""
    if init in ("minilm", "scratch"):
        return minilm_dir()
    return local_file(init, "BERT")


@lru_cache(maxsize=8)
def load_tokenizer(init: str = "minilm"):
    """A fast BERT tokenizer from a local folder; never fetched from a hub."""
    from transformers import BertTokenizerFast

    return BertTokenizerFast.from_pretrained(str(bert_dir(init)), local_files_only=True)
