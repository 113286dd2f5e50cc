"""The training log: one JSON object per logged step in ``log.jsonl``, mirrored to TensorBoard.

Keys: ``step``, ``epoch``, ``lr``, ``loss`` (the weighted total), ``loss/<task>``, the tasks'
own metrics (``metric/<name>``), ``samples_per_s`` and ``data_wait`` (share of step time spent
waiting for the next batch). On resume, entries after the checkpoint's step are cut so that the
log reads as one uninterrupted run.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from kaleido.atomic import write_text

log = logging.getLogger(__name__)


def read_log(path: Path) -> list[dict[str, Any]]:
    """Every complete entry of a ``log.jsonl``.

    A half-written last line (a crash mid-write) is ignored. Any other line that is not a JSON
    object is skipped and counted: one warning names the file, the count and the first line
    numbers. Blank lines hold nothing and are passed over."""
    entries: list[dict[str, Any]] = []
    path = Path(path)
    if not path.is_file():
        return entries
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    bad: list[int] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:  # the log is written ASCII-only: an undecodable byte (U+FFFD here) is damage
            entry = None if "\ufffd" in line else json.loads(line)
        except json.JSONDecodeError:
            entry = None
        if isinstance(entry, dict):
            entries.append(entry)
        elif number == len(lines) and entry is None:
            log.debug("%s: half-written last line %d ignored", path, number)
        else:
            bad.append(number)
    if bad:
        shown = ", ".join(str(n) for n in bad[:5]) + (", ..." if len(bad) > 5 else "")
        log.warning("%s: %d line%s not a log entry, skipped (line %s)", path, len(bad),
                    "" if len(bad) == 1 else "s", shown)
    return entries


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf; keep them readable
    return value


class RunLog:
    """Appends entries to ``log.jsonl`` and TensorBoard (rank 0 only)."""

    def __init__(self, folder: Path, resume_step: int = 0, tensorboard: bool = True) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / "log.jsonl"
        self.truncate_after(resume_step)
        self._fh = open(self.path, "a", encoding="utf-8")
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # hide the steps redone after a resume, from the start when no checkpoint was reached
            self._tb = SummaryWriter(str(self.folder / "tb"), purge_step=resume_step + 1)

    def truncate_after(self, step: int) -> None:
        """Drop entries logged after ``step`` (they are redone by the resumed run); the lines
        :func:`read_log` skips (a half-written last line, counted bad ones) are not kept."""
        if not self.path.exists():
            return
        kept = [e for e in read_log(self.path) if int(e.get("step", 0)) <= step]
        write_text(self.path, "".join(json.dumps(e) + "\n" for e in kept))

    def write(self, entry: dict[str, Any]) -> None:
        self._fh.write(json.dumps({k: _clean(v) for k, v in entry.items()}) + "\n")
        self._fh.flush()
        if self._tb is not None:
            step = int(entry["step"])
            for key, value in entry.items():
                if key != "step" and isinstance(value, int | float) and math.isfinite(value):
                    self._tb.add_scalar(key if "/" in key else f"train/{key}", value, step)
            self._tb.flush()

    def close(self) -> None:
        self._fh.close()
        if self._tb is not None:
            self._tb.close()
