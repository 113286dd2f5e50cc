"""Padding-free encoding: the joint sequences of a batch packed into one, attention kept per sample.

A Kaleido sequence is ``T`` text positions (padded to ``max_text_len``) and ``P`` patches; with
short descriptions much of ``T`` is padding that every matrix product of every layer computes for
nothing (41% of the positions in ``bench/gpu_train.py``'s batches). Packing keeps only the real
positions, ``(1, N, H)`` with ``N = sum of the samples' lengths``, and the attention is block
diagonal: a position sees the positions of its own sample only. On a CUDA device in bf16/fp16
without attention dropout that is torch's FlashAttention ``varlen_attn`` over the cumulative
lengths (it has no dropout). Otherwise (a CPU, fp32, or attention dropout on) only the attention is computed
padded: the packed queries, keys and values are scattered back to (B, heads, S, d) for SDPA with
the key-padding mask and gathered again, so the matrix products of every layer still skip the
padding and the result is the padded path's.

The encoder's layers receive the boundaries through the attention interface's keyword arguments
(transformers passes them down to the attention function), registered as ``ATTENTION``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import torch
from torch.nn import functional as F

ATTENTION = "kaleido_packed"


@dataclass
class Packing:
    """Where the real positions of a (B, S) batch went: ``keep`` (B, S) bool, ``index`` (N,) their
    flat positions in ``B * S``, the samples' cumulative lengths ``cu_seqlens`` (B + 1,) int32, and
    ``max_len`` (an upper bound: S). Packing and unpacking both go through the one ``index``, so a
    compiled step has one data-dependent size ``N``; two boolean indexings gave two, which
    inductor (torch 2.11, on an H100) could not reconcile in the backward graph."""

    keep: torch.Tensor
    index: torch.Tensor
    cu_seqlens: torch.Tensor
    max_len: int

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        """(B, S, H) -> (1, N, H): the real positions, sample after sample."""
        return gather_rows(x, self.index)[None]

    def unpack(self, packed: torch.Tensor) -> torch.Tensor:
        """(1, N, H) -> (B, S, H), zeros at the padding."""
        return scatter_rows(packed[0], self.index, self.keep.shape)

    def kwargs(self) -> dict:
        """What the encoder's attention needs (passed through ``encoder(..., **kwargs)``)."""
        return {"kaleido_cu_seqlens": self.cu_seqlens, "kaleido_max_len": self.max_len,
                "kaleido_keep": self.keep, "kaleido_index": self.index}


def gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(B, S, ...) -> (N, ...): the rows at the flat positions ``index``."""
    return x.flatten(0, 1).index_select(0, index)


def scatter_rows(rows: torch.Tensor, index: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """(N, ...) -> (B, S, ...) of ``shape``'s (B, S): ``rows`` at the flat positions ``index``, zeros
    elsewhere (the inverse of :func:`gather_rows`)."""
    b, s = shape
    flat = rows.new_zeros((b * s, *rows.shape[1:])).index_copy(0, index, rows)
    return flat.view(b, s, *rows.shape[1:])


def packing(mask: torch.Tensor) -> Packing:
    """From a (B, S) key-padding mask (1 = real)."""
    keep = mask.bool()
    index = keep.flatten().nonzero().squeeze(1)
    lengths = keep.sum(1, dtype=torch.int32)
    cu = F.pad(lengths.cumsum(0, dtype=torch.int32), (1, 0))
    return Packing(keep, index, cu, int(mask.shape[1]))


def packed_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                     kaleido_cu_seqlens: torch.Tensor | None = None, kaleido_max_len: int = 0,
                     kaleido_keep: torch.Tensor | None = None, kaleido_index: torch.Tensor | None = None,
                     **_: object) -> tuple[torch.Tensor, None]:
    """transformers attention function: (1, heads, N, d) query/key/value of a packed batch ->
    ((1, N, heads, d), None), each position attending within its own sample."""
    if kaleido_cu_seqlens is None or kaleido_keep is None or kaleido_index is None:
        raise ValueError(f"attention {ATTENTION!r} needs the packing's boundaries (KaleidoModel packs them)")
    if query.shape[0] != 1:
        raise ValueError(f"a packed batch is one sequence, got {query.shape[0]}")
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))  # (N, heads, d)
    if query.is_cuda and dropout == 0 and query.dtype in (torch.float16, torch.bfloat16):  # FlashAttention's
        return flash_varlen(q, k, v, kaleido_cu_seqlens, kaleido_max_len, scaling)[None], None
    keep, index = kaleido_keep, kaleido_index

    def padded(t: torch.Tensor) -> torch.Tensor:  # (N, heads, d) -> (B, heads, S, d)
        return scatter_rows(t, index, keep.shape).transpose(1, 2)

    out = F.scaled_dot_product_attention(padded(q), padded(k), padded(v), attn_mask=keep[:, None, None, :],
                                         dropout_p=dropout, scale=scaling)
    return gather_rows(out.transpose(1, 2), index)[None], None


@cache
def _varlen_attn() -> tuple[Callable, bool]:
    """torch's ``varlen_attn`` and whether it takes ``scale`` (not every torch release with the
    function does: the GPU machines run an older torch than this one)."""
    from torch.nn.attention.varlen import varlen_attn

    return varlen_attn, "scale" in inspect.signature(varlen_attn).parameters


def flash_varlen(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor, max_len: int,
                 scaling: float | None) -> torch.Tensor:
    """(N, heads, d) packed query/key/value -> (N, heads, d), attention within each sample; a
    ``scaling`` other than 1/sqrt(d) is folded into the queries where ``scale`` is not taken."""
    varlen_attn, takes_scale = _varlen_attn()
    if takes_scale:
        return varlen_attn(q, k, v, cu_seqlens, cu_seqlens, max_len, max_len, scale=scaling)
    if scaling is not None and not math.isclose(scaling, q.shape[-1] ** -0.5):
        q = q * (scaling * q.shape[-1] ** 0.5)
    return varlen_attn(q, k, v, cu_seqlens, cu_seqlens, max_len, max_len)


def register_attention() -> None:
    """Make ``ATTENTION`` a name the BERT layers can use (idempotent)."""
    from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION, packed_attention)
