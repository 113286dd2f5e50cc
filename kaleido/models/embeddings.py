"""Image-side embeddings of Kaleido-BERT (SPEC sections 5 and 9).

Per patch: a linear projection of its feature, one projector per Kaleido level (levels differ in
scale, so they get their own); plus a bias-free projection of the 5-d position shared by all
levels; plus a level (segment) embedding; summed, LayerNorm, dropout. Patches of a level are
contiguous in the store's order, so the per-level projections are one matmul per level, not per
patch or per sample.
"""

from __future__ import annotations

import torch
from torch import nn


class VisualEmbeddings(nn.Module):
    """(B, P, D) features and (B, P, 5) positions -> (B, P, H) patch embeddings."""

    def __init__(self, feature_dim: int, hidden_size: int, grids: tuple[int, ...], dropout: float = 0.1,
                 layer_norm_eps: float = 1e-12, initializer_range: float = 0.02) -> None:
        super().__init__()
        self.grids = tuple(int(g) for g in grids)
        self.project = nn.ModuleList(nn.Linear(feature_dim, hidden_size) for _ in self.grids)
        self.position = nn.Linear(5, hidden_size, bias=False)
        self.level = nn.Embedding(len(self.grids), hidden_size)
        self.norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)
        counts = [g * g for g in self.grids]
        self.bounds = [(sum(counts[:i]), sum(counts[: i + 1])) for i in range(len(counts))]
        level_ids = torch.cat([torch.full((c,), i, dtype=torch.long) for i, c in enumerate(counts)])
        self.register_buffer("level_ids", level_ids, persistent=False)
        for module in (*self.project, self.position, self.level):
            nn.init.normal_(module.weight, std=initializer_range)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)

    @property
    def num_patches(self) -> int:
        return self.bounds[-1][1]

    def forward(self, features: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        if features.shape[1] != self.num_patches:
            raise ValueError(f"expected {self.num_patches} patches (grids {self.grids}), "
                             f"got {features.shape[1]}")
        dtype = self.position.weight.dtype
        features, positions = features.to(dtype), positions.to(dtype)
        parts = [proj(features[:, a:b]) for proj, (a, b) in zip(self.project, self.bounds, strict=True)]
        x = torch.cat(parts, dim=1) + self.position(positions) + self.level(self.level_ids)
        return self.dropout(self.norm(x))
