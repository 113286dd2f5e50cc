"""The sequence summary under the pooler: the ``[CLS]`` position (the paper's) or a balanced mean.

BERT's pooler reads ``[CLS]``, which presumes a backbone whose ``[CLS]`` gathers the sequence. The
offline MiniLM (all-MiniLM-L6-v2) was trained with *mean* pooling: its ``[CLS]`` is an attention
sink that barely depends on the input (on its first 3 layers the spread of ``[CLS]`` across inputs
is ~4e-4 against ~0.45 for word positions), so ITM and every head on it start from a constant.
``"mean"`` feeds the pooler the way that backbone was trained, balanced between the modalities:
the mean of the attended text positions and the mean of the patches, averaged (a plain mean would
give the 55 patches almost three times the weight of a 20-word description).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # the recipe schema imports ``Pooling``: no torch at `kaleido check` time
    import torch

Pooling = Literal["cls", "mean"]
POOLINGS: tuple[str, ...] = ("cls", "mean")


def check_pooling(pooling: str) -> str:
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}; got {pooling!r}")
    return pooling


def balanced_mean(sequence: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
    """(B, H): the mean of the attended text positions and the mean of the patches, averaged."""
    t = text_mask.shape[1]
    mask = text_mask.to(sequence.dtype).unsqueeze(-1)
    text = (sequence[:, :t] * mask).sum(1) / mask.sum(1).clamp_min(1.0)
    return 0.5 * (text + sequence[:, t:].mean(1))
