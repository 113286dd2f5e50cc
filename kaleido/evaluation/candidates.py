"""Retrieval candidate lists: per query product, one positive and N hard negatives, saved to JSON.

FashionBERT's protocol, which Kaleido-BERT follows: each query product gets one positive (its own
image-text pair) and N negatives drawn from *other products of the same sub-category*. Lists are
drawn from a seed and saved, so every model of an ablation is ranked on exactly the same lists.

Sampling rule (documented in docs/EVALUATION.md):

- query products are drawn uniformly without replacement among the split's products (at most
  ``queries`` of them); the query row is one pose of that product, drawn at random;
- negatives are distinct *products* (one random pose each), never the query's own product in any
  pose: first from the query's sub-category; when it has fewer than N other products, the rest
  comes from the same category; then from any product; each fallback is counted;
- when the whole split has fewer than N other products, the list is shorter (all of them) and the
  shortfall is counted: chance levels are computed from the actual list lengths.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kaleido.atomic import write_json

FORMAT = 1


@dataclass
class CandidateLists:
    """``lists[q]`` holds store rows; element 0 is the positive (the query row itself)."""

    seed: int
    negatives: int
    lists: list[list[int]]
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def queries(self) -> list[int]:
        return [c[0] for c in self.lists]

    def fingerprint(self) -> str:
        """A short hash of the lists themselves: two runs with the same one ranked the same pairs
        (what lets an ablation compare them query by query)."""
        rows = json.dumps([[int(r) for r in c] for c in self.lists]).encode()
        return hashlib.sha256(rows).hexdigest()[:16]

    def same_subcategory_share(self) -> float:
        """The share of the negatives drawn from the query's sub-category (the rest are the
        fallbacks counted in ``counts``: same category, then any product)."""
        negatives = sum(len(c) - 1 for c in self.lists)
        fallbacks = self.counts.get("from_category", 0) + self.counts.get("from_any", 0)
        return (negatives - fallbacks) / negatives if negatives else 0.0

    def to_json(self) -> dict:
        return {"format": FORMAT, "seed": self.seed, "negatives": self.negatives, "counts": self.counts,
                "lists": self.lists}

    @classmethod
    def from_json(cls, data: dict) -> CandidateLists:
        if data.get("format") != FORMAT:
            raise ValueError(f"candidate lists of format {data.get('format')!r}; expected {FORMAT}")
        return cls(int(data["seed"]), int(data["negatives"]), [list(map(int, c)) for c in data["lists"]],
                   dict(data.get("counts", {})))

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> CandidateLists:
        return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))


def build_candidates(product_ids: list[str] | np.ndarray, categories: list[str] | np.ndarray,
                     subcategories: list[str] | np.ndarray, queries: int = 1000, negatives: int = 100,
                     seed: int = 0) -> CandidateLists:
    """Draw the candidate lists over a split given each row's product, category and sub-category."""
    pids = np.asarray(product_ids).astype(str)
    cats, subs = np.asarray(categories).astype(str), np.asarray(subcategories).astype(str)
    if not (len(pids) == len(cats) == len(subs)):
        raise ValueError("product_ids, categories and subcategories must have one entry per row")
    if queries < 1 or negatives < 1:
        raise ValueError("queries and negatives must be at least 1")
    rng = np.random.default_rng(seed)
    rows_of: dict[str, list[int]] = defaultdict(list)
    for row, pid in enumerate(pids):
        rows_of[pid].append(row)
    products = sorted(rows_of)  # sorted: the draw must not depend on row order of equal products
    if len(products) < 2:
        raise ValueError(f"retrieval needs at least 2 products; the split has {len(products)}")
    # a product's category is the one of its first row (poses share it)
    cat_of = {p: cats[rows_of[p][0]] for p in products}
    sub_of = {p: (cat_of[p], subs[rows_of[p][0]]) for p in products}
    by_sub: dict[tuple[str, str], list[str]] = defaultdict(list)
    by_cat: dict[str, list[str]] = defaultdict(list)
    for p in products:
        by_sub[sub_of[p]].append(p)
        by_cat[cat_of[p]].append(p)

    counts = {"queries": 0, "from_category": 0, "from_any": 0, "short_lists": 0}
    chosen = rng.choice(len(products), size=min(queries, len(products)), replace=False)
    lists = []
    for qi in chosen:
        query = products[qi]
        picked: list[str] = []
        for pool, key in ((by_sub[sub_of[query]], None), (by_cat[cat_of[query]], "from_category"),
                          (products, "from_any")):
            need = negatives - len(picked)
            if need <= 0:
                break
            taken = set(picked) | {query}
            available = [p for p in pool if p not in taken]
            if not available:
                continue
            draw = [available[i] for i in rng.choice(len(available), size=min(need, len(available)),
                                                     replace=False)]
            if key is not None:
                counts[key] += len(draw)
            picked.extend(draw)
        if len(picked) < negatives:
            counts["short_lists"] += 1
        pose = rows_of[query][int(rng.integers(len(rows_of[query])))]
        negs = [rows_of[p][int(rng.integers(len(rows_of[p])))] for p in picked]
        lists.append([pose, *negs])
        counts["queries"] += 1
    return CandidateLists(seed=seed, negatives=negatives, lists=lists, counts=counts)
