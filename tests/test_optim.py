"""AdamW's parameter groups: matrices decay, biases and LayerNorm weights do not, frozen ones stay out."""

from __future__ import annotations

import torch
from torch import nn

from kaleido.training.optim import build_optimizer, param_groups


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(5, 4)
        self.linear = nn.Linear(4, 3)
        self.norm = nn.LayerNorm(3)
        self.frozen = nn.Linear(3, 2)
        self.frozen.requires_grad_(False)


def test_matrices_decay_and_vectors_do_not() -> None:
    model = Tiny()
    groups = param_groups(model, 0.01)
    by_decay = {g["weight_decay"]: {id(p) for p in g["params"]} for g in groups}
    assert set(by_decay) == {0.01, 0.0}
    assert by_decay[0.01] == {id(model.embed.weight), id(model.linear.weight)}
    assert by_decay[0.0] == {id(model.linear.bias), id(model.norm.weight), id(model.norm.bias)}
    assert sum(len(g["params"]) for g in groups) == 5  # the frozen layer is in neither


def test_a_step_without_gradient_shrinks_only_the_decayed_parameters() -> None:
    torch.manual_seed(0)
    model = Tiny()
    nn.init.normal_(model.norm.weight)
    nn.init.normal_(model.linear.bias)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = build_optimizer(model, lr=0.1, weight_decay=0.5, betas=(0.9, 0.999), eps=1e-8)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    for name, p in model.named_parameters():
        shrunk = name in ("embed.weight", "linear.weight")
        torch.testing.assert_close(p.detach(), before[name] * (1 - 0.1 * 0.5) if shrunk else before[name])


def test_cpu_parameters_get_the_fused_kernel_and_step_as_the_loop_does() -> None:
    """The fused CPU AdamW (6x the single-tensor loop at quickstart size) is asked for, and a step
    moves every parameter as torch's reference loop does."""
    from kaleido.training.optim import fused

    torch.manual_seed(0)
    model, reference = Tiny(), Tiny()
    reference.load_state_dict(model.state_dict())
    optimizer = build_optimizer(model, lr=0.1, weight_decay=0.5, betas=(0.9, 0.999), eps=1e-8)
    assert optimizer.defaults["fused"] is True
    assert fused([{"params": [torch.zeros(1, device="meta")]}]) is None  # no fused kernel there: torch picks
    slow = torch.optim.AdamW(param_groups(reference, 0.5), lr=0.1, betas=(0.9, 0.999), eps=1e-8,
                             foreach=False)
    for m in (model, reference):
        for p in m.parameters():
            p.grad = torch.full_like(p, 0.3)
    optimizer.step()
    slow.step()
    for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p, q, msg=name)


def test_the_recipe_betas_eps_and_lr_reach_adamw() -> None:
    """The authors' scripts use beta2 0.98 and eps 1e-6 (SPEC section 9). Adam's first step moves by
    lr * sign(grad) whatever the betas, so the step comparison above cannot see a lost beta."""
    optimizer = build_optimizer(Tiny(), lr=1e-4, weight_decay=0.01, betas=[0.9, 0.98], eps=1e-6)
    settings = [(g["lr"], g["betas"], g["eps"]) for g in optimizer.param_groups]
    assert settings == [(1e-4, (0.9, 0.98), 1e-6)] * 2
