"""Word normalisation and the captioner's word vocabulary.

The captioner speaks whole words, the pre-training model WordPieces. Both sides go through the
same :func:`normalise` so that a generated word can be matched to the words of the original
description, and :func:`word_spans` keeps each word's character span so that it can be mapped to
the tokenizer's wordpieces through their offsets.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# Runs of letters or digits: BERT's basic tokenizer splits on everything else (punctuation,
# spaces), so every such run is covered exactly by one or more wordpieces.
_WORD = re.compile(r"[^\W_]+", re.UNICODE)

PAD, START, END, UNK = "<pad>", "<start>", "<end>", "<unk>"
SPECIALS = (PAD, START, END, UNK)

# Function words carry no place in the image; aligning them would only feed the masker noise.
# Nor do the words for whom a product is (catalogue titles start "Lee Men Blue ... Jeans"): on
# the real myntra-500 titles "men" and "women" were the two most aligned words (157 and 73 of
# the train split's pairs), each pinned to whatever patch the captioner looked at.
STOPWORDS = frozenset(
    "a an the and or of with in on at to for from by as is are this that its it into onto "
    "over under up s "
    "men man mens women woman womens boys boy girls girl kids kid unisex baby babies".split()
)


def normalise(word: str) -> str:
    """Lower-case and strip accents (what bert-base-uncased does to its input)."""
    decomposed = unicodedata.normalize("NFKD", word)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def word_spans(text: str) -> list[tuple[str, int, int]]:
    """(normalised word, start, end) of every word of ``text``, in order."""
    return [(normalise(m.group()), m.start(), m.end()) for m in _WORD.finditer(text)]


def words(text: str) -> list[str]:
    """The normalised words of ``text``."""
    return [w for w, _, _ in word_spans(text)]


@dataclass
class Vocab:
    """Word <-> id; ids 0..3 are ``<pad> <start> <end> <unk>``."""

    itos: list[str]

    def __post_init__(self) -> None:
        if tuple(self.itos[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a vocabulary must start with {SPECIALS}")
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    pad = property(lambda self: 0)
    start = property(lambda self: 1)
    end = property(lambda self: 2)
    unk = property(lambda self: 3)

    def __len__(self) -> int:
        return len(self.itos)

    @classmethod
    def build(cls, texts: Iterable[str], min_count: int = 2, max_size: int = 5000) -> Vocab:
        """The most frequent words of the training descriptions (ties broken alphabetically)."""
        counts = Counter(w for text in texts for w in words(text))
        kept = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        return cls([*SPECIALS, *kept[: max(0, max_size - len(SPECIALS))]])

    def encode(self, text: str, max_len: int) -> list[int]:
        """``<start> w1 .. wn <end>`` with at most ``max_len`` words."""
        ids = [self.stoi.get(w, self.unk) for w in words(text)[:max_len]]
        return [self.start, *ids, self.end]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Words up to the first ``<end>``, specials dropped."""
        out = []
        for i in ids:
            if i == self.end:
                break
            if i >= len(SPECIALS):
                out.append(self.itos[i])
        return out

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.itos), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Vocab:
        return cls(json.loads(Path(path).read_text(encoding="utf-8")))
