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


def _toy(out: Path, identity=None, hidden: int = 32, seed: int = 0, **settings):
    from kaleido.recipe.schema import PretrainSettings
    from kaleido.training.toy import ToyDataset, ToyObjective
    from kaleido.training.trainer import Trainer, seed_everything

    seed_everything(seed)
    base = {"batch_size": 16, "max_steps": 4, "log_every": 2, "checkpoint_every": 2, "lr": 0.01}
    return Trainer(ToyObjective(hidden=hidden), ToyDataset(64), PretrainSettings(**{**base, **settings}), out,
                   seed=seed, progress=False, tensorboard=False, plot=False, find_unused_parameters=False,
                   identity=identity, restart_hint="HINT").fit()


def test_a_checkpoint_of_another_run_is_refused_in_one_line_naming_what_differs(tmp_path):
    _toy(tmp_path, identity={"masker.name": "agm"})
    state = ckpt.load_latest(tmp_path / "checkpoints")[1]
    assert state["identity"]["pretrain.lr"] == 0.01 and state["identity"]["masker.name"] == "agm"
    assert "pretrain.log_every" not in state["identity"]  # how a run runs is not what shaped it
    cases = [({"lr": 0.02}, {}, "pretrain.lr was 0.01, now 0.02"),
             ({}, {"seed": 1}, "seed was 0, now 1"),
             ({"max_steps": 6}, {}, "total_steps was 4, now 6"),  # a spliced schedule
             ({"batch_size": 32}, {}, "pretrain.batch_size was 16, now 32"),
             ({"warmup_ratio": 0.5}, {}, "pretrain.warmup_ratio was 0.1, now 0.5"),
             ({}, {"identity": {"masker.name": "random"}}, "masker.name was 'agm', now 'random'")]
    for settings, kwargs, named in cases:
        kwargs = {"identity": {"masker.name": "agm"}, **kwargs}
        with pytest.raises(ckpt.CheckpointError) as err:
            _toy(tmp_path, **kwargs, **settings)
        message = str(err.value)
        assert named in message and message.endswith("HINT") and "\n" not in message, message
        assert message.count(" was ") == 1, message  # only what differs is named
    # how the run runs may change on a restart: it resumes
    result = _toy(tmp_path, identity={"masker.name": "agm"}, log_every=1, checkpoint_every=1, keep_last=3,
                  num_workers=1, grad_accum=2)
    assert result.resumed_from == 4


def test_weights_that_do_not_fit_are_one_checkpoint_error_and_old_checkpoints_check_their_batch(tmp_path):
    _toy(tmp_path)
    with pytest.raises(ckpt.CheckpointError, match=r"does not fit this objective \(RuntimeError: Error\(s\) "
                                                   r"in loading state_dict.*; HINT$"):
        _toy(tmp_path, hidden=16)
    # a checkpoint written before checkpoints recorded their run: only the global batch is checked
    step, state = ckpt.load_latest(tmp_path / "checkpoints")
    del state["identity"]
    torch.save(state, ckpt.checkpoint_path(tmp_path / "checkpoints", step))
    with pytest.raises(ckpt.CheckpointError, match="pretrain.batch_size was 16, now 32"):
        _toy(tmp_path, batch_size=32)
    assert _toy(tmp_path, lr=0.02).resumed_from == 4


def test_main_reports_a_checkpoint_error_in_one_line_with_its_own_way_to_start_over(monkeypatch, capsys):
    from kaleido.training import main as entry
    from kaleido.training.pipeline import Launch, launch_args

    hints = []

    def refuse(recipe, out, progress=True, restart_hint=None):
        hints.append(restart_hint)
        raise ckpt.CheckpointError(f"run/checkpoints: the checkpoint at step 3 belongs to another run: "
                                   f"pretrain.lr was 0.01, now 0.02; set them back to resume, or "
                                   f"{restart_hint or entry.MAIN_HINT.format(checkpoints='run/checkpoints')}")

    monkeypatch.setattr(entry, "train", refuse)
    recipe = str(REPO / "tests" / "recipes" / "tiny.toml")
    assert entry.main(["--recipe", recipe, "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: run/checkpoints:") and "--out" in err[0]
    assert "--force" not in err[0]  # this entry point has no --force
    # launched by `kaleido run` (torchrun), the way to start over is `kaleido run`'s
    assert entry.main(["--recipe", recipe, "--no-progress", "--from-run"]) == 1
    assert hints == [None, entry.RUN_HINT] and "--force pretrain" in entry.RUN_HINT
    assert "--from-run" in launch_args(Path("r.toml"), Path("out"), Launch(nproc_per_node=2), progress=False)


def test_the_first_log_entry_after_a_resume_averages_the_same_steps_as_an_uninterrupted_run(tmp_path):
    """log_every 4, checkpoint_every 3: resumed from step 3, the step-4 entry still averages steps
    1-4 (the log window is checkpointed), so the log reads as one run."""
    settings = {"max_steps": 8, "log_every": 4, "checkpoint_every": 3, "keep_last": 5}
    _toy(tmp_path / "straight", **settings)
    _toy(tmp_path / "resumed", **settings)
    for step in (6, 8):  # as if killed after step 5: only the step-3 checkpoint is left
        ckpt.checkpoint_path(tmp_path / "resumed" / "checkpoints", step).unlink()
    (tmp_path / "resumed" / "done.json").unlink()
    assert _toy(tmp_path / "resumed", **settings).resumed_from == 3
    straight, resumed = (read_log(tmp_path / d / "log.jsonl") for d in ("straight", "resumed"))
    assert [e["step"] for e in resumed] == [e["step"] for e in straight] == [4, 8]
    for a, b in zip(straight, resumed, strict=True):
        for key in ("loss", "loss/reg", "loss/cls", "metric/cls/acc", "lr"):
            assert b[key] == a[key], (a["step"], key)


def test_pruning_after_resuming_from_an_older_checkpoint_keeps_the_good_ones(tmp_path):
    """The newest checkpoint is unreadable, so the run resumed from the one before; its next save
    must not count the damaged one among ``keep_last`` and delete the good ones."""
    for step in (5, 10, 20):
        ckpt.save_checkpoint(tmp_path, step, _state(step), keep=3)
    (tmp_path / "step-00000020.pt").write_bytes(b"garbage")
    assert ckpt.load_latest(tmp_path)[0] == 10
    ckpt.save_checkpoint(tmp_path, 15, _state(15), keep=2)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [10, 15]
    assert ckpt.load_latest(tmp_path)[0] == 15
    # set aside, not deleted: a read that failed only for a moment must not cost a good file
    assert (tmp_path / "step-00000020.pt.unreadable").read_bytes() == b"garbage"


def test_rng_state_round_trip_restores_python_numpy_and_torch_draws():
    """A resumed run (and the SAT aligner's resume) must draw what the uninterrupted one would; the
    SIGKILL test only sees the streams its toy run happens to use."""
    import random

    import numpy as np

    state = ckpt.rng_state()
    first = (random.random(), float(np.random.rand()), float(torch.rand(())))
    random.seed(123)
    np.random.seed(123)
    torch.manual_seed(123)
    ckpt.set_rng_state(state)
    assert (random.random(), float(np.random.rand()), float(torch.rand(()))) == first
