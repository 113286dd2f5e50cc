"""What an aligner reads of one split, and what it must provide.

An aligner never opens files itself: the stage (:mod:`kaleido.aligners.align`) hands it an
:class:`AlignSource` built from the feature store, the data reader, the recipe's backbone and the
shared tokenizer. Tests build one from plain arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

Pairs = list[tuple[int, int]]


@dataclass
class AlignSource:
    """One split, row by row in feature-store order.

    ``image(i)`` returns the H x W x 3 uint8 image (raising :class:`kaleido.data.rows.BadRow` for an
    unusable one); ``boxes(i)`` the (P, 4) pixel patch boxes in that image; ``offsets(texts)`` the
    tokenizer's character offsets of each text without special tokens; ``feature_map(images)``
    maps a list of H x W x 3 uint8 images (any sizes; the backbone resizes them to its input size)
    to its last feature map (B, D, h, w); the keywords ``stride`` and ``image_size`` (passed only
    when an aligner sets them) pick an earlier, finer map and the input size (``stride = 1``: the
    normalised pixels). ``grid_key`` names the
    images, boxes and backbone, and
    ``cache`` is the folder where per-image caches keyed by it are shared between runs.
    """

    split: str
    texts: Sequence[str]
    image: Callable[[int], np.ndarray]
    boxes: Callable[[int], np.ndarray]
    levels: np.ndarray
    offsets: Callable[[Sequence[str]], list[list[tuple[int, int]]]]
    feature_map: Callable[[Sequence[np.ndarray]], torch.Tensor]
    grid_key: str = ""
    cache: Path | None = None

    def __len__(self) -> int:
        return len(self.texts)


class Aligner(Protocol):
    """A registered aligner: ``fit`` on the training split, then ``align`` any split."""

    def key(self) -> dict:
        """Settings that change the alignments (part of the cache key)."""
        ...

    def fit(self, train: AlignSource, workdir: Path, progress: bool = True) -> dict:
        """Train (or resume, or reuse) whatever the aligner needs under ``workdir``; a report."""
        ...

    def align(self, source: AlignSource, workdir: Path, progress: bool = True) -> tuple[list[Pairs], dict]:
        """Every row's ``(token_position, patch_index)`` pairs, and a report."""
        ...
