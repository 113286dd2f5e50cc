"""The training loop on the toy objective: a short run, sharding, schedule, DDP parity, non-finite stop."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from kaleido.recipe.schema import PretrainSettings
from kaleido.training import checkpoint as ckpt
from kaleido.training.distributed import ShardedBatches
from kaleido.training.logs import read_log
from kaleido.training.optim import lr_factor, warmup_steps
from kaleido.training.toy import ToyDataset, ToyObjective
from kaleido.training.trainer import NonFiniteLoss, Trainer, seed_everything

REPO = Path(__file__).resolve().parents[1]


def _toy_run(out: Path, dropout: float = 0.1, **settings) -> tuple[Trainer, object]:
    seed_everything(0)
    base = {"batch_size": 16, "max_steps": 30, "log_every": 5, "checkpoint_every": 10, "lr": 0.01,
            "keep_last": 2}
    base.update(settings)
    trainer = Trainer(ToyObjective(dropout=dropout), ToyDataset(128), PretrainSettings(**base), out,
                      seed=0, progress=False, tensorboard=True, find_unused_parameters=False)
    return trainer, trainer.fit()


def test_short_single_process_run_learns_and_writes_its_outputs(tmp_path):
    _, result = _toy_run(tmp_path, max_steps=40)
    entries = read_log(tmp_path / "log.jsonl")
    assert [e["step"] for e in entries] == [5, 10, 15, 20, 25, 30, 35, 40]
    for key in ("loss", "loss/reg", "loss/cls", "metric/cls/acc", "lr", "samples_per_s", "data_wait"):
        assert key in entries[0], key
    assert entries[-1]["loss"] < 0.6 * entries[0]["loss"]  # it learns
    assert 0.0 <= entries[0]["data_wait"] <= 1.0 and entries[0]["samples_per_s"] > 0
    assert abs(entries[0]["loss"] - entries[0]["loss/reg"] - entries[0]["loss/cls"]) < 1e-5
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path / "checkpoints")] == [30, 40]  # keep_last = 2
    assert (tmp_path / "model" / "model.safetensors").is_file()
    assert (tmp_path / "loss.png").stat().st_size > 5000
    assert list((tmp_path / "tb").iterdir())
    done = json.loads((tmp_path / "done.json").read_text())
    assert done["steps"] == 40 and result.steps == 40


def test_a_finished_run_restarted_does_no_more_steps(tmp_path):
    _toy_run(tmp_path, max_steps=20)
    (tmp_path / "done.json").unlink()  # as if killed after the final checkpoint, before done.json
    trainer, result = _toy_run(tmp_path, max_steps=20)
    assert result.resumed_from == 20 and result.steps == 20
    entries = read_log(tmp_path / "log.jsonl")
    assert [e["step"] for e in entries] == [5, 10, 15, 20]
    # no step trained in this process: the final values come from the log, not an empty window
    assert result.last["loss"] == entries[-1]["loss"] and "step" not in result.last
    from kaleido.training.trainer import _Window

    assert set(entries[-1]) - set(result.last) == _Window.BOOKKEEPING  # the entry's other keys, all of them
    assert json.loads((tmp_path / "done.json").read_text())["last"]["loss"] == entries[-1]["loss"]


def test_sharding_covers_the_global_batch_once_and_is_deterministic():
    single = ShardedBatches(100, 12, seed=3, epoch=1)
    parts = [ShardedBatches(100, 12, world_size=2, rank=r, grad_accum=3, seed=3, epoch=1) for r in range(2)]
    for step in range(single.steps_per_epoch):
        whole = single.step_indices(step)[0]
        mine = [i for p in parts for micro in p.step_indices(step) for i in micro]
        assert sorted(mine) == sorted(whole) and len(set(mine)) == 12
    assert list(ShardedBatches(100, 12, seed=3, epoch=1)) == list(single)
    assert list(ShardedBatches(100, 12, seed=3, epoch=2)) != list(single)
    resumed = list(ShardedBatches(100, 12, seed=3, epoch=1, start_step=5))
    assert resumed == list(single)[5:]
    with pytest.raises(ValueError, match="not divisible"):
        ShardedBatches(100, 10, world_size=3)
    with pytest.raises(ValueError, match="fewer than one global batch"):
        ShardedBatches(5, 8)


def test_warmup_then_linear_decay():
    assert warmup_steps(1000, None, 0.1) == 100 and warmup_steps(1000, 50, 0.1) == 50
    # a share of the run is rounded up (Python's round() took 0.5 to 0 and 4.5 to 4)
    assert [warmup_steps(n, None, 0.1) for n in (5, 25, 30, 45, 3)] == [1, 3, 3, 5, 1]
    assert warmup_steps(10, None, 0.0) == 0 and warmup_steps(4, 9, 0.1) == 4
    # W warm-up steps are below the peak: W = 1 starts at half of it, not at it as W = 0 does
    assert lr_factor(0, 1, 100) == pytest.approx(0.5) and lr_factor(1, 1, 100) == 1.0
    assert lr_factor(0, 10, 100) == pytest.approx(1 / 11)
    assert lr_factor(9, 10, 100) == pytest.approx(10 / 11)
    assert lr_factor(10, 10, 100) == pytest.approx(1.0)
    assert lr_factor(55, 10, 100) == pytest.approx(0.5)
    assert lr_factor(100, 10, 100) == 0.0
    assert lr_factor(0, 0, 100) == 1.0


def test_the_logged_lr_follows_the_schedule_step_by_step(tmp_path):
    """Entry ``s`` logs the lr optimiser step ``s`` used: ``lr * lr_factor(s - 1, warmup, total)``."""
    _toy_run(tmp_path, max_steps=12, log_every=1, warmup_ratio=0.2)  # 2.4 -> 3 warm-up steps
    lrs = [(e["step"], e["lr"]) for e in read_log(tmp_path / "log.jsonl")]
    assert lrs == [(s, pytest.approx(0.01 * lr_factor(s - 1, 3, 12))) for s in range(1, 13)]
    peak = max(lr for _, lr in lrs)
    assert peak == pytest.approx(0.01) and [s for s, lr in lrs if lr == peak] == [4]  # after 3 steps below


def test_clipping_leaves_a_total_gradient_norm_of_at_most_clip_grad_norm(tmp_path, monkeypatch):
    before, after = [], []
    clip, step = torch.nn.utils.clip_grad_norm_, torch.optim.AdamW.step

    def clipping(params, *args, **kwargs):
        norm = clip(params, *args, **kwargs)
        before.append(float(norm))
        return norm

    def stepping(self, *args, **kwargs):
        grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        after.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clipping)
    monkeypatch.setattr(torch.optim.AdamW, "step", stepping)
    _toy_run(tmp_path, max_steps=6, clip_grad_norm=0.05)
    assert len(before) == len(after) == 6
    assert min(before) > 0.05  # every step needed clipping
    assert max(after) <= 0.05 * (1 + 1e-5)


def test_grad_accumulation_matches_one_big_batch(tmp_path, monkeypatch):
    """Same global batch, 4 micro-steps: the same updates (per-sample mean losses, no dropout)."""
    sizes: list[int] = []
    forward = ToyObjective.forward

    def counting(self, batch, **kwargs):
        sizes.append(len(batch["x"]))
        return forward(self, batch, **kwargs)

    monkeypatch.setattr(ToyObjective, "forward", counting)
    _toy_run(tmp_path / "a", dropout=0.0, max_steps=10, log_every=1)
    whole, sizes[:] = list(sizes), []
    _toy_run(tmp_path / "b", dropout=0.0, max_steps=10, log_every=1, grad_accum=4)
    assert whole == [16] * 10 and sizes == [4] * 40  # the accumulation really split every batch
    a = [e["loss"] for e in read_log(tmp_path / "a" / "log.jsonl")]
    b = [e["loss"] for e in read_log(tmp_path / "b" / "log.jsonl")]
    assert a == pytest.approx(b, rel=1e-4)


def test_non_finite_loss_stops_naming_task_and_step_and_keeps_last_good_checkpoint(tmp_path):
    seed_everything(0)
    objective = ToyObjective(nan_from_call=7)
    settings = PretrainSettings(batch_size=16, max_steps=30, checkpoint_every=5, log_every=1, lr=0.01)
    trainer = Trainer(objective, ToyDataset(128), settings, tmp_path, progress=False, tensorboard=False,
                      find_unused_parameters=False)
    with pytest.raises(NonFiniteLoss, match=r"task cls at step 7"):
        trainer.fit()
    step, state = ckpt.load_latest(tmp_path / "checkpoints")
    assert step == 5
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert all(torch.isfinite(p).all() for p in objective.parameters())  # step 7 was never applied
    assert not (tmp_path / "done.json").exists()
    assert max(e["step"] for e in read_log(tmp_path / "log.jsonl")) == 6


class NanGradient(ToyObjective):
    """From forward call ``nan_grad_at`` on, the loss stays finite but its gradient is NaN:
    ``0 * sqrt(z * z)`` at ``z = 0`` is 0 forward, ``0 * inf`` backward."""

    nan_grad_at = 4

    def forward(self, batch, **kwargs):
        out = super().forward(batch, **kwargs)
        if self.calls >= self.nan_grad_at:
            z = (self.reg.weight - self.reg.weight.detach()).sum()
            out.loss = out.loss + 0.0 * torch.sqrt(z * z)
        return out


@pytest.mark.parametrize("clip", [None, 1.0])
def test_a_nan_gradient_under_a_finite_loss_stops_before_the_step_with_or_without_clipping(tmp_path, clip):
    seed_everything(0)
    objective = NanGradient(dropout=0.0)
    settings = PretrainSettings(batch_size=16, max_steps=8, checkpoint_every=3, log_every=1, lr=0.01,
                                clip_grad_norm=clip)
    trainer = Trainer(objective, ToyDataset(128), settings, tmp_path, progress=False, tensorboard=False,
                      find_unused_parameters=False, plot=False)
    with pytest.raises(NonFiniteLoss, match=r"non-finite gradient norm at step 4; the step was not applied"):
        trainer.fit()
    assert objective.calls == 4  # the loss of step 4 was finite: the gradient check caught it
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path / "checkpoints")] == [3]
    saved = ckpt.load_latest(tmp_path / "checkpoints")[1]["model"]
    assert all(torch.isfinite(v).all() for v in saved.values())
    assert all(torch.isfinite(p).all() for p in objective.parameters())  # step 4 was never applied
    assert not (tmp_path / "done.json").exists()


@pytest.mark.slow
def test_two_process_gloo_ddp_matches_one_process_with_the_same_global_batch(tmp_path):
    settings = json.dumps({"batch_size": 16, "max_steps": 16, "log_every": 2, "checkpoint_every": 100,
                           "lr": 0.01})
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    common = ["-m", "kaleido.training.toy", "--dropout", "0", "--settings", settings]
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    ddp = subprocess.run([*launch, *common, "--out", str(tmp_path / "ddp")], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    from kaleido.training.toy import main as toy_main

    # the one-process reference runs in this process (one torch import fewer)
    toy_main(["--dropout", "0", "--settings", settings, "--out", str(tmp_path / "one")])
    a = read_log(tmp_path / "ddp" / "log.jsonl")
    b = read_log(tmp_path / "one" / "log.jsonl")
    assert [e["step"] for e in a] == [e["step"] for e in b] == list(range(2, 17, 2))
    assert [e["loss"] for e in a] == pytest.approx([e["loss"] for e in b], rel=1e-4)
    assert b[-1]["loss"] < 0.7 * b[0]["loss"]
    # both wrote one model, from rank 0 only
    from safetensors.torch import load_file

    wa, wb = load_file(tmp_path / "ddp" / "model" / "model.safetensors"), load_file(
        tmp_path / "one" / "model" / "model.safetensors")
    for key in wb:
        torch.testing.assert_close(wa[key], wb[key], rtol=1e-4, atol=1e-5)


def test_compile_setting_wraps_the_forward_and_keeps_the_checkpoint_keys(tmp_path, monkeypatch):
    """``pretrain.compile`` runs every step through ``torch.compile``'s module while checkpoints
    still hold the plain objective's weights (no ``_orig_mod.`` prefix), so a resume can load them."""
    compiled: list[torch.nn.Module] = []
    real_compile = torch.compile

    def eager_compile(module, *args, **kwargs):  # inductor takes minutes on a CPU: dynamo, eager backend
        compiled.append(module)
        return real_compile(module, backend="eager")

    monkeypatch.setattr(torch, "compile", eager_compile)
    _, result = _toy_run(tmp_path, max_steps=4, checkpoint_every=2, compile=True)
    assert result.steps == 4 and len(compiled) == 1
    step, state = ckpt.load_latest(tmp_path / "checkpoints")
    assert step == 4 and not any(k.startswith("_orig_mod") for k in state["model"])
    plain = tmp_path / "plain"
    _toy_run(plain, max_steps=4, checkpoint_every=2)
    assert ckpt.load_latest(plain / "checkpoints")[1]["model"].keys() == state["model"].keys()


def test_a_run_restarted_before_its_first_checkpoint_hides_its_old_tensorboard_points(tmp_path):
    """Steps redone after a restart replace the old points in TensorBoard, from step 1 when no
    checkpoint was reached (log.jsonl is truncated the same way)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from kaleido.training.logs import RunLog

    log = RunLog(tmp_path)
    for step in (1, 2, 3):
        log.write({"step": step, "loss": float(step)})
    log.close()
    # a restart is a later process: its event file must sort after the first one (TensorBoard
    # orders files by name, i.e. by their whole-second time stamp, then a per-process counter)
    time.sleep(1.05)
    log = RunLog(tmp_path, resume_step=0)
    for step in (1, 2):
        log.write({"step": step, "loss": 10.0 + step})
    log.close()
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [(1, 11.0), (2, 12.0)]
    assert [e["loss"] for e in read_log(tmp_path / "log.jsonl")] == [11.0, 12.0]


def test_auto_precision_is_bf16_only_on_a_gpu_that_has_it(monkeypatch) -> None:
    """``auto``: fp32 on a CPU, bf16 on a CUDA device with bf16, fp16 (grad scaler) on an older one."""
    import torch

    from kaleido.training.trainer import resolve_precision

    cuda = torch.device("cuda")
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("auto", cuda) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_precision("auto", cuda) == "fp16"
    assert resolve_precision("bf16", cuda) == "bf16"
    with pytest.raises(ValueError, match="fp16' needs a CUDA device"):
        resolve_precision("fp16", torch.device("cpu"))


def test_an_fp16_step_the_scaler_skips_does_not_advance_the_schedule(tmp_path) -> None:
    """Overflowing gradients: the grad scaler skips the step and lowers its scale; the warm-up and
    decay must not move on for a step that applied nothing. The next finite step does move them."""
    from types import SimpleNamespace

    from kaleido.training.optim import build_scheduler

    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = build_scheduler(optimizer, 4, 10)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    scaler.scale(torch.ones(()))  # as a backward of a scaled loss would, it makes the scale
    fake = SimpleNamespace(s=SimpleNamespace(clip_grad_norm=None), precision="fp16", ckpt_dir=tmp_path)
    before = model.weight.detach().clone()

    def step_with(grad: float) -> float:
        model.weight.grad = torch.full_like(model.weight, grad)
        model.bias.grad = torch.zeros_like(model.bias)
        return Trainer._optimizer_step(fake, model, optimizer, scheduler, scaler, 1)

    lr = step_with(float("inf"))
    assert torch.equal(model.weight, before) and scaler.get_scale() == 512.0
    assert scheduler.last_epoch == 0 and optimizer.param_groups[0]["lr"] == lr == pytest.approx(1 / 5)
    step_with(512.0)  # a gradient of 1 after unscaling
    assert not torch.equal(model.weight, before)
    assert scheduler.last_epoch == 1 and optimizer.param_groups[0]["lr"] == pytest.approx(2 / 5)
