"""Atomic training checkpoints: write a temporary file, flush it to disk, then rename
(:func:`kaleido.atomic.atomic_file`).

A rename is atomic on POSIX file systems, so a reader only ever sees a complete checkpoint: a
save killed or failing half-way leaves a hidden ``.step-*.tmp-*`` file that is ignored (and
removed by the next save), and the previous checkpoint stays loadable. Only the last ``keep`` are
kept.
"""

from __future__ import annotations

import logging
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kaleido.atomic import atomic_file, is_temporary

log = logging.getLogger(__name__)

_NAME = re.compile(r"^step-(\d+)\.pt$")


class CheckpointError(RuntimeError):
    """No usable checkpoint where one was expected."""


def checkpoint_path(folder: Path, step: int) -> Path:
    return Path(folder) / f"step-{step:08d}.pt"


def list_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints in ``folder``, oldest first (temporary files are not checkpoints)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _NAME.match(path.name)
        if match and path.is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def save_checkpoint(folder: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Write ``state`` as ``step-<step>.pt`` atomically, then drop all but the last ``keep``.

    Checkpoints of later steps are set aside first, renamed ``*.unreadable`` (never deleted: a read
    that failed only for a moment, on a network file system say, leaves a good file): a run saving
    ``step`` resumed before them, so it could not read them, and counting them among the ``keep``
    would delete the good ones while keeping the damaged newest."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.iterdir():  # left by a save that was killed half-way (or by older code's)
        if is_temporary(stale) or stale.name.endswith(".pt.tmp"):
            stale.unlink(missing_ok=True)
    final = checkpoint_path(folder, step)
    with atomic_file(final) as tmp:
        torch.save(state, tmp)
    for later, path in list_checkpoints(folder):
        if later > step:
            aside = path.with_name(path.name + ".unreadable")
            log.warning("renaming %s to %s: a checkpoint after step %d, which this run could not read "
                        "and resumed before", path, aside.name, step)
            path.replace(aside)
    for old_step, path in list_checkpoints(folder)[:-keep]:
        if old_step != step:
            path.unlink(missing_ok=True)
    return final


def load_latest(folder: Path) -> tuple[int, dict[str, Any]] | None:
    """The newest checkpoint that loads, or None. An unreadable one is logged and skipped."""
    for step, path in reversed(list_checkpoints(folder)):
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:  # a damaged file must not block resuming from an older one
            log.warning("checkpoint %s is unreadable (%s: %s); trying an older one", path,
                        type(exc).__name__, exc)
            continue
        return step, state
    return None


# -- random number generator states -----------------------------------------------------------

def rng_state() -> dict[str, Any]:
    """Every RNG this process draws from: Python, NumPy, torch CPU and every CUDA device."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
