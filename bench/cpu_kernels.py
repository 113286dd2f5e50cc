"""Two CPU kernel choices behind the quickstart's speed, each measured side by side (a study: not
part of ``run_all.py``; its figures are quoted in docs/PERFORMANCE.md and the quickstart recipe).

1. AdamW over the quickstart objective's parameters (MiniLM's first 3 layers, the Kaleido image
   embeddings and all seven heads): torch's per-tensor loop (its CPU default), ``foreach`` and the
   fused kernel (what :func:`kaleido.training.optim.fused` asks for).
2. One layer's attention, forward + backward, at the quickstart's shape (batch 32, 12 heads,
   ~20 text + 55 patch positions, head size 32, a padding mask) with dropout 0.1 on the attention
   probabilities and without (``[model] attention_dropout``).

    .venv/bin/python bench/cpu_kernels.py [--repeats 10]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F


def best_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: first-call allocations
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def quickstart_parameters() -> list[torch.nn.Parameter]:
    """The parameters the quickstart's pre-training optimises (offline MiniLM weights)."""
    from kaleido import registry
    from kaleido.models.kaleido import Kaleido
    from kaleido.training.objective import PretrainObjective

    model = Kaleido(init="minilm", keep_layers=3, max_text_len=48).build(1280, (1, 2, 3, 4, 5))
    tasks = {n: registry.tasks.get(n)() for n in ("amlm", "itm", "rr", "jps", "cp", "g2cm", "b2cm")}
    return [p for p in PretrainObjective(model, tasks).parameters() if p.requires_grad]


def adamw_rows(repeats: int) -> list[tuple[str, float]]:
    params = quickstart_parameters()
    for p in params:
        p.grad = torch.randn_like(p)
    rows = []
    for name, kwargs in (("per-tensor loop (torch's CPU default)", {"foreach": False}),
                         ("foreach", {"foreach": True}), ("fused", {"fused": True})):
        optimizer = torch.optim.AdamW(params, lr=1e-4, **kwargs)
        rows.append((name, best_ms(optimizer.step, repeats)))
    count = sum(p.numel() for p in params)
    print(f"AdamW step over the quickstart's {count / 1e6:.1f}M parameters, best of {repeats}:")
    return rows


def attention_rows(repeats: int, batch: int = 32, heads: int = 12, seq: int = 75, dim: int = 32):
    torch.manual_seed(0)
    q, k, v = (torch.randn(batch, heads, seq, dim, requires_grad=True) for _ in range(3))
    keep = torch.ones(batch, seq, dtype=torch.bool)
    keep[:, 15:20] = False  # text padding of the shorter descriptions
    mask = keep[:, None, None, :].expand(batch, 1, seq, seq)

    def step(p: float) -> Callable[[], None]:
        return lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p).sum().backward()

    print(f"one layer's attention forward + backward ({batch} x {heads} heads x {seq} positions x {dim}), "
          f"best of {repeats}:")
    return [("dropout 0.1", best_ms(step(0.1), repeats)), ("dropout 0", best_ms(step(0.0), repeats))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for measure in (adamw_rows, attention_rows):
        rows = measure(args.repeats)
        baseline = rows[0][1]
        for name, ms in rows:
            print(f"  {name:40s} {ms:8.1f} ms  {ms / baseline:.2f}x the first")


if __name__ == "__main__":
    main()
