"""The unit every stage reads: one image-text row of a product, and the reader protocol."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


class BadRow(ValueError):
    """A row that cannot be used (corrupt image, wrong shape ...): skipped and counted, never guessed."""

    def __init__(self, index: int, reason: str, where: str | None = None) -> None:
        self.index, self.reason = index, reason
        self.where = where or f"row {index}"  # how messages name the row (see row_name)
        super().__init__(f"{self.where}: {reason}")


class DataError(ValueError):
    """A data file that cannot be used at all (missing, truncated, wrong key): one line naming it."""


@dataclass(frozen=True)
class RowMeta:
    """Everything about a row except its pixels (cheap to read for all rows)."""

    index: int
    text: str
    category: str
    subcategory: str
    product_id: str
    pose: str


@dataclass(frozen=True)
class Row(RowMeta):
    """A row with its image: H x W x 3 uint8 RGB."""

    image: np.ndarray | None = None
    text_fallback: bool = False  # its text was not UTF-8 and was read as cp1252 (counted by prepare)


def row_name(reader: Any, index: int) -> str:
    """How messages name row ``index`` of ``reader``: ``row 2``, or what the reader's own
    ``row_name`` says (a JSONL row adds its line: the number a user finds in an editor)."""
    name = getattr(reader, "row_name", None)
    return name(index) if name is not None else f"row {index}"


class Reader(Protocol):
    """A split of a data set. Lazy: opening is cheap, pixels are read per row.

    Safe with several DataLoader workers: each process opens its own file handle.
    """

    @property
    def text_fallbacks(self) -> int:
        """Rows whose text needed a decoding fallback (read-only: a plain attribute or a property)."""
        ...

    def __len__(self) -> int: ...

    def meta(self, index: int) -> RowMeta: ...

    def row(self, index: int) -> Row:
        """The row with its image; raises :class:`BadRow` when the image is unusable."""
        ...

    def product_ids(self) -> np.ndarray:
        """Product id of every row (str array), for grouping poses of one product."""
        ...
