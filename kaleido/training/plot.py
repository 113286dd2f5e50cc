"""Per-task loss curves of a run (the paper's Fig. 6), drawn from its ``log.jsonl``."""

from __future__ import annotations

import math
from pathlib import Path

from kaleido.atomic import atomic_file
from kaleido.training.logs import read_log


def find_log(path: Path) -> Path:
    """The ``log.jsonl`` of a pretrain folder, or the newest one under a run folder."""
    path = Path(path)
    if path.is_file():
        return path
    if (path / "log.jsonl").is_file():
        return path / "log.jsonl"
    found = sorted(path.glob("pretrain-*/log.jsonl"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(f"no log.jsonl in {path} or its pretrain-* folders")
    return found[-1]


def _series(entries: list[dict], key: str) -> tuple[list[int], list[float]]:
    steps, values = [], []
    for entry in entries:
        value = entry.get(key)
        if isinstance(value, int | float) and math.isfinite(value):
            steps.append(int(entry["step"]))
            values.append(float(value))
    return steps, values


def plot_losses(log_path: Path, out: Path | None = None) -> Path:
    """Draw one panel per task loss plus the total, written atomically beside the log by default."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    log_path = find_log(Path(log_path))
    entries = read_log(log_path)
    if not entries:
        raise ValueError(f"{log_path} holds no log entries yet")
    tasks = sorted({k.split("/", 1)[1] for e in entries for k in e if k.startswith("loss/")})
    keys = ["loss"] + [f"loss/{t}" for t in tasks]
    cols = min(4, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        steps, values = _series(entries, key)
        ax.plot(steps, values, lw=1.2)
        ax.set_title("total" if key == "loss" else key.split("/", 1)[1].upper(), fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.suptitle(f"pre-training losses ({log_path.parent.name})", fontsize=11)
    fig.tight_layout()
    out = Path(out) if out is not None else log_path.parent / "loss.png"
    try:
        with atomic_file(out) as tmp:  # the format from the name's suffix, PNG without one
            fig.savefig(tmp, dpi=110, format=out.suffix[1:].lower() or "png")
    finally:
        plt.close(fig)
    return out
