"""Process-group setup from the torchrun environment, and the deterministic, resumable sharding.

`torchrun` (or `kaleido run --nproc-per-node N`, which calls `torch.distributed.run`) sets
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``; without them the run is one plain process. The batch
order is a pure function of (seed, epoch, step), so a resumed run, or a run with another number
of ranks and the same global batch, sees exactly the same samples per optimiser step.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None  # None: no process group (single process)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.backend is not None


def init_from_env(device: str | None = None) -> DistInfo:
    """Join the process group described by the torchrun variables (NCCL on CUDA, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world == 1:
        return DistInfo(device=dev)
    backend = "nccl" if use_cuda else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, device_id=dev if use_cuda else None)
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=dev, backend=backend)


def shutdown(info: DistInfo) -> None:
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        if info.backend == "nccl":
            dist.barrier(device_ids=[info.local_rank])
        else:
            dist.barrier()


def all_gather_objects(info: DistInfo, obj: T) -> list[T]:
    """Every rank's ``obj`` (on every rank); ``[obj]`` for a single process."""
    if not info.distributed:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum(info: DistInfo, tensor: torch.Tensor) -> torch.Tensor:
    if info.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


class ShardedBatches:
    """The micro-batches (lists of dataset indices) one rank feeds, step by step, for one epoch.

    Step ``s`` of epoch ``e`` uses positions ``[s*B, (s+1)*B)`` of a permutation drawn from
    ``seed + e``; that global batch is cut into ``grad_accum`` micro-steps, each split evenly
    across ranks. Starting at ``start_step`` skips the steps already done, which is how a run
    resumes mid-epoch without replaying data. The last incomplete batch is dropped.
    """

    def __init__(self, n: int, global_batch: int, *, world_size: int = 1, rank: int = 0, grad_accum: int = 1,
                 seed: int = 0, epoch: int = 0, start_step: int = 0, shuffle: bool = True) -> None:
        per_step = world_size * grad_accum
        if global_batch % per_step:
            raise ValueError(f"global batch {global_batch} is not divisible by ranks x grad_accum "
                             f"= {world_size} x {grad_accum}")
        if n < global_batch:
            raise ValueError(f"the training split has {n} rows, fewer than one global batch of "
                             f"{global_batch}")
        self.n, self.global_batch, self.world_size, self.rank = n, global_batch, world_size, rank
        self.grad_accum, self.seed, self.epoch, self.start_step = grad_accum, seed, epoch, start_step
        self.micro = global_batch // per_step
        self.shuffle = shuffle

    @property
    def steps_per_epoch(self) -> int:
        return self.n // self.global_batch

    def order(self) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.n)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.n, generator=gen)

    def step_indices(self, step: int, order: torch.Tensor | None = None) -> list[list[int]]:
        """This rank's ``grad_accum`` micro-batches of one step."""
        order = self.order() if order is None else order
        batch = order[step * self.global_batch:(step + 1) * self.global_batch]
        chunk = self.global_batch // self.grad_accum
        out = []
        for a in range(self.grad_accum):
            part = batch[a * chunk:(a + 1) * chunk]
            out.append(part[self.rank * self.micro:(self.rank + 1) * self.micro].tolist())
        return out

    def __iter__(self) -> Iterator[list[int]]:
        order = self.order()
        for step in range(self.start_step, self.steps_per_epoch):
            yield from self.step_indices(step, order)

    def __len__(self) -> int:
        return max(0, self.steps_per_epoch - self.start_step) * self.grad_accum
