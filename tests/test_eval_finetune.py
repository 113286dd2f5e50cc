"""The shared fine-tuning loop: seeded batches, and the head's own learning rate (param groups)."""

import numpy as np
import pytest
import torch
from torch import nn

from kaleido.evaluation.finetune import batches, finetune, param_groups


def test_batches_cover_every_row_once_per_epoch_and_repeat_for_a_seed():
    plan = batches(10, 4, 2, seed=3)
    assert [len(b) for b in plan] == [4, 4, 2, 4, 4, 2]
    assert sorted(np.concatenate(plan[:3]).tolist()) == list(range(10))
    assert all(np.array_equal(a, b) for a, b in zip(plan, batches(10, 4, 2, seed=3), strict=True))


def test_param_groups_put_each_parameter_in_one_group_at_its_lr():
    body, head = nn.Linear(3, 3), nn.Linear(3, 2)
    frozen = nn.Parameter(torch.zeros(1), requires_grad=False)
    groups = param_groups([*body.parameters(), *head.parameters(), frozen], 1e-4, head.parameters(), 1e-2)
    assert [(g["name"], g["lr"], len(g["params"])) for g in groups] == [("encoder", 1e-4, 2),
                                                                        ("head", 1e-2, 2)]
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in head.parameters()}
    # without a head lr the head trains at the encoder's
    assert [g["lr"] for g in param_groups(body.parameters(), 1e-4, head.parameters())] == [1e-4, 1e-4]


def test_head_lr_moves_only_the_head_when_the_encoder_lr_is_zero():
    torch.manual_seed(0)
    body, head = nn.Linear(4, 4), nn.Linear(4, 2)
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    before_body = [p.detach().clone() for p in body.parameters()]
    before_head = [p.detach().clone() for p in head.parameters()]

    def loss_fn(rows):
        return nn.functional.cross_entropy(head(torch.relu(body(x[rows]))), y[rows])

    summary = finetune(body.parameters(), [body, head], loss_fn, 16, 8, 3, lr=0.0, seed=0, name="t",
                       head_params=head.parameters(), head_lr=0.05)
    assert summary["steps"] == 6
    assert all(torch.equal(a, b) for a, b in zip(before_body, body.parameters(), strict=True))
    assert all(not torch.equal(a, b) for a, b in zip(before_head, head.parameters(), strict=True))


def test_non_finite_loss_stops_with_the_step():
    w = nn.Parameter(torch.ones(1))
    with pytest.raises(FloatingPointError, match="t fine-tuning: non-finite loss at step 0"):
        finetune([w], [], lambda rows: w * float("nan"), 4, 2, 1, 1e-3, 0, "t")


def test_a_short_fine_tuning_run_never_takes_its_first_step_at_the_full_rate(monkeypatch):
    """A run of a few steps (CR/SUB or captioning on a small split) once warmed up over max(1, 10%) =
    1 step, i.e. not at all: its first step at the full rate undid the head-only warm start."""
    param = nn.Parameter(torch.zeros(1))
    seen: list[float] = []
    original = torch.optim.AdamW.step

    def record(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", record)
    finetune([param], [], lambda rows: (param - 1.0).pow(2).sum(), 12, 4, 1, lr=1e-2, seed=0, name="t")
    assert len(seen) == 3 and seen[0] <= 0.5e-2 and max(seen) == pytest.approx(1e-2)
