"""A tiny two-task objective and dataset with the trainer's interface, for tests and benchmarks.

It exercises everything the trainer relies on (per-task losses and metrics, dropout drawn from
the global RNG, a collate, ``set_epoch``, ``save``) in milliseconds, so the DDP, resume and
non-finite tests run without features or a BERT. ``python -m kaleido.training.toy`` trains it
under torchrun the same way ``kaleido.training.main`` trains the real model.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn


@dataclass
class ToyOutput:
    loss: torch.Tensor
    losses: dict[str, torch.Tensor] = field(default_factory=dict)
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)


class ToyDataset:
    """``n`` samples, each a pure function of (seed, epoch, index): features, a target, a class."""

    def __init__(self, n: int = 256, dim: int = 16, seed: int = 0) -> None:
        self.n, self.dim, self.seed, self.epoch = n, dim, seed, 0
        gen = torch.Generator().manual_seed(seed)
        self.w = torch.randn(dim, generator=gen)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        x = torch.randn(self.dim, generator=gen)
        noise_gen = torch.Generator().manual_seed(self.seed + 17 * self.epoch + 31 * index)
        noise = torch.randn((), generator=noise_gen)
        y = (x @ self.w).tanh() + 0.05 * noise  # epoch-dependent noise: set_epoch matters
        return {"x": x, "y": y, "c": (x[0] > 0).long(), "index": torch.tensor(index)}

    def collate(self, samples: list[dict]) -> dict[str, torch.Tensor]:
        return {k: torch.stack([s[k] for s in samples]) for k in samples[0]}


class ToyObjective(nn.Module):
    """A regression task ``reg`` and a 2-way classification task ``cls`` on one MLP trunk.

    ``nan_from_call`` makes ``cls`` non-finite from that forward call on (a fault injector).
    """

    def __init__(self, dim: int = 16, hidden: int = 32, dropout: float = 0.1, nan_from_call: int = 0) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                   nn.LayerNorm(hidden))
        self.reg = nn.Linear(hidden, 1)
        self.cls = nn.Linear(hidden, 2)
        self.nan_from_call = nan_from_call
        self.calls = 0

    def counts(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Both losses are means over the rows (see ``PretrainObjective.counts``)."""
        rows = torch.tensor(len(batch["x"]))
        return {"reg": rows, "cls": rows}

    def forward(self, batch: dict[str, torch.Tensor],
                loss_scale: dict[str, torch.Tensor] | None = None) -> ToyOutput:
        self.calls += 1
        h = self.trunk(batch["x"])
        reg = nn.functional.mse_loss(self.reg(h).squeeze(-1), batch["y"])
        logits = self.cls(h)
        cls = nn.functional.cross_entropy(logits, batch["c"])
        if self.nan_from_call and self.calls >= self.nan_from_call:
            cls = cls * float("nan")
        acc = (logits.argmax(-1) == batch["c"]).float().mean()
        if loss_scale is not None:
            reg, cls, acc = reg * loss_scale["reg"], cls * loss_scale["cls"], acc * loss_scale["cls"]
        return ToyOutput(loss=reg + cls, losses={"reg": reg, "cls": cls}, metrics={"cls/acc": acc})

    def save(self, folder: Path) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.contiguous() for k, v in self.state_dict().items()}
        save_file(tensors, str(folder / "model.safetensors"))


def main(argv: list[str] | None = None) -> None:
    """Train the toy under the current (torchrun or single) process layout."""
    from kaleido.recipe.schema import PretrainSettings
    from kaleido.training.distributed import init_from_env, shutdown
    from kaleido.training.trainer import Trainer, seed_everything

    ap = argparse.ArgumentParser(prog="python -m kaleido.training.toy")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--settings", default="{}", help="PretrainSettings fields as JSON")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--hidden", type=int, default=32)
    args = ap.parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as torchrun's OMP_NUM_THREADS=1, so one and two ranks compute alike
    info = init_from_env("cpu")
    try:
        seed_everything(args.seed)
        objective = ToyObjective(hidden=args.hidden, dropout=args.dropout)
        settings = PretrainSettings(**json.loads(args.settings))
        Trainer(objective, ToyDataset(args.n, seed=args.seed), settings, args.out, seed=args.seed, info=info,
                progress=False, tensorboard=False, find_unused_parameters=False, plot=False).fit()
    finally:
        shutdown(info)
        torch.set_num_threads(threads)


if __name__ == "__main__":
    main()
