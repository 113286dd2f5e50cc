"""One optimiser step of the real objective gives the same gradients and logged losses however the
global batch is split: one batch, micro-batches with uneven masked counts (one with none), 2 ranks."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
import torch
from fakes import FakeStore

from kaleido import registry
from kaleido.maskers.random import RandomMasker
from kaleido.models.kaleido import Kaleido
from kaleido.recipe.schema import PretrainSettings
from kaleido.tasks.amlm import IGNORE
from kaleido.training.dataset import PretrainDataset
from kaleido.training.distributed import DistInfo, ShardedBatches
from kaleido.training.logs import read_log
from kaleido.training.objective import PretrainObjective
from kaleido.training.trainer import Trainer, seed_everything

ALL = ["amlm", "itm", "rr", "jps", "cp", "g2cm", "b2cm"]
TINY = dict(init="scratch", hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, max_text_len=16,
            dropout=0.0)
GRIDS = (1, 2, 3, 4, 5)
ROWS, BATCH = 16, 8
# the first quarter of step 1's global batch: micro-batch 0 of grad_accum 2 (and rank 0's of 2
# ranks) holds these rows only, so it has nothing for AMLM, G2CM and B2CM to predict
QUIET = frozenset(ShardedBatches(ROWS, BATCH, seed=0).step_indices(0)[0][: BATCH // 2])


class QuietRows(PretrainDataset):
    """The rows in ``QUIET`` keep no AMLM / G2CM / B2CM targets (as an ITM negative's)."""

    def __getitem__(self, index):
        sample = super().__getitem__(index)
        if index in QUIET:
            sample.labels["amlm"]["labels"][:] = IGNORE
            for task in ("g2cm", "b2cm"):
                sample.labels[task]["valid"][:] = False
        return sample


def _build() -> tuple[PretrainObjective, QuietRows]:
    seed_everything(0)
    model = Kaleido(**TINY).build(16, GRIDS)
    tasks = {n: registry.tasks.get(n)() for n in ALL}
    store = FakeStore(n=ROWS, grids=GRIDS)
    dataset = QuietRows(store, model.tokenizer, RandomMasker(), tasks, max_text_len=16)
    return PretrainObjective(model, tasks), dataset


def _first_step(out: Path, grad_accum: int = 1, info: DistInfo | None = None) -> tuple[dict, dict]:
    """(every parameter's gradient before the optimiser step, the step's log entry)."""
    objective, dataset = _build()
    settings = PretrainSettings(batch_size=BATCH, grad_accum=grad_accum, max_steps=1, log_every=1,
                                checkpoint_every=1, clip_grad_norm=None, precision="fp32", tasks=ALL)
    trainer = Trainer(objective, dataset, settings, out, seed=0, info=info, progress=False,
                      tensorboard=False, plot=False)
    grads: dict[str, torch.Tensor] = {}
    step = trainer._optimizer_step

    def capture(model, *args):
        grads.update({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        return step(model, *args)

    trainer._optimizer_step = capture
    trainer.fit()
    entry = read_log(out / "log.jsonl")[0] if (out / "log.jsonl").is_file() else {}
    return grads, entry


def _rank(rank: int, folder: Path) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder / 'rendezvous'}", rank=rank, world_size=2)
    try:
        grads, entry = _first_step(folder / "ddp", info=DistInfo(rank=rank, world_size=2, backend="gloo"))
        torch.save({"grads": grads, "entry": entry}, folder / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _two_ranks(folder: Path) -> list[dict]:
    ctx = multiprocessing.get_context("fork")  # no second torch import: the ranks start in a blink
    procs = [ctx.Process(target=_rank, args=(r, folder)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    return [torch.load(folder / f"rank{r}.pt") for r in range(2)]


def _assert_same(grads: dict, reference: dict, what: str) -> None:
    """Equal up to float32 summation order: an element summed from large terms of both signs (a
    position embedding's gradient) keeps their rounding, ~2e-6 of the tensor's largest entry on an
    AVX-512 CPU, whatever its own size; a wrong split weights whole micro-batches, far above that."""
    assert grads.keys() == reference.keys(), what
    for name, grad in reference.items():
        atol = 1e-7 + 2e-5 * float(grad.abs().max())
        torch.testing.assert_close(grads[name], grad, rtol=1e-4, atol=atol, msg=f"{what}: {name}")


LOGGED = ("loss", "loss/amlm", "loss/g2cm", "loss/b2cm", "loss/itm", "loss/rr", "metric/amlm/acc")


def test_the_split_of_the_global_batch_changes_neither_gradients_nor_logged_losses(tmp_path, one_thread):
    objective, dataset = _build()
    parts = ShardedBatches(ROWS, BATCH, grad_accum=2).step_indices(0)
    micro = [dataset.collate([dataset[i] for i in part]) for part in parts]
    masked = [int((b["amlm/labels"] != IGNORE).sum()) for b in micro]
    patches = [int(b["g2cm/valid"].sum()) for b in micro]
    assert masked[0] == 0 and masked[1] > 0 and patches[0] == 0 and patches[1] > 0  # the uneven case
    # the reference: the whole global batch in one forward, each task's plain mean
    whole = dataset.collate([dataset[i] for part in parts for i in part])
    with torch.no_grad():
        expected = objective(whole)

    one_grads, one = _first_step(tmp_path / "one")
    assert one["loss/amlm"] == pytest.approx(expected.losses["amlm"].item(), rel=1e-5)
    assert one["loss/g2cm"] == pytest.approx(expected.losses["g2cm"].item(), rel=1e-5)
    assert one["loss"] == pytest.approx(expected.loss.item(), rel=1e-5)
    runs = {"grad_accum 2": _first_step(tmp_path / "a2", grad_accum=2),
            "grad_accum 4": _first_step(tmp_path / "a4", grad_accum=4)}
    ranks = _two_ranks(tmp_path)
    runs["2 ranks"] = ranks[0]["grads"], ranks[0]["entry"]
    _assert_same(ranks[1]["grads"], ranks[0]["grads"], "rank 1 vs rank 0")
    for what, (grads, entry) in runs.items():
        _assert_same(grads, one_grads, what)
        for key in LOGGED:
            assert entry[key] == pytest.approx(one[key], rel=1e-5), (what, key)


def test_an_objective_without_counts_is_averaged_over_its_micro_batches(tmp_path, one_thread):
    """The generic fallback: per-row means of equal micro-batches, divided by ``grad_accum``
    (gradients compared before the optimiser step, unclipped: AdamW would hide a scale)."""
    from kaleido.training.toy import ToyDataset, ToyObjective

    class NoCounts(ToyObjective):
        counts = None

    def run(objective_cls, out, accum):
        seed_everything(0)
        settings = PretrainSettings(batch_size=16, grad_accum=accum, max_steps=1, log_every=1,
                                    clip_grad_norm=None)
        trainer = Trainer(objective_cls(dropout=0.0), ToyDataset(64), settings, out, progress=False,
                          tensorboard=False, plot=False, find_unused_parameters=False)
        grads: dict[str, torch.Tensor] = {}
        step = trainer._optimizer_step

        def capture(model, *args):
            grads.update({n: p.grad.clone() for n, p in model.named_parameters()})
            return step(model, *args)

        trainer._optimizer_step = capture
        trainer.fit()
        return grads, read_log(out / "log.jsonl")[0]

    ref_grads, ref = run(ToyObjective, tmp_path / "ref", 1)
    for cls, accum in ((ToyObjective, 4), (NoCounts, 1), (NoCounts, 4)):
        grads, entry = run(cls, tmp_path / f"{cls.__name__}{accum}", accum)
        _assert_same(grads, ref_grads, f"{cls.__name__} x{accum}")
        assert entry["loss"] == pytest.approx(ref["loss"], rel=1e-5)


def test_a_micro_batch_with_nothing_masked_still_reaches_every_head_parameter(one_thread):
    """DDP without ``find_unused_parameters`` needs every parameter in the graph on every rank:
    the empty AMLM / G2CM / B2CM paths include every parameter of their heads (at zero)."""
    objective, dataset = _build()
    batch = dataset.collate([dataset[i] for i in sorted(QUIET)])
    assert not (batch["amlm/labels"] != IGNORE).any() and not batch["g2cm/valid"].any()
    objective(batch).loss.backward()
    for task in ("amlm", "g2cm", "b2cm"):
        for name, param in objective.heads[task].named_parameters():
            assert param.grad is not None, f"{task}: {name}"
            assert not param.grad.any(), f"{task}: {name}"
