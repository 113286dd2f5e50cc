"""Retrieval scoring throughput (pairs/s) against the bare model forward of the same batches.

Both sides run in one process on the same machine: ``score_lists`` (store reads, tokenising,
batching, the ITM head, grouping) and a loop of ``model(batch)`` over the very batches it builds,
prepared beforehand (so the baseline pays nothing but the encoder). Target: ratio >= 0.8.

    .venv/bin/python bench/bench_retrieval.py [--lists 8] [--candidates 51] [--batch 64]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from kaleido.data.rows import RowMeta
from kaleido.evaluation.candidates import build_candidates
from kaleido.evaluation.scoring import list_pairs, score_lists
from kaleido.features.store import FeatureStore, ShardWriter, shard_name
from kaleido.models.kaleido import Kaleido
from kaleido.tasks.itm import ITMTask
from kaleido.training.dataset import encode_pairs
from kaleido.training.objective import PretrainObjective

GRIDS = (1, 2, 3, 4, 5)


def make_store(folder: Path, rows: int, dim: int) -> FeatureStore:
    rng = np.random.default_rng(0)
    p = sum(g * g for g in GRIDS)
    spec = {"grids": list(GRIDS), "patches": p, "feature_dim": dim, "grey": 16, "dtype": "float16"}
    metas = [RowMeta(index=i, text=f"product {i} slim fit cotton shirt with long sleeves and buttons",
                     category="tops", subcategory="shirts", product_id=str(i), pose="0") for i in range(rows)]
    w = ShardWriter(folder / shard_name(0, 1), "bench", spec, capacity=rows)
    w.commit({"features": rng.normal(size=(rows, p, dim)), "rotations": np.zeros((rows, 3, dim)),
              "grey": np.zeros((rows, 16, dim)), "positions": rng.random((rows, p, 5)),
              "boxes": np.zeros((rows, p, 4)), "source": np.arange(rows), "fallback": np.zeros(rows)},
             metas, rows)
    w.finish()
    return FeatureStore(folder)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lists", type=int, default=8)
    ap.add_argument("--candidates", type=int, default=51)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--dim", type=int, default=1280)
    args = ap.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        store = make_store(Path(tmp), args.lists * args.candidates, args.dim)
        model = Kaleido(init="minilm").build(args.dim, GRIDS).eval()
        objective = PretrainObjective(model, {"itm": ITMTask()}).eval()
        tok = model.tokenizer
        lists = build_candidates(store.product_ids(), ["tops"] * len(store), ["shirts"] * len(store),
                                 queries=args.lists, negatives=args.candidates - 1, seed=0).lists

        def encode(s, t, i):
            return encode_pairs(s, tok, t, i, model.max_text_len)

        # the baseline's batches: exactly the pairs score_lists forms, built before timing
        texts = np.concatenate([list_pairs(lst)[0] for lst in lists])
        images = np.concatenate([list_pairs(lst)[1] for lst in lists])
        batches = [encode(store, texts[b:b + args.batch], images[b:b + args.batch])
                   for b in range(0, len(texts), args.batch)]
        with torch.inference_mode():
            model(batches[0])  # warm-up
            t0 = time.perf_counter()
            for batch in batches:
                model(batch)
            bare = time.perf_counter() - t0
        t0 = time.perf_counter()
        match = objective.match_scores
        _, _, stats = score_lists(lists, store, encode, match, args.batch, chunk_pairs=1 << 20)
        ours = time.perf_counter() - t0
    n = len(texts)
    assert stats["pairs"] == n
    print(f"machine: {platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}")
    print(f"pairs {n} (lists {args.lists} x {args.candidates} candidates), batch {args.batch}, "
          f"MiniLM-L6-H384, 55 patches x {args.dim}")
    print(f"bare model forward: {n / bare:8.1f} pairs/s")
    print(f"retrieval scoring:  {n / ours:8.1f} pairs/s")
    print(f"ratio: {bare / ours:.3f} (target >= 0.8)")


if __name__ == "__main__":
    main()
