"""Write a model folder atomically: build it under a temporary name, then move files in place.

A crash mid-save leaves the previous folder intact (or no folder), never a half-written one that
``from_pretrained`` would half-load.
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
    """Yield a temporary sibling folder; on success its files replace those of ``folder``."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        yield tmp
        folder.mkdir(exist_ok=True)
        for item in sorted(tmp.iterdir()):
            target = folder / item.name
            if target.is_dir() and not item.is_dir():
                shutil.rmtree(target)
            os.replace(item, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def save_state(module: torch.nn.Module, path: Path) -> None:
    """A module's weights as one safetensors file (CPU, contiguous, detached)."""
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}, str(path))
