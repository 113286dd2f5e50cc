"""Users' own data: a JSONL file of image path, text, category, sub-category and product id.

One object per line: ``image`` (path relative to the JSONL file, or absolute), ``text``,
``category``, ``subcategory``, ``product_id`` and optionally ``pose``; other keys are ignored.
``image`` and ``text`` must be JSON strings; ``category``, ``subcategory``, ``product_id`` and
``pose`` may also be integers (``"product_id": 14893`` reads as ``"14893"``). A line that is not
valid JSON, lacks a key or holds another type there is skipped, counted and logged (once per
file per process, however often the file is read); images are decoded with PIL only when a row
is read, and an unreadable one raises :class:`BadRow` with the reason.
"""

from __future__ import annotations

import copy
import json
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from kaleido.data.images import read_image, to_rgb
from kaleido.data.rows import BadRow, DataError, Row, RowMeta
from kaleido.data.text import decode

log = logging.getLogger(__name__)

# which rows a file gives: part of the feature store's key (JsonlData.fingerprint), so that a
# store written by a reader that took other lines (2: a non-string text is skipped) is not reused
READER_VERSION = 2
BOM = b"\xef\xbb\xbf"  # UTF-8 byte order mark, which some editors put at the start of a file
REQUIRED = ("image", "text", "category", "subcategory", "product_id")
STRINGS = ("image", "text")  # must be JSON strings: 123 as a description is a mistake, not a text
IDS = ("category", "subcategory", "product_id", "pose")  # strings, or integers read as their digits
SHOWN = 20  # skipped lines logged one by one; the rest are counted
_logged: set[tuple[str, int, int]] = set()  # file_version()s whose skipped lines were logged


def file_version(path: Path) -> tuple[str, int, int]:
    """A file as it is now (resolved path, size, mtime): the key of what a process does once per
    version of a file (log its skipped lines, hash its bytes, compare its products)."""
    st = path.stat()
    return str(path.resolve()), st.st_size, st.st_mtime_ns


def _field_problems(obj: dict) -> str | None:
    """Why a parsed line is no row (missing keys, then keys of the wrong type), or None."""
    missing = [k for k in REQUIRED if obj.get(k) is None or (isinstance(obj[k], str) and not obj[k].strip())]
    if missing:
        return f"missing {', '.join(missing)}"
    wrong = []
    for k in (*STRINGS, *IDS):
        value = obj.get(k)
        if value is None or isinstance(value, str):
            continue
        if k in STRINGS:
            wrong.append(f"{k} is {json.dumps(value)[:40]} ({type(value).__name__}), not a string")
        elif isinstance(value, bool) or not isinstance(value, int):
            wrong.append(f"{k} is {json.dumps(value)[:40]} ({type(value).__name__}), not a string or integer")
    return "; ".join(wrong) or None


class JsonlReader:
    """A JSONL file (or a subset of its rows, for splits) as a :class:`kaleido.data.rows.Reader`."""

    def __init__(self, path: str | Path, rows: Sequence[int] | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"{self.path}: no such file")
        self.root = self.path.parent
        self.skipped: list[str] = []  # "line N: reason" of each skipped line
        self._fallback_lines: set[int] = set()
        records: list[tuple[RowMeta, str]] = []
        numbers: list[int] = []  # each record's line in the file
        with open(self.path, "rb") as fh:
            for number, raw in enumerate(fh, start=1):
                if number == 1 and raw.startswith(BOM):
                    raw = raw[len(BOM):]  # saved "UTF-8 with BOM": not part of the first object
                if not raw.strip():
                    continue
                line, fallback = decode(raw)
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    self._skip(number, f"not JSON ({exc.msg})")
                    continue
                if not isinstance(obj, dict):
                    self._skip(number, "not a JSON object")
                    continue
                problem = _field_problems(obj)
                if problem:
                    self._skip(number, problem)
                    continue
                if fallback:
                    self._fallback_lines.add(len(records))
                pose = "" if obj.get("pose") is None else str(obj["pose"])  # pose 0 is "0"
                records.append((RowMeta(index=len(records), text=str(obj["text"]).strip(),
                                        category=str(obj["category"]), subcategory=str(obj["subcategory"]),
                                        product_id=str(obj["product_id"]), pose=pose),
                                str(obj["image"])))
                numbers.append(number)
        if not records:
            first = f"; first problem: {self.skipped[0]}" if self.skipped else ""
            raise DataError(f"{self.path}: no usable rows (needs keys {', '.join(REQUIRED)}){first}")
        self.skipped_note = ""  # where this file's skipped lines are reported when not by this reader
        self._log_skipped()
        self._all, self._all_lines = records, numbers
        self._select(range(len(records)) if rows is None else rows)

    def _select(self, rows: Sequence[int]) -> None:
        """Keep ``rows`` of the file's records (indices into all of them), renumbered from 0."""
        self._origin = list(rows)
        self._lines = [self._all_lines[old] for old in rows]
        self._records = []
        for new, old in enumerate(rows):
            meta, image = self._all[old]
            self._records.append((RowMeta(new, meta.text, meta.category, meta.subcategory, meta.product_id,
                                          meta.pose), image, old in self._fallback_lines))
        self.text_fallbacks = sum(fb for _m, _i, fb in self._records)

    def subset(self, rows: Sequence[int]) -> JsonlReader:
        """The same file's ``rows`` (indices into this reader's own), without reading it again."""
        if any(not 0 <= r < len(self._records) for r in rows):
            raise IndexError(f"{self.path}: rows out of range 0..{len(self._records) - 1}")
        out = copy.copy(self)
        out._select([self._origin[r] for r in rows])
        return out

    def _log_skipped(self) -> None:
        """Log the skipped lines, once per file (as it is now) per process: the splits of one file
        and later stages (align) read it again, and the same lines would be warned again."""
        key = file_version(self.path)
        if not self.skipped or key in _logged:
            return
        _logged.add(key)
        for reason in self.skipped[:SHOWN]:
            log.warning("%s: skipped %s", self.path, reason)
        if len(self.skipped) > SHOWN:
            log.warning("%s: ... and %d more skipped lines (reader.skipped lists them)", self.path,
                        len(self.skipped) - SHOWN)

    def without_skipped(self, note: str) -> JsonlReader:
        """This reader with no skipped lines of its own: another split of the same file reports
        them (``note`` says where), so that each dropped line is counted once."""
        out = copy.copy(self)
        out.skipped, out.skipped_note = [], note
        return out

    def _skip(self, number: int, reason: str) -> None:
        self.skipped.append(f"line {number}: {reason}")

    def __len__(self) -> int:
        return len(self._records)

    def meta(self, index: int) -> RowMeta:
        return self._records[index][0]

    def image_path(self, index: int) -> Path:
        return self.root / self._records[index][1]

    def line(self, index: int) -> int:
        """The file line of row ``index`` (1-based, as editors and the skipped lines count)."""
        return self._lines[index]

    def row_name(self, index: int) -> str:
        """``row 2 (pairs.jsonl line 4)``: a split's row index alone is not where the file has it."""
        return f"row {index} ({self.path.name} line {self.line(index)})"

    def row(self, index: int) -> Row:
        meta = self.meta(index)
        try:
            image = to_rgb(read_image(self.image_path(index), meta.index), meta.index)
        except BadRow as exc:
            raise BadRow(exc.index, exc.reason, where=self.row_name(index)) from None
        return Row(**vars(meta), image=image, text_fallback=self._records[index][2])

    def product_ids(self) -> np.ndarray:
        return np.array([m.product_id for m, _i, _f in self._records], dtype=str)

    def summary(self, progress: Callable[[int, int], None] | None = None) -> dict:
        """Counts of the rows, and of the images as prepare reads them: each is decoded in full
        (a truncated JPEG has a good header), so ``unreadable_images`` (the first reasons in
        ``unreadable``) are the rows prepare would skip for their image. ``progress(done, total)``
        is called after each image."""
        sizes: Counter = Counter()
        unreadable: list[str] = []
        for i in range(len(self)):
            try:
                sizes[self.row(i).image.shape] += 1
            except BadRow as exc:  # by line: this reader's row numbers are not a split's
                unreadable.append(f"line {self.line(i)}: {exc.reason}")
            if progress is not None:
                progress(i + 1, len(self))
        return {
            "format": "jsonl",
            "rows": len(self),
            "products": len(set(self.product_ids().tolist())),
            "categories": Counter(m.category for m, _i, _f in self._records),
            "subcategories": Counter(m.subcategory for m, _i, _f in self._records),
            "image_shape": sizes.most_common(1)[0][0] if sizes else None,
            "image_shapes": len(sizes),
            "unreadable_images": len(unreadable),
            "unreadable": unreadable[:SHOWN],
            "skipped_lines": len(self.skipped),
            "text_fallbacks": self.text_fallbacks,
        }
