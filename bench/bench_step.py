"""One pre-training step with all seven tasks vs the bare BERT encoder of the same shape.

Both sides run forward + backward (no optimiser step, no data loading) on the same device, in
train mode, interleaved in one process so machine load hits both alike; the medians are
compared. The Kaleido step's batch is a real collated batch of the pre-training dataset (random
features of the chosen size); the baseline is ``transformers.BertModel`` of the same config over
``input_ids`` of the same length (text + patches) and the same padding mask.

    .venv/bin/python bench/bench_step.py --batch 8 --feature-dim 1280 --repeats 15

Target (issue 4): ratio <= 1.2.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

ALL = ["amlm", "itm", "rr", "jps", "cp", "g2cm", "b2cm"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--text-len", type=int, default=64)
    parser.add_argument("--feature-dim", type=int, default=1280)
    parser.add_argument("--hidden", type=int, default=384)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps of each side first")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from fakes import TEXTS, FakeStore
    from transformers import BertModel

    from kaleido import registry
    from kaleido.maskers.agm import AGMMasker
    from kaleido.models.kaleido import Kaleido
    from kaleido.training.dataset import PretrainDataset
    from kaleido.training.objective import PretrainObjective

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    long_text = " ".join(TEXTS) * 2  # long enough to fill the text positions, as Fashion-Gen does
    store = FakeStore(n=args.batch, feature_dim=args.feature_dim, texts=[long_text], poses=1)
    factory = Kaleido(init="scratch", hidden_size=args.hidden, num_layers=args.layers, num_heads=args.heads,
                      intermediate_size=4 * args.hidden, max_text_len=args.text_len)
    model = factory.build(store.feature_dim, store.grids)
    tasks = {n: registry.tasks.get(n)() for n in ALL}
    dataset = PretrainDataset(store, model.tokenizer, AGMMasker(), tasks, max_text_len=args.text_len)
    t0 = time.perf_counter()
    batch = dataset.collate([dataset[i] for i in range(args.batch)])
    data_s = time.perf_counter() - t0
    objective = PretrainObjective(model, tasks).to(device).train()
    batch = {k: v.to(device) for k, v in batch.items()}

    bare = BertModel(model.bert.config).to(device).train()
    seq_len = args.text_len + model.num_patches
    ids = torch.randint(1000, 20000, (args.batch, seq_len), device=device)
    mask = torch.cat([batch["attention_mask"], torch.ones(args.batch, model.num_patches, dtype=torch.long,
                                                          device=device)], dim=1)

    def kaleido_step() -> None:
        objective.zero_grad(set_to_none=True)
        objective(batch).loss.backward()

    def bert_step() -> None:
        bare.zero_grad(set_to_none=True)
        out = bare(input_ids=ids, attention_mask=mask)
        (out.last_hidden_state.float().pow(2).mean() + out.pooler_output.float().pow(2).mean()).backward()

    def timed(fn) -> float:
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        return time.perf_counter() - start

    for _ in range(args.warmup):
        timed(kaleido_step), timed(bert_step)
    ours, base = [], []
    for _ in range(args.repeats):  # interleaved: load spikes hit both sides
        ours.append(timed(kaleido_step))
        base.append(timed(bert_step))
    k, b = statistics.median(ours), statistics.median(base)
    print(f"device {device}, threads {torch.get_num_threads()}, batch {args.batch}, sequence {seq_len} "
          f"(text {args.text_len} + {model.num_patches} patches), hidden {args.hidden}, "
          f"layers {args.layers}, feature_dim {args.feature_dim}, repeats {args.repeats} "
          f"(after {args.warmup} warm-up)")
    print(f"masked tokens in batch: {int((batch['amlm/labels'] != -100).sum())}; "
          f"dataset: {args.batch / data_s:.1f} examples/s in one process")
    print(f"kaleido step (7 tasks) fwd+bwd: median {k * 1e3:.1f} ms")
    print(f"bare BERT encoder      fwd+bwd: median {b * 1e3:.1f} ms")
    print(f"ratio {k / b:.3f} (target <= 1.2)")


if __name__ == "__main__":
    main()
