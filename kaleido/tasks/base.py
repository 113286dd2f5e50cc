"""The task contract shared by the data path (:mod:`kaleido.training.dataset`) and the objective.

A task lives on both sides of the batch:

- data side (numpy, in DataLoader workers): ``pair`` may choose which text goes with which
  image (only ITM does), ``prepare`` applies the task's input transform to a :class:`Sample`
  and stores its labels in ``sample.labels[name]``, ``collate`` turns those labels into tensors
  whose keys are prefixed ``"<name>/"``;
- model side: ``build_head(model)`` returns a :class:`TaskHead`, a module whose forward maps the
  encoder output and the batch to ``(loss, metrics)`` with the accuracy under ``"acc"``.

Everything random on the data side draws from the one generator the dataset passes in, so a
sample is a pure function of (seed, epoch, index). A task never reads another task's labels.

Mismatched ITM pairs (text and image of different products): every input transform still
runs, so that a negative cannot be told from a positive by the absence of ``[MASK]`` tokens,
grey or blank patches, nor by where they are (the dataset draws a negative's mask plan from
the same distribution as a positive's); but the tasks that reconstruct one modality from the
other (AMLM, G2CM, B2CM) mark their labels invalid on them, since the other side carries
nothing about it. The image-only tasks (RR, JPS, CP) keep their labels: they depend on the
image alone.

A task that hides what the masker planned says so (``hides_tokens``, or ``hides_patches`` for
its ``grid``); :func:`hidden_by` tells the masker, so that a plan names only what gets hidden.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
from torch import nn

from kaleido.maskers.base import Hidden, MaskPlan, level_of_grid


@dataclass
class Sample:
    """One pre-training example while the tasks transform it (numpy, float32 features)."""

    index: int
    text_row: int
    image_row: int
    matched: bool
    input_ids: np.ndarray  # (T,) [CLS] tokens [SEP] pad
    n_tokens: int  # text tokens between [CLS] and [SEP]
    features: np.ndarray  # (P, D) what the model sees (tasks transform it in place)
    original: np.ndarray  # (P, D) the image row's untouched features (reconstruction targets)
    positions: np.ndarray  # (P, 5)
    plan: MaskPlan
    labels: dict[str, dict[str, Any]] = field(default_factory=dict)


class SampleSource(Protocol):
    """What a task may ask of the dataset while preparing a sample."""

    store: Any
    mask_token_id: int
    random_token_ids: np.ndarray

    def other_product(self, row: int, rng: np.random.Generator) -> int: ...


def patch_layout(grids: tuple[int, ...]) -> np.ndarray:
    """Level id (1-based) of every patch in the store's order: level by level, g*g patches each."""
    return np.concatenate([np.full(g * g, i + 1, dtype=np.int64) for i, g in enumerate(grids)])


class TaskHead(nn.Module):
    """A task's head: ``forward(sequence, pooled, batch, model) -> (loss, metrics)``.

    The loss is the mean over the items :meth:`loss_items` counts in ``batch`` (zero when there are
    none). The trainer reads the counts of every micro-batch of a step on the CPU, before any
    forward, and rescales each mean to ``sum / (items in the whole global batch)``, so that how a
    global batch is split into micro-batches and ranks does not change the gradient.
    """

    def forward(self, sequence: torch.Tensor, pooled: torch.Tensor, batch: dict[str, torch.Tensor],
                model: nn.Module) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def loss_items(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """How many items the loss averages over in ``batch``: by default one per row."""
        return torch.tensor(batch["input_ids"].shape[0])


class Task:
    """Base class of the registered tasks; subclasses set ``name`` and, for AKPM, ``grid``."""

    name: ClassVar[str] = ""
    grid: ClassVar[int | None] = None  # the Kaleido level (by grid size) the task works on
    hides_tokens: ClassVar[bool] = False  # hides the masker's tokens (AMLM)
    hides_patches: ClassVar[bool] = False  # hides the masker's patches of ``grid`` (CP, G2CM, B2CM)
    hides_at_most: ClassVar[int | None] = None  # hides no more than this many of them (CP: one)

    level: int | None = None
    start: int = 0  # first patch index of the task's level
    count: int = 0  # patches in that level

    def bind(self, grids: tuple[int, ...] | list[int]) -> None:
        """Locate the task's level in a patch layout; a missing level fails here, at build time."""
        grids = tuple(int(g) for g in grids)
        if self.grid is None:
            return
        level = level_of_grid(grids, self.grid)
        if level is None:
            raise ValueError(f"task {self.name!r} needs the {self.grid}x{self.grid} Kaleido level, but the "
                             f"features have grids {grids}; drop the task or use a patcher with that grid")
        layout = patch_layout(grids)
        self.level = level
        self.start = int(np.flatnonzero(layout == level)[0])
        self.count = self.grid * self.grid

    def params(self) -> dict[str, Any]:
        """The task's recipe parameters (its ``__init__`` keywords), to save with a checkpoint."""
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {n: getattr(self, n) for n in names}

    def planned(self, sample: Sample) -> np.ndarray:
        """The masker's patches that fall in this task's level (patch indices, sorted).

        Only a task that says it hides them (``hides_patches``) is planned any: the masker plans
        what the running tasks declare, so a task reading them undeclared would silently get none."""
        if not self.hides_patches:
            raise TypeError(f"task {self.name!r} reads the masker's patches but does not declare "
                            f"hides_patches = True (the masker plans patches only for tasks that do)")
        patches = sample.plan.patches
        return patches[(patches >= self.start) & (patches < self.start + self.count)]

    # -- data side --------------------------------------------------------------------------
    def pair(self, index: int, rng: np.random.Generator, source: SampleSource) -> tuple[int, int] | None:
        """(text_row, image_row) for this example, or None to keep the row's own pair."""
        return None

    def prepare(self, sample: Sample, rng: np.random.Generator, source: SampleSource) -> None:
        raise NotImplementedError

    def collate(self, labels: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    # -- model side -------------------------------------------------------------------------
    def build_head(self, model: Any) -> TaskHead:
        raise NotImplementedError


def hidden_by(tasks: Sequence[Task]) -> Hidden:
    """What these tasks hide of a mask plan, for the masker (see :class:`~kaleido.maskers.base.Hidden`):
    a grid is capped only when every task hiding it is."""
    hiding = [t for t in tasks if t.hides_patches and t.grid is not None]
    grids = frozenset(int(t.grid) for t in hiding)
    caps = {g: [t.hides_at_most for t in hiding if int(t.grid) == g] for g in grids}
    limits = tuple(sorted((g, max(c)) for g, c in caps.items() if None not in c))
    return Hidden(tokens=any(t.hides_tokens for t in tasks), grids=grids, limits=limits)


def pad_stack(arrays: list[np.ndarray], fill: float | int | bool, dtype: torch.dtype) -> torch.Tensor:
    """Stack variable-length arrays along a new batch axis, padding the first axis to the longest
    (at least 1, so every batch has the key with a fixed rank)."""
    length = max(1, max(a.shape[0] for a in arrays))
    tail = next((a.shape[1:] for a in arrays if a.size), arrays[0].shape[1:])
    kind = np.float32 if dtype.is_floating_point else np.int64
    out = np.full((len(arrays), length, *tail), fill, dtype=kind)
    for i, a in enumerate(arrays):
        if a.shape[0]:
            out[i, : a.shape[0]] = a
    return torch.as_tensor(out).to(dtype)


def zero_loss(*tensors: torch.Tensor) -> torch.Tensor:
    """A zero that still depends on the head (so every parameter gets a gradient, as DDP wants)."""
    return sum(t.sum() for t in tensors) * 0.0


def accuracy(logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Share of correct predictions; with ``weight`` (0/1 per row) only the rows weighted 1 count."""
    if labels.numel() == 0:
        return logits.new_zeros(())
    hit = (logits.argmax(-1) == labels).float()
    if weight is None:
        return hit.mean().detach()
    return ((hit * weight).sum() / weight.sum().clamp(min=1.0)).detach()


def dense_slots(device: torch.device) -> bool:
    """Whether :func:`masked_slots` keeps every slot (on an accelerator) rather than the valid ones."""
    return device.type != "cpu"


def masked_slots(valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(rows, slots, weight)`` of the labelled slots of a ``(B, M)`` validity mask.

    On a CPU: only the valid slots (``nonzero``), ``weight`` None. On an accelerator: every slot,
    with a 0/1 ``weight``, because ``nonzero`` must wait for the device to count the slots and
    that stall leaves the GPU idle while the rest of the step is launched; the few padded slots
    cost less than the wait. Losses and metrics are the same either way (tested).
    """
    if not dense_slots(valid.device):
        rows, slots = valid.nonzero(as_tuple=True)
        return rows, slots, None
    b, m = valid.shape
    rows = torch.arange(b, device=valid.device).repeat_interleave(m)
    slots = torch.arange(m, device=valid.device).repeat(b)
    return rows, slots, valid.reshape(-1).float()


def weighted_mean(values: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Mean of per-slot ``values`` over the slots weighted 1 (all of them when ``weight`` is None);
    zero, still tied to the graph, when there are none."""
    if weight is None:
        return values.sum() / max(values.shape[0], 1)
    return (values * weight).sum() / weight.sum().clamp(min=1.0)


class LevelClassifierHead(TaskHead):
    """RR / JPS / CP (SPEC section 9): one linear layer over the flattened hidden states of a level."""

    def __init__(self, task: str, start: int, count: int, hidden_size: int, classes: int) -> None:
        super().__init__()
        self.task, self.start, self.count = task, start, count
        self.classifier = nn.Linear(count * hidden_size, classes)

    def logits(self, sequence: torch.Tensor, text_len: int) -> torch.Tensor:
        first = text_len + self.start
        return self.classifier(sequence[:, first: first + self.count].flatten(1))

    def forward(self, sequence, pooled, batch, model):
        logits = self.logits(sequence, batch["input_ids"].shape[1])
        labels = batch[f"{self.task}/label"]
        loss = nn.functional.cross_entropy(logits, labels)
        return loss, {"acc": accuracy(logits, labels)}


class FeatureRegressionHead(TaskHead):
    """G2CM / B2CM (SPEC section 9): gather the hidden states of the masked patches, a bias-free
    linear layer to the feature size, loss KL(softmax(target) || softmax(prediction)) averaged
    over patches. The metric ``acc`` is in-batch retrieval: the share of predictions whose most
    cosine-similar target among the batch's masked patches is their own."""

    def __init__(self, task: str, hidden_size: int, feature_dim: int) -> None:
        super().__init__()
        self.task = task
        self.decoder = nn.Linear(hidden_size, feature_dim, bias=False)

    def loss_items(self, batch):
        """The hidden patches with a target (a negative's are not)."""
        return batch[f"{self.task}/valid"].sum()

    def forward(self, sequence, pooled, batch, model):
        text_len = batch["input_ids"].shape[1]
        index, valid = batch[f"{self.task}/index"], batch[f"{self.task}/valid"]
        rows, slots, weight = masked_slots(valid)
        hidden = sequence[rows, text_len + index[rows, slots]]
        if hidden.shape[0] == 0:
            return zero_loss(self.decoder.weight), {"acc": sequence.new_zeros(())}
        prediction = self.decoder(hidden).float()
        target = batch[f"{self.task}/target"][rows, slots].float()
        kl = nn.functional.kl_div(prediction.log_softmax(-1), target.log_softmax(-1), log_target=True,
                                  reduction="none").sum(-1)
        loss = weighted_mean(kl, weight)
        with torch.no_grad():
            sim = nn.functional.normalize(prediction, dim=-1) @ nn.functional.normalize(target, dim=-1).T
            if weight is not None:  # padded slots are neither queries nor candidates
                sim = sim.masked_fill(weight[None, :] == 0, float("-inf"))
            hit = (sim.argmax(-1) == torch.arange(len(sim), device=sim.device)).float()
            acc = weighted_mean(hit, weight)
        return loss, {"acc": acc}
