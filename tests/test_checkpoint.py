"""Checkpoints survive interrupted saves, and a SIGKILLed run resumes to identical weights."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kaleido.training import checkpoint as ckpt
from kaleido.training.logs import read_log

REPO = Path(__file__).resolve().parents[1]


def _state(value: float) -> dict:
    return {"model": {"w": torch.full((4, 4), value)}, "step": int(value)}


def test_interrupted_save_leaves_the_previous_checkpoint_loadable(tmp_path, monkeypatch):
    ckpt.save_checkpoint(tmp_path, 10, _state(10), keep=2)

    def half_write(obj, target, *args, **kwargs):
        with open(target, "wb") as fh:
            fh.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", half_write)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_checkpoint(tmp_path, 20, _state(20), keep=2)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-00000010.pt"]  # no partial file left
    step, state = ckpt.load_latest(tmp_path)
    assert step == 10 and torch.equal(state["model"]["w"], torch.full((4, 4), 10.0))


def test_a_save_killed_mid_write_is_ignored_and_cleaned_up(tmp_path):
    ckpt.save_checkpoint(tmp_path, 10, _state(10), keep=2)
    (tmp_path / ".step-00000020.tmp-0a1b2c3d.pt").write_bytes(b"truncated")  # what a SIGKILL mid-save leaves
    (tmp_path / "step-00000015.pt.tmp").write_bytes(b"truncated")  # what older code's killed save left
    step, _ = ckpt.load_latest(tmp_path)
    assert step == 10
    ckpt.save_checkpoint(tmp_path, 20, _state(20), keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-00000010.pt", "step-00000020.pt"]


def test_a_damaged_latest_checkpoint_falls_back_to_the_one_before(tmp_path):
    ckpt.save_checkpoint(tmp_path, 10, _state(10), keep=3)
    ckpt.save_checkpoint(tmp_path, 20, _state(20), keep=3)
    (tmp_path / "step-00000020.pt").write_bytes(b"garbage")
    step, state = ckpt.load_latest(tmp_path)
    assert step == 10 and state["step"] == 10


def test_keep_last_k(tmp_path):
    for step in (1, 2, 3, 4):
        ckpt.save_checkpoint(tmp_path, step, _state(step), keep=2)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [3, 4]


def _train(out: Path, kill_at: int | None = None) -> subprocess.CompletedProcess:
    settings = {"batch_size": 16, "max_steps": 24, "log_every": 2, "checkpoint_every": 5, "lr": 0.01,
                "keep_last": 2}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("KALEIDO_KILL_AT_STEP", None)
    if kill_at is not None:
        env["KALEIDO_KILL_AT_STEP"] = str(kill_at)
    # n=160 with batch 16 gives 10 steps per epoch: the kill and the resume cross an epoch boundary
    cmd = [sys.executable, "-m", "kaleido.training.toy", "--out", str(out), "--n", "160", "--dropout", "0.2",
           "--settings", json.dumps(settings)]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_sigkill_and_resume_ends_with_identical_weights(tmp_path):
    from safetensors.torch import load_file

    straight = _train(tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr[-2000:]
    killed = _train(tmp_path / "killed", kill_at=13)
    assert killed.returncode == -signal.SIGKILL
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path / "killed" / "checkpoints")] == [5, 10]
    assert not (tmp_path / "killed" / "done.json").exists()
    resumed = _train(tmp_path / "killed")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((tmp_path / "killed" / "done.json").read_text())["resumed_from"] == 10
    a = load_file(tmp_path / "straight" / "model" / "model.safetensors")
    b = load_file(tmp_path / "killed" / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # the log reads as one run: no step logged twice, the same values as the uninterrupted run
    la, lb = read_log(tmp_path / "straight" / "log.jsonl"), read_log(tmp_path / "killed" / "log.jsonl")
    assert [e["step"] for e in lb] == [e["step"] for e in la] == list(range(2, 25, 2))
    assert [e["loss"] for e in lb] == [e["loss"] for e in la]
