"""Data loading rate vs the rate a training step consumes samples (target: at least 5x headroom).

Both sides use the quickstart recipe's real pieces in one process: the pre-training dataset
(store reads from an on-disk FeatureStore, tokenising, AGM plan, the seven task transforms,
collate) on one core with no workers, and the full objective's step (forward, backward, AdamW)
at the same batch size. If loading is N times faster than the step on one process, N - 1
spare cores' worth of slack remains, so data never holds training back.

    .venv/bin/python bench/bench_loading.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_all import REPO, Section, row  # noqa: E402

TEXTS = [
    "Long sleeve cotton poplin shirt in white. Spread collar. Button closure at front. Patch pocket at "
    "chest. Single-button barrel cuffs. Shirttail hem. Tonal stitching.",
    "Slim-fit stretch denim jeans in indigo. Fading and whiskering throughout. Five-pocket styling. "
    "Belt loops. Zip-fly. Logo patch at back waistband. Contrast stitching in tan.",
    "Lambskin biker jacket in black. Notched lapel collar. Asymmetric zip closure. Zippered pockets at "
    "front. Epaulets at shoulders. Zippered cuffs. Fully lined. Silver-tone hardware.",
    "Knit wool sweater in heather grey. Ribbed crewneck collar, cuffs, and hem. Dropped shoulders. "
    "Tonal stitching.",
]


def write_store(path: Path, n: int, feature_dim: int, seed: int = 0) -> None:
    """A FeatureStore of ``n`` rows of random features with the Kaleido layout (what prepare writes)."""
    from kaleido.data.rows import RowMeta
    from kaleido.features.store import ShardWriter, shard_name

    rng = np.random.default_rng(seed)
    grids = (1, 2, 3, 4, 5)
    p = sum(g * g for g in grids)
    spec = {"grids": list(grids), "patches": p, "feature_dim": feature_dim, "grey": 16, "dtype": "float16"}
    writer = ShardWriter(path / shard_name(0, 1), "bench", spec, capacity=n)
    chunk = 64
    for start in range(0, n, chunk):
        k = min(chunk, n - start)
        rows = {"features": rng.normal(size=(k, p, feature_dim)).astype(np.float16),
                "rotations": rng.normal(size=(k, 3, feature_dim)).astype(np.float16),
                "grey": rng.normal(size=(k, 16, feature_dim)).astype(np.float16),
                "positions": rng.random(size=(k, p, 5)).astype(np.float32),
                "boxes": rng.random(size=(k, p, 4)).astype(np.float32),
                "source": np.arange(start, start + k, dtype=np.int64),
                "fallback": np.zeros(k, dtype=np.uint8)}
        metas = [RowMeta(i, TEXTS[i % len(TEXTS)], "TOPS", "SHIRTS", f"p{i // 2}", str(i % 2))
                 for i in range(start, start + k)]
        writer.commit(rows, metas, next_pos=start + k)
    writer.finish()


def measure(quick: bool) -> dict:
    import torch

    from kaleido.features.store import FeatureStore
    from kaleido.recipe import load_recipe
    from kaleido.training.build import build_pretraining
    from kaleido.training.trainer import seed_everything

    # --quick: one timed batch of each side (after one untimed step): the headroom is two orders of
    # magnitude above the 5x target, so repeats would not change the verdict
    batch, steps = (8, 1) if quick else (32, 8)
    recipe = load_recipe(REPO / "recipes" / "quickstart.toml")
    with tempfile.TemporaryDirectory() as tmp:
        write_store(Path(tmp) / "train", 4 * batch, 1280)
        store = FeatureStore(Path(tmp) / "train")
        seed_everything(0)
        objective, dataset = build_pretraining(recipe, store)
        order = np.random.default_rng(0).permutation(len(dataset))
        batches = []
        dataset.collate([dataset[int(i)] for i in order[:batch]])  # warm-up (tokenizer, page cache)
        start = time.perf_counter()
        for s in range(steps):
            idx = order[(s * batch) % len(order):][:batch]
            batches.append(dataset.collate([dataset[int(i)] for i in idx]))
        load_s = (time.perf_counter() - start) / steps
        objective.train()
        optimizer = torch.optim.AdamW(objective.parameters(), lr=1e-4)

        def step(b: dict) -> None:
            objective(b).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        step(batches[0])
        start = time.perf_counter()
        for b in batches:
            step(b)
        step_s = (time.perf_counter() - start) / len(batches)
    return {"batch": batch, "load_s": load_s, "step_s": step_s, "steps": steps}


def run(quick: bool) -> Section:
    m = measure(quick)
    load_rate, step_rate = m["batch"] / m["load_s"], m["batch"] / m["step_s"]
    return Section(
        title="Data loading headroom",
        command=f"bench/bench_loading.py{' --quick' if quick else ''}",
        rows=[row("loading (1 process, no workers), samples/s", load_rate,
                  "training step consumption, samples/s", step_rate, target=">= 5x")],
        notes=[f"quickstart recipe (MiniLM-L6, 48 text + 55 patches, 1280-d features, all seven tasks), "
               f"batch {m['batch']}, {m['steps']} batches each; step = forward + backward + AdamW, fp32"],
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    print(run(ap.parse_args().quick).markdown())
