"""Write a model folder atomically: build it under a temporary name, then swap it in whole.

A crash mid-save leaves the previous folder intact, never a half-written one or a mix of old and
new files that ``from_pretrained`` / ``PretrainObjective.load`` would pair up. The folder is
replaced as a whole: files of an earlier save that this one does not write (an objective's heads
under a bare model) do not survive. Between the two renames of the swap there is an instant with
no folder (the previous one then sits beside it as ``.<name>.old-*``), never a mixed one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@contextmanager
def atomic_folder(folder: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces ``folder`` (whole)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        yield tmp
        old = None
        if folder.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old-", dir=folder.parent))
            os.replace(folder, old)
        try:
            os.replace(tmp, folder)
        except OSError:
            if old is not None:
                os.replace(old, folder)  # put the previous folder back
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def save_state(module: torch.nn.Module, path: Path) -> None:
    """A module's weights as one safetensors file (CPU, contiguous, detached)."""
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}, str(path))
