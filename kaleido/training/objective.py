"""The pre-training objective: the model plus one head per task, losses summed with recipe weights.

``PretrainObjective(batch)`` runs the encoder once and every head on its output; the total is
``sum(weight * loss)`` and each task's loss and accuracy is reported on its own (``"itm/acc"``).
Evaluation reuses the heads through :meth:`itm_logits` / :meth:`match_scores` (retrieval) and
:meth:`mlm_logits` (captioning).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from kaleido import registry
from kaleido.atomic import atomic_folder
from kaleido.models.folder import save_state
from kaleido.models.kaleido import KaleidoModel
from kaleido.tasks.base import Task
from kaleido.tasks.itm import match_score

HEADS_FILE = "heads.safetensors"
OBJECTIVE_JSON = "objective.json"


@dataclass
class ObjectiveOutput:
    loss: torch.Tensor
    losses: dict[str, torch.Tensor] = field(default_factory=dict)
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)


class PretrainObjective(nn.Module):
    """``model`` + ``heads[name]`` for each task; ``forward(batch) -> ObjectiveOutput``."""

    def __init__(self, model: KaleidoModel, tasks: Mapping[str, Task],
                 weights: Mapping[str, float] | None = None) -> None:
        super().__init__()
        if not tasks:
            raise ValueError("a pre-training objective needs at least one task")
        self.model = model
        self.tasks = dict(tasks)
        self.weights = {name: float((weights or {}).get(name, 1.0)) for name in self.tasks}
        for task in self.tasks.values():
            task.bind(model.grids)
        self.heads = nn.ModuleDict({name: task.build_head(model) for name, task in self.tasks.items()})

    def counts(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per task, how many items its loss averages over in ``batch`` (masked tokens for AMLM,
        hidden patches with a target for G2CM / B2CM, rows for the others). Read by the trainer
        from the CPU batch before the forward, to normalise each task by its global count."""
        return {name: head.loss_items(batch) for name, head in self.heads.items()}

    def forward(self, batch: dict[str, torch.Tensor],
                loss_scale: Mapping[str, torch.Tensor] | None = None) -> ObjectiveOutput:
        """Every head on one encoder pass. ``loss_scale[task]`` (the trainer's ``n * world / N``:
        this micro-batch's count over the step's global count) turns each task's mean into its
        share of the global mean, and weights its metrics alike; without it, per-batch means."""
        sequence, pooled = self.model(batch)
        losses, metrics = {}, {}
        total = sequence.new_zeros((), dtype=torch.float32)
        for name, head in self.heads.items():
            loss, task_metrics = head(sequence, pooled, batch, self.model)
            if loss_scale is not None:
                scale = loss_scale[name]
                loss = loss.float() * scale
                task_metrics = {key: value * scale for key, value in task_metrics.items()}
            losses[name] = loss
            total = total + self.weights[name] * loss.float()
            metrics.update({f"{name}/{key}": value for key, value in task_metrics.items()})
        return ObjectiveOutput(total, losses, metrics)

    # -- evaluation helpers -------------------------------------------------------------------
    def _head(self, name: str) -> nn.Module:
        if name not in self.heads:
            raise ValueError(f"this objective was trained without the {name!r} task")
        return self.heads[name]

    def itm_logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, 2) ITM logits of an (unmasked) batch; class 1 = the text describes the image."""
        _, pooled = self.model(batch)
        return self._head("itm").logits(pooled)

    def match_scores(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B,) the retrieval score: the log-odds of "match" (ranks as its probability, SPEC
        section 9; :func:`kaleido.tasks.itm.match_score`)."""
        return match_score(self.itm_logits(batch))

    def mlm_logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, T, V) vocabulary logits at every text position (for captioning)."""
        sequence, _ = self.model(batch)
        text = sequence[:, : batch["input_ids"].shape[1]]
        return self._head("amlm").logits(text, self.model)

    # -- folders ------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """The model folder (see ``KaleidoModel.save``) plus ``heads.safetensors`` and
        ``objective.json`` (tasks, their parameters and weights), written atomically."""
        with atomic_folder(folder) as tmp:
            self.model.write(tmp)
            save_state(self.heads, tmp / HEADS_FILE)
            spec = {"tasks": [{"name": n, "weight": self.weights[n], "params": t.params()}
                              for n, t in self.tasks.items()]}
            (tmp / OBJECTIVE_JSON).write_text(json.dumps(spec, indent=2), encoding="utf-8")
        return Path(folder)

    @classmethod
    def load(cls, folder: str | Path) -> PretrainObjective:
        from safetensors.torch import load_file

        folder = Path(folder)
        spec_path = folder / OBJECTIVE_JSON
        if not spec_path.is_file():
            raise FileNotFoundError(f"{folder} holds no pre-training objective (no {OBJECTIVE_JSON})")
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
        tasks = {t["name"]: registry.tasks.get(t["name"])(**t["params"]) for t in spec["tasks"]}
        weights = {t["name"]: t["weight"] for t in spec["tasks"]}
        objective = cls(KaleidoModel.load(folder), tasks, weights)
        objective.heads.load_state_dict(load_file(str(folder / HEADS_FILE)))
        return objective
