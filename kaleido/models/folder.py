"""A module's weights as one safetensors file: what every model folder holds.

Folders are written through :func:`kaleido.atomic.atomic_folder`, so a crash mid-save leaves the
previous folder intact, never a half-written one or a mix of old and new files that
``from_pretrained`` / ``PretrainObjective.load`` would pair up.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def save_state(module: torch.nn.Module, path: Path) -> None:
    """A module's weights as one safetensors file (CPU, contiguous, detached)."""
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}, str(path))
