"""The sequence summary under the pooler: the ``[CLS]`` position (the paper's) or a mean.

BERT's pooler reads ``[CLS]``, which presumes a backbone whose ``[CLS]`` gathers the sequence. The
offline MiniLM (all-MiniLM-L6-v2) was trained with *mean* pooling: its ``[CLS]`` is an attention
sink that barely depends on the input (on its first 3 layers the spread of ``[CLS]`` across inputs
is ~4e-4 against ~0.45 for word positions), so ITM and every head on it start from a constant.
``"mean"`` feeds the pooler the way that backbone was trained, balanced between the modalities:
the mean of the attended text positions and the mean of the patches, averaged (a plain mean would
give the 55 patches almost three times the weight of a 20-word description). ``"text"`` reads the
mean of the attended text positions alone: in the single stream each of them has attended to every
patch, so it is still a summary of the pair, weighted towards what the description says (on the
quickstart's frozen encoder it separates categories best: docs/EVALUATION.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:  # the recipe schema imports ``Pooling``: no torch at `kaleido check` time
    import torch

Pooling = Literal["cls", "mean", "text"]
POOLINGS: tuple[str, ...] = get_args(Pooling)


def check_pooling(pooling: str) -> str:
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}; got {pooling!r}")
    return pooling


def text_mean(sequence: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
    """(B, H): the mean of the attended text positions (the first ``text_mask.shape[1]``)."""
    mask = text_mask.to(sequence.dtype).unsqueeze(-1)
    return (sequence[:, : text_mask.shape[1]] * mask).sum(1) / mask.sum(1).clamp_min(1.0)


def balanced_mean(sequence: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
    """(B, H): the mean of the attended text positions and the mean of the patches, averaged."""
    return 0.5 * (text_mean(sequence, text_mask) + sequence[:, text_mask.shape[1]:].mean(1))


def summary(sequence: torch.Tensor, text_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """(B, H): what the pooler reads for ``pooling``: ``[CLS]``, the balanced mean or the text mean."""
    if check_pooling(pooling) == "cls":
        return sequence[:, 0]
    return balanced_mean(sequence, text_mask) if pooling == "mean" else text_mean(sequence, text_mask)
