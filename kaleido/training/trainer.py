"""The pre-training loop: DDP, gradient accumulation, clipping, mixed precision, exact resume.

The trainer knows nothing about Kaleido-BERT: it drives any *objective* (an ``nn.Module`` with
``objective(batch) -> ObjectiveOutput(loss, losses, metrics)`` and ``save(folder)``; with
``counts(batch) -> {task: items}`` it is called ``objective(batch, loss_scale={task: n * W / N})``
so that every task's loss is its global-batch mean, see :meth:`Trainer._loss_scales`) over any
map-style *dataset* (``set_epoch(e)``, ``collate(samples)``, deterministic per seed, epoch and
index). Everything that decides the next step (weights, optimiser, scheduler, scaler, every RNG
of every rank, and the position in the data) is checkpointed, so a killed run restarted from
its latest checkpoint ends with the same weights as an uninterrupted one.

Test hook: ``KALEIDO_KILL_AT_STEP=k`` makes the process SIGKILL itself right after optimiser
step ``k`` (before that step's log or checkpoint), to test recovery from a hard crash.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import signal
import time
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import TimeElapsedColumn
from torch import nn

from kaleido.atomic import atomic_folder, write_json
from kaleido.progress import bar
from kaleido.recipe.load import RUNTIME_FIELDS
from kaleido.recipe.schema import PretrainSettings
from kaleido.training import checkpoint as ckpt
from kaleido.training.compile import compile_module
from kaleido.training.distributed import DistInfo, ShardedBatches, all_gather_objects, all_reduce_sum, barrier
from kaleido.training.logs import RunLog, read_log
from kaleido.training.optim import build_optimizer, build_scheduler, warmup_steps

log = logging.getLogger(__name__)

KILL_ENV = "KALEIDO_KILL_AT_STEP"
DONE_FILE = "done.json"


# [pretrain] settings that may change when a run resumes: how it runs (RUNTIME_FIELDS), the
# micro-batch split (losses are global-batch means, so the gradient does not depend on it), and
# epochs / max_steps, which count through ``total_steps``.
RESUMABLE = frozenset(RUNTIME_FIELDS["pretrain"] | {"grad_accum", "epochs", "max_steps"})


def _plain(value: Any) -> Any:
    """``value`` as JSON has it (tuples become lists), so stored and current compare alike."""
    return json.loads(json.dumps(value, default=str))


class NonFiniteLoss(RuntimeError):
    """The loss (or the gradient) became NaN or infinite; the step was not applied."""


@dataclass
class TrainResult:
    steps: int
    total_steps: int
    resumed_from: int
    last: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0


def to_device(batch: Any, device: torch.device, non_blocking: bool = False) -> Any:
    """Move every tensor of a (nested) batch to ``device``; other values are left as they are."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, dict):
        return {k: to_device(v, device, non_blocking) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(to_device(v, device, non_blocking) for v in batch)
    return batch


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` is bf16 on a CUDA device that has it (fp16 with a grad scaler on older ones) and
    fp32 on CPU; fp16 needs CUDA."""
    if precision == "auto":
        if device.type != "cuda":
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("pretrain.precision = 'fp16' needs a CUDA device; use 'fp32' or 'bf16' on CPU")
    return precision


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """Pre-train ``objective`` on ``dataset`` with the recipe's ``[pretrain]`` settings.

    ``out_dir`` receives ``checkpoints/``, ``log.jsonl``, ``tb/``, ``model/``, ``loss.png`` and,
    last of all, ``done.json``. Only rank 0 writes; logged values are averaged over ranks.

    Each checkpoint stores what shaped the run (:meth:`identity`: the seed, the step count, the
    ``[pretrain]`` settings but the :data:`RESUMABLE` ones, plus the caller's ``identity``, e.g.
    the masker, model and tasks); a resume refuses a checkpoint whose values differ, in one line
    naming them and ending with ``restart_hint`` (how this entry point starts over).
    """

    def __init__(self, objective: nn.Module, dataset: Any, settings: PretrainSettings, out_dir: Path, *,
                 seed: int = 0, info: DistInfo | None = None, progress: bool = True,
                 tensorboard: bool = True, find_unused_parameters: bool = True,
                 plot: bool = True, identity: dict[str, Any] | None = None,
                 restart_hint: str | None = None) -> None:
        self.find_unused_parameters, self.plot = find_unused_parameters, plot
        self.objective, self.dataset, self.s = objective, dataset, settings
        self.out_dir, self.seed = Path(out_dir), seed
        self.info = info or DistInfo()
        self.progress, self.tensorboard = progress, tensorboard
        self.ckpt_dir = self.out_dir / "checkpoints"
        n = len(dataset)
        probe = ShardedBatches(n, settings.batch_size, world_size=self.info.world_size,
                               grad_accum=settings.grad_accum)  # validates the batch arithmetic
        self.steps_per_epoch = probe.steps_per_epoch
        if settings.max_steps is not None:
            self.total_steps = settings.max_steps
        else:
            self.total_steps = max(1, math.ceil(settings.epochs * self.steps_per_epoch))
        self.precision = resolve_precision(settings.precision, self.info.device)
        self._keys: list[str] | None = None
        self.extra_identity = dict(identity or {})
        self.restart_hint = restart_hint or f"remove {self.ckpt_dir} to start over"

    def identity(self) -> dict[str, Any]:
        """What shaped this run, as stored in its checkpoints: ``{dotted name: value}``."""
        fields = self.s.model_dump(mode="json")
        out: dict[str, Any] = {"seed": self.seed, "total_steps": self.total_steps}
        out.update({f"pretrain.{k}": v for k, v in fields.items() if k not in RESUMABLE})
        out["pretrain.precision"] = self.precision  # as resolved: "auto" is bf16 on CUDA, fp32 on CPU
        out.update(self.extra_identity)
        return _plain(out)

    # -- pieces ----------------------------------------------------------------------------
    def _loader(self, epoch: int, start_step: int) -> torch.utils.data.DataLoader:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        sampler = ShardedBatches(len(self.dataset), self.s.batch_size, world_size=self.info.world_size,
                                 rank=self.info.rank, grad_accum=self.s.grad_accum, seed=self.seed,
                                 epoch=epoch, start_step=start_step)
        collate = getattr(self.dataset, "collate", None)
        # An explicit generator: building a loader must not draw from the global RNG that dropout
        # uses, or a resumed run would drift from an uninterrupted one.
        gen = torch.Generator().manual_seed(self.seed * 7919 + epoch)
        return torch.utils.data.DataLoader(
            self.dataset, batch_sampler=sampler, collate_fn=collate, num_workers=self.s.num_workers,
            pin_memory=self.info.device.type == "cuda", generator=gen,
        )

    def _autocast(self):
        if self.precision == "fp32":
            return nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.info.device.type, dtype=dtype)

    def _reduce(self, values: Mapping[str, float | torch.Tensor]) -> dict[str, float]:
        """Average each logged value over the ranks that reported it (one small all-reduce)."""
        if self._keys is None:
            names = all_gather_objects(self.info, sorted(values))
            self._keys = sorted({k for part in names for k in part})
        keys = self._keys
        dev = self.info.device
        vec = torch.zeros(2 * len(keys), dtype=torch.float64, device=dev)
        for i, key in enumerate(keys):
            if key in values:
                vec[i] = torch.as_tensor(values[key], dtype=torch.float64, device=dev)
                vec[len(keys) + i] = 1.0
        all_reduce_sum(self.info, vec)
        out = vec.tolist()
        return {k: out[i] / out[len(keys) + i] for i, k in enumerate(keys) if out[len(keys) + i] > 0}

    def _state(self, model: nn.Module, optimizer, scheduler, scaler, step: int,
               window: _Window) -> dict[str, Any]:
        return {
            "step": step,
            "epoch": step // self.steps_per_epoch,
            "step_in_epoch": step % self.steps_per_epoch,
            "total_steps": self.total_steps,
            "global_batch": self.s.batch_size,
            "world_size": self.info.world_size,
            "seed": self.seed,
            "identity": self.identity(),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "window": window.state(),  # the steps since the last log entry: it spans the resume
            "rng": None,  # filled with every rank's RNG state by _save
        }

    def _save(self, model, optimizer, scheduler, scaler, step: int, window: _Window) -> None:
        rngs = all_gather_objects(self.info, ckpt.rng_state())
        if self.info.is_main:
            state = self._state(model, optimizer, scheduler, scaler, step, window)
            state["rng"] = rngs
            ckpt.save_checkpoint(self.ckpt_dir, step, state, keep=self.s.keep_last)
        barrier(self.info)

    def _resume(self, model, optimizer, scheduler, scaler, window: _Window) -> int:
        # Rank 0 picks the step (the newest checkpoint it can read); every rank then loads exactly
        # that one: ranks that each picked their own "latest" (a file not yet visible, or one
        # unreadable on one node) would train on from different steps and states.
        found = ckpt.load_latest(self.ckpt_dir) if self.info.is_main else None
        step = int(all_gather_objects(self.info, found[0] if found else 0)[0])
        if step == 0:
            return 0
        if found is not None:
            state = found[1]
        else:
            path = ckpt.checkpoint_path(self.ckpt_dir, step)
            try:
                state = torch.load(path, map_location="cpu", weights_only=False)
            except Exception as exc:  # any failure to read it is the same error here
                raise ckpt.CheckpointError(
                    f"rank {self.info.rank} cannot read {path}, the checkpoint rank 0 resumes from "
                    f"({type(exc).__name__}: {exc}); every rank needs the same checkpoint folder") from None
        self._check_identity(state, step)
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
        except (RuntimeError, ValueError, KeyError) as exc:  # another model's weights, other groups
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ckpt.CheckpointError(
                f"{self.ckpt_dir}: the checkpoint at step {step} does not fit this objective "
                f"({type(exc).__name__}: {first}); {self.restart_hint}") from None
        if state.get("window") is not None:  # older checkpoints: the first entry covers fewer steps
            window.load(state["window"])
        rngs = state["rng"]
        if len(rngs) == self.info.world_size:
            ckpt.set_rng_state(rngs[self.info.rank])
        else:  # another number of ranks: the data order still matches, dropout draws cannot
            log.warning("resuming %d ranks from a %d-rank checkpoint: RNG streams are reseeded",
                        self.info.world_size, len(rngs))
            seed_everything(self.seed * 1000 + step + self.info.rank)
        if self.info.is_main:
            log.info("resumed from %s at step %d", self.ckpt_dir, step)
        return step

    def _check_identity(self, state: dict[str, Any], step: int) -> None:
        """Refuse a checkpoint of another run (one line naming every differing value)."""
        current, stored = self.identity(), state.get("identity")
        if stored is None:  # written before checkpoints said what shaped them
            stored = {"pretrain.batch_size": state.get("global_batch")}
            log.warning("%s: the checkpoint at step %d does not record its recipe; only its global batch "
                        "is checked", self.ckpt_dir, step)
            keys = sorted(stored)
        else:
            keys = sorted(set(stored) | set(current))
        missing = object()
        diffs = [k for k in keys if stored.get(k, missing) != current.get(k, missing)]
        if not diffs:
            return
        # a value one side lacks (a dropped task's weight) is explained by one both have (the list)
        diffs = [k for k in diffs if k in stored and k in current] or diffs
        shown = "; ".join(f"{k} was {stored.get(k, 'unset')!r}, now {current.get(k, 'unset')!r}"
                          for k in diffs[:6])
        more = f" (and {len(diffs) - 6} more)" if len(diffs) > 6 else ""
        raise ckpt.CheckpointError(
            f"{self.ckpt_dir}: the checkpoint at step {step} belongs to another run: {shown}{more}; "
            f"set them back to resume, or {self.restart_hint}")

    def _last_logged(self) -> dict[str, float]:
        """The last log entry's values: a run killed after its final checkpoint but before
        ``done.json`` resumes at the end and trains no step, so its window is empty."""
        path = self.out_dir / "log.jsonl"
        entries = read_log(path) if self.info.is_main and path.is_file() else []
        return {k: v for k, v in entries[-1].items() if k not in _Window.BOOKKEEPING} if entries else {}

    def _finish(self, model: nn.Module, result: TrainResult) -> None:
        """Rank 0: save the model atomically, draw the loss curves, then mark the stage done."""
        if not self.info.is_main:
            return
        if hasattr(model, "save"):
            with atomic_folder(self.out_dir / "model") as tmp:
                model.save(tmp)
        if self.plot:
            try:
                from kaleido.training.plot import plot_losses

                plot_losses(self.out_dir / "log.jsonl")
            except (ValueError, FileNotFoundError) as exc:  # a run too short to log: no curve
                log.warning("no loss plot: %s", exc)
        done = {"steps": result.steps, "total_steps": result.total_steps, "resumed_from": result.resumed_from,
                "wall_s": round(result.wall_s, 2), "last": result.last}
        write_json(self.out_dir / DONE_FILE, done, indent=2)

    def _loss_scales(self, micro_batches: list[Any]) -> list[dict[str, torch.Tensor]] | None:
        """Per micro-batch and task, ``n * world_size / N``: the micro-batch's item count (from
        the objective's ``counts``, read on the CPU before any forward) over the count of the
        whole global batch (every micro-batch of the step, every rank: one small all-reduce).

        A task's mean times this is its sum over the global count, times the world size that
        DDP's gradient averaging divides out again: the gradient (and the logged loss) is the
        global batch's mean whatever its split into micro-batches and ranks, a micro-batch with
        nothing masked included. None when the objective has no ``counts`` (its losses are then
        taken as per-row means of equal micro-batches and divided by ``grad_accum``)."""
        counts = getattr(self.objective, "counts", None)
        if counts is None:
            return None
        per_micro = [counts(batch) for batch in micro_batches]
        names = list(per_micro[0])
        local = torch.tensor([[float(c[n]) for n in names] for c in per_micro], dtype=torch.float64)
        if self.info.device.type == "cuda":  # NCCL reduces device tensors, and a compiled step would
            # copy 0-dim CPU scales to the device one by one, each copy waiting for the GPU queue
            local = local.pin_memory().to(self.info.device, non_blocking=True)  # pinned: no host sync
        total = all_reduce_sum(self.info, local.sum(0))
        scale = (local * self.info.world_size / total.clamp(min=1.0)).float()
        return [{n: scale[m, i] for i, n in enumerate(names)} for m in range(len(micro_batches))]

    def _forward_backward(self, ddp: nn.Module, scaler, batches) -> tuple[dict[str, float], float, int]:
        """The ``grad_accum`` micro-steps of one optimiser step: (rank-averaged values, data wait, rows)."""
        info, accum = self.info, self.s.grad_accum
        local: dict[str, torch.Tensor] = {}
        tw = time.perf_counter()
        micro_batches = [next(batches) for _ in range(accum)]  # all of the step's, to count first
        wait = time.perf_counter() - tw
        scales = self._loss_scales(micro_batches)
        div = 1 if scales is not None else accum
        rows = 0
        for micro, batch in enumerate(micro_batches):
            rows += _batch_size(batch)
            batch = to_device(batch, info.device, non_blocking=info.device.type == "cuda")
            kwargs = {} if scales is None else {"loss_scale": scales[micro]}
            # gradients are all-reduced once per optimiser step, on the last micro-step
            last_micro = micro == accum - 1 or not info.distributed
            with nullcontext() if last_micro else ddp.no_sync():
                with self._autocast():
                    out = ddp(batch, **kwargs)
                scaler.scale(out.loss / div).backward()
            parts = {"loss": out.loss}
            parts.update({f"loss/{k}": v for k, v in out.losses.items()})
            parts.update({f"metric/{k}": v for k, v in out.metrics.items()})
            for k, v in parts.items():
                v = v.detach().float() / div
                local[k] = local[k] + v if k in local else v
            micro_batches[micro] = None  # let the step's CPU batches go as they are used
        return self._reduce(local), wait, rows

    def _check_finite(self, values: dict[str, float], step: int) -> None:
        bad = [k for k, v in values.items() if k.startswith("loss") and not math.isfinite(v)]
        if bad:
            tasks = [k.split("/", 1)[1] for k in bad if "/" in k] or ["total"]
            raise NonFiniteLoss(f"non-finite loss in task {', '.join(tasks)} at step {step}; the step was "
                                f"not applied; the last good checkpoint stays in {self.ckpt_dir}")

    def _optimizer_step(self, model: nn.Module, optimizer, scheduler, scaler, step: int) -> float:
        """Unscale, clip, check the gradients are finite, step; returns the learning rate the step used.

        The check runs with or without clipping (a finite loss can still give NaN / inf
        gradients): one fused norm over every gradient, one host sync per step."""
        scaler.unscale_(optimizer)
        if self.s.clip_grad_norm is not None:
            norm = nn.utils.clip_grad_norm_(model.parameters(), self.s.clip_grad_norm)
        elif self.precision != "fp16":  # the same fused norm, gradients left as they are
            norm = nn.utils.get_total_norm([p.grad for p in model.parameters() if p.grad is not None])
        else:  # fp16: the scaler checks the gradients itself and skips the step
            norm = None
        if norm is not None and self.precision != "fp16" and not torch.isfinite(norm):
            raise NonFiniteLoss(f"non-finite gradient norm at step {step}; the step was not applied; "
                                f"the last good checkpoint stays in {self.ckpt_dir}")
        lr = optimizer.param_groups[0]["lr"]
        scale = scaler.get_scale() if scaler.is_enabled() else None
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        # fp16: a step the scaler skipped (inf / NaN gradients, its scale lowered) applied nothing,
        # so it does not use up warm-up or decay either (as transformers' Trainer)
        if scale is None or scaler.get_scale() >= scale:
            scheduler.step()
        return lr

    # -- the loop --------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        s, info = self.s, self.info
        start_wall = time.perf_counter()
        seed_everything(self.seed)
        model = self.objective.to(info.device)
        model.train()
        optimizer = build_optimizer(model, s.lr, s.weight_decay, s.betas, s.eps)
        scheduler = build_scheduler(optimizer, warmup_steps(self.total_steps, s.warmup_steps, s.warmup_ratio),
                                    self.total_steps)
        scaler = torch.amp.GradScaler(info.device.type, enabled=self.precision == "fp16")
        seed_everything(self.seed + 100_003 * info.rank)  # dropout differs per rank, fixed per seed
        window = _Window()
        step = self._resume(model, optimizer, scheduler, scaler, window)
        resumed_from = step
        if info.is_main:
            log.info("pretrain: steps %d-%d of %d on %s, %s, %d process(es) (%s)%s", step + 1,
                     self.total_steps, self.total_steps, info.device, self.precision, info.world_size,
                     info.backend or "no group", ", compiled" if s.compile else "")
        ddp = model
        if info.distributed:
            ddp = nn.parallel.DistributedDataParallel(
                model, device_ids=[info.local_rank] if info.device.type == "cuda" else None,
                # a task with nothing masked in a batch leaves its head unused: DDP must allow it
                find_unused_parameters=self.find_unused_parameters)
        if s.compile:
            ddp = compile_module(ddp)
        runlog = None
        if info.is_main:
            runlog = RunLog(self.out_dir, resume_step=step, tensorboard=self.tensorboard)
        kill_at = int(os.environ.get(KILL_ENV, "0") or 0)
        try:
            with bar("pretrain", self.total_steps, self.progress and info.is_main, completed=step,
                     columns=(TimeElapsedColumn(),)) as pbar:
                while step < self.total_steps:
                    epoch, in_epoch = divmod(step, self.steps_per_epoch)
                    batches = iter(self._loader(epoch, in_epoch))
                    for _ in range(in_epoch, min(self.steps_per_epoch, in_epoch + self.total_steps - step)):
                        t0 = time.perf_counter()
                        values, wait, rows = self._forward_backward(ddp, scaler, batches)
                        self._check_finite(values, step + 1)
                        lr = self._optimizer_step(model, optimizer, scheduler, scaler, step + 1)
                        step += 1
                        if kill_at and step == kill_at:
                            os.kill(os.getpid(), signal.SIGKILL)
                        window.add(values, time.perf_counter() - t0, wait, rows * info.world_size)
                        pbar.update(step, info=f"loss {values['loss']:.3f}")
                        if step % s.log_every == 0 or step == self.total_steps:
                            entry = window.flush(step, step / self.steps_per_epoch, lr)
                            if runlog is not None:
                                runlog.write(entry)
                        if step % s.checkpoint_every == 0 or step == self.total_steps:
                            self._save(model, optimizer, scheduler, scaler, step, window)
        finally:
            if runlog is not None:
                runlog.close()
        result = TrainResult(steps=step, total_steps=self.total_steps, resumed_from=resumed_from,
                             last=window.last or self._last_logged(), wall_s=time.perf_counter() - start_wall)
        self._finish(model, result)
        barrier(info)
        return result


class _Window:
    """Values summed over the steps since the last log entry (checkpointed with the run, so that
    the first entry after a resume averages the same steps as in an uninterrupted run)."""

    # what a log entry holds besides the averaged values (``last``)
    BOOKKEEPING = frozenset({"step", "epoch", "lr", "samples_per_s", "data_wait"})

    def __init__(self) -> None:
        self.last: dict[str, float] = {}
        self._reset()

    def _reset(self) -> None:
        self.sums: dict[str, float] = {}
        self.steps, self.time, self.wait, self.samples = 0, 0.0, 0.0, 0

    def state(self) -> dict[str, Any]:
        return {"sums": dict(self.sums), "steps": self.steps, "time": self.time, "wait": self.wait,
                "samples": self.samples}

    def load(self, state: dict[str, Any]) -> None:
        self.sums = dict(state["sums"])
        self.steps, self.time = int(state["steps"]), float(state["time"])
        self.wait, self.samples = float(state["wait"]), int(state["samples"])

    def add(self, values: dict[str, float], dt: float, wait: float, samples: int) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.steps += 1
        self.time += dt
        self.wait += wait
        self.samples += samples

    def flush(self, step: int, epoch: float, lr: float) -> dict[str, float]:
        self.last = {k: v / self.steps for k, v in self.sums.items()}
        entry = {"step": step, "epoch": round(epoch, 4), "lr": lr, **self.last,
                 "samples_per_s": self.samples / max(self.time, 1e-9),
                 "data_wait": self.wait / max(self.time, 1e-9)}
        self._reset()
        return entry


def _batch_size(batch: Any) -> int:
    """Rows in a collated batch: the first dimension of its first tensor."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0])
    if isinstance(batch, dict):
        for value in batch.values():
            n = _batch_size(value)
            if n:
                return n
    if isinstance(batch, list | tuple):
        for value in batch:
            n = _batch_size(value)
            if n:
                return n
    return 0


def is_done(out_dir: Path) -> bool:
    return (Path(out_dir) / DONE_FILE).is_file()
