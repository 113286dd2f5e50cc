"""The GPU training benchmark runs on CPU with a tiny shape, and its FLOPs formula matches torch's count."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "bench" / "gpu_train.py"


def _module():
    spec = importlib.util.spec_from_file_location("gpu_train", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_train"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_tiny_cpu_run_reports_throughput_and_a_flops_formula_that_matches_the_counter():
    gpu_train = _module()
    r = gpu_train.run(device="cpu", tiny=True, batch=4, steps=1, warmup=1, precision="fp32", peak=0.5,
                      check_flops=True, text_padding="max")
    assert r.samples_per_s > 0 and r.step_s > 0
    # the documented formula (text + image side, heads) agrees with torch's flop counter within 10%
    # when it counts every position, as the device computes them
    assert r.padded_flops_per_step == pytest.approx(r.counted_flops_per_step, rel=0.10)
    # MFU counts the real positions only: less than the padded count, by the padding's share
    assert 0.2 < r.padding_share < 0.8 and r.flops_per_step < r.padded_flops_per_step
    # padded to the batch's longest text (the default): the same model FLOPs, fewer computed
    cut = gpu_train.run(device="cpu", tiny=True, batch=4, steps=1, warmup=1, precision="fp32", peak=0.5,
                        check_flops=True)
    assert cut.text_padding == "longest" and cut.flops_per_step == pytest.approx(r.flops_per_step)
    assert cut.padding_share < 0.1 and cut.padded_flops_per_step < r.padded_flops_per_step
    assert cut.padded_flops_per_step == pytest.approx(cut.counted_flops_per_step, rel=0.10)
    assert r.mfu / r.mfu_padded == pytest.approx(r.flops_per_step / r.padded_flops_per_step)
    parts = r.flops_by_part
    assert parts["image_projection"] > 0 and parts["attention"] > 0 and parts["amlm"] > 0
    assert parts["total"] == pytest.approx(sum(v for k, v in parts.items() if k != "total"))
    assert r.mfu == pytest.approx(r.tflops_per_s / 0.5)
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="no CUDA device"):
            gpu_train.run(device="cuda", tiny=True)


def test_formula_counts_every_position_of_the_base_shape():
    gpu_train = _module()
    d = gpu_train.Shape(vocab=30522, **gpu_train.BASE)
    assert d.positions == 119 and d.patches == 55
    one = gpu_train.step_flops(d, 1, 0, 0)
    # BERT-base encoder, 119 positions: 6 x 84.9M weights x 119 = 60.7 GFLOP per sample
    assert one["encoder"] == pytest.approx(6 * 12 * (4 * 768**2 + 2 * 768 * 3072) * 119)
    assert one["encoder"] / 1e9 == pytest.approx(60.6, abs=0.2)
    # with each sample's real length (text without padding + 55 patches) only those positions count
    short = gpu_train.step_flops(d, 2, 0, 0, lengths=[55 + 16, 55 + 64])
    assert short["encoder"] == pytest.approx(one["encoder"] * (71 + 119) / 119)
    assert short["attention"] == pytest.approx(one["attention"] * (71**2 + 119**2) / 119**2)
    assert short["image_projection"] == 2 * one["image_projection"]
    two = gpu_train.step_flops(d, 2, 10, 4)
    assert two["encoder"] == 2 * one["encoder"]
    assert two["amlm"] == 6 * 10 * (768**2 + 768 * 30522)
    assert two["reconstruction"] == 6 * 4 * 768 * 2048


def test_trainer_loop_runs_kaleidos_trainer_and_reports_its_step_time(monkeypatch):
    import kaleido.training.logs as logs

    gpu_train = _module()
    seen: list[list[dict]] = []
    read_log = logs.read_log

    def spy(path):
        seen.append(read_log(path))
        return seen[-1]

    monkeypatch.setattr(logs, "read_log", spy)
    r = gpu_train.run(device="cpu", tiny=True, batch=4, steps=2, warmup=1, precision="fp32", peak=0.5,
                      loop="trainer", workers=0)
    # the step time comes from the trainer's own log: the steps after the first (warm-up) window
    (entries,) = seen
    assert [e["step"] for e in entries] == [1, 2, 3]
    assert r.step_s == pytest.approx(np.mean([4 / e["samples_per_s"] for e in entries[1:]]))
    assert r.samples_per_s == pytest.approx(4 / r.step_s)


def test_master_adamw_steps_fp32_masters_and_copies_them_into_the_bf16_weights():
    gpu_train = _module()
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 4).to(torch.bfloat16)
    reference = [p.detach().float().clone().requires_grad_(True) for p in model.parameters()]
    opt = gpu_train.MasterAdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    ref_opt = torch.optim.AdamW(reference, lr=1e-2, weight_decay=0.0)
    x = torch.randn(16, 8)
    for _ in range(3):
        model(x.to(torch.bfloat16)).float().pow(2).mean().backward()
        for r, p in zip(reference, model.parameters(), strict=True):
            r.grad = p.grad.float()
        opt.step()
        ref_opt.step()
        opt.zero_grad()
        assert all(p.grad is None for p in model.parameters())
    for r, m, p in zip(reference, opt.master, model.parameters(), strict=True):
        assert m.dtype == torch.float32 and p.dtype == torch.bfloat16
        torch.testing.assert_close(m, r.detach())  # the masters take exactly AdamW's fp32 steps
        torch.testing.assert_close(p, m.to(torch.bfloat16), rtol=0, atol=0)  # weights are their bf16 copy
    model(x.to(torch.bfloat16)).float().pow(2).mean().backward()
    raw = torch.cat([p.grad.float().flatten() for p in model.parameters()]).norm()
    opt.step(clip=1e-3)  # clipping applies to the fp32 master gradients
    clipped = torch.cat([m.grad.flatten() for m in opt.master]).norm()
    assert raw > 1e-2 and clipped == pytest.approx(1e-3, rel=1e-3)


def test_configure_attention_sets_the_kernel_and_the_dropout():
    gpu_train = _module()
    objective, _, _ = gpu_train.build(gpu_train.TINY, batch=2, n_batches=1)
    layers = objective.model.bert.encoder.layer
    assert all(layer.attention.self.dropout.p == 0.1 for layer in layers)
    assert all(layer.output.dropout.p == 0.1 for layer in layers)
    gpu_train.configure_attention(objective, "eager")
    assert objective.model.bert.config._attn_implementation == "eager"
    with pytest.raises(ValueError, match="unknown attention"):
        gpu_train.configure_attention(objective, "flash")
    # the attention dropout is the model's own parameter; the hidden dropouts keep 0.1
    quiet, _, _ = gpu_train.build(gpu_train.TINY, batch=2, n_batches=1, attention_dropout=0.0)
    assert all(layer.attention.self.dropout.p == 0.0 for layer in quiet.model.bert.encoder.layer)
    assert all(layer.output.dropout.p == 0.1 for layer in quiet.model.bert.encoder.layer)
    gpu_train.configure_attention(quiet, "packed")
    assert quiet.model.packed and quiet.model.bert.config._attn_implementation == "kaleido_packed"
