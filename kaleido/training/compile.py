"""``torch.compile`` with the settings kaleido's objectives need, for the trainer and the benchmarks alike.

The packed encoder (``[model] packed``, :mod:`kaleido.models.packed`) keeps a batch's real
positions by boolean indexing, whose output size depends on the data. Left at its default, dynamo
breaks the graph there; it then compiles each encoder layer's forward as its own frame, and since
transformers wraps every layer method in one shared decorator frame, those recompile into each
other until the recompile limit sends the rest of the step back to eager (measured on the tiny
CPU objective: 26 graph breaks, 24 graphs). Capturing data-dependent output shapes traces the
whole step instead (no graph break). The padded path is unaffected.
"""

from __future__ import annotations

from typing import Any

import torch


def compile_module(module: torch.nn.Module, mode: str = "default", backend: str | Any = "inductor") -> Any:
    """``torch.compile(module)`` with data-dependent output shapes captured, not graph-broken."""
    import torch._dynamo

    torch._dynamo.config.capture_dynamic_output_shape_ops = True
    return torch.compile(module, mode=mode, backend=backend)
