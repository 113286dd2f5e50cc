"""Lazy reader of Fashion-Gen HDF5 files (the real release format, SPEC section 10).

Opening validates the keys and shapes but reads no pixels; ``row(i)`` reads one image. The
h5py handle is opened per process (and reopened when ``os.getpid()`` changes), and dropped on
pickling, so one reader object is safe in forked or spawned DataLoader workers.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from kaleido.data.images import to_rgb
from kaleido.data.rows import BadRow, DataError, Row, RowMeta
from kaleido.data.text import decode_field

IMAGE_KEY = "input_image"
TEXT_KEYS = {"text": "input_description", "category": "input_category", "subcategory": "input_subcategory"}
PRODUCT_KEY = "input_productID"
POSE_KEY = "input_pose"  # optional
CHUNK = 4096  # rows per read when scanning a whole column


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _product_id(value: Any) -> str:
    v = np.asarray(value).reshape(-1)[0]
    if isinstance(v, (bytes, np.bytes_)):
        return decode_field(v)[0]
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v.item() if hasattr(v, "item") else v)


class FashionGenReader:
    """A Fashion-Gen HDF5 file as a :class:`kaleido.data.rows.Reader`.

    ``text_fallbacks`` counts the rows this process has decoded whose text needed the cp1252
    fallback (see :mod:`kaleido.data.text`); :meth:`count_text_fallbacks` scans the whole file.
    """

    def __init__(self, path: str | Path, text_key: str = TEXT_KEYS["text"]) -> None:
        self.path = Path(path)
        self.keys = dict(TEXT_KEYS, text=text_key)
        self._handle: Any = None
        self._pid: int | None = None
        self._fallback_rows: set[int] = set()
        self._product_ids: np.ndarray | None = None
        f = self._file()
        for key in (IMAGE_KEY, PRODUCT_KEY, *self.keys.values()):
            if key not in f:
                raise DataError(f"{self.path}: missing HDF5 key {key!r} (has: {', '.join(sorted(f))})")
        images = f[IMAGE_KEY]
        if images.ndim not in (3, 4) or images.shape[0] == 0:
            raise DataError(f"{self.path}: key {IMAGE_KEY!r} has shape {images.shape}, "
                            "expected (N, H, W, 3) (or grey / RGBA)")
        self._len = int(images.shape[0])
        for key in (PRODUCT_KEY, *self.keys.values()):
            if f[key].shape[0] != self._len:
                raise DataError(f"{self.path}: key {key!r} has {f[key].shape[0]} rows, "
                                f"{IMAGE_KEY!r} has {self._len}")
        self.has_pose = POSE_KEY in f and f[POSE_KEY].shape[0] == self._len
        self.image_shape: tuple[int, ...] = tuple(int(d) for d in images.shape[1:])

    # -- handle per process ----------------------------------------------------------------------
    def _file(self) -> Any:
        if self._handle is None or self._pid != os.getpid():
            import h5py

            if not self.path.is_file():
                raise DataError(f"{self.path}: no such file")
            try:
                self._handle = h5py.File(self.path, "r")
            except OSError as exc:
                raise DataError(f"{self.path}: not a readable HDF5 file ({_first_line(exc)})") from None
            self._pid = os.getpid()
        return self._handle

    def close(self) -> None:
        if self._handle is not None and self._pid == os.getpid():
            self._handle.close()
        self._handle, self._pid = None, None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_handle"], state["_pid"] = None, None  # each process opens its own
        return state

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def _read(self, key: str, index: Any) -> Any:
        try:
            return self._file()[key][index]
        except OSError as exc:  # a corrupt chunk in an otherwise readable file
            raise DataError(f"{self.path}: cannot read key {key!r} at {index} ({_first_line(exc)})") from None

    # -- Reader protocol -------------------------------------------------------------------------
    @property
    def text_fallbacks(self) -> int:
        return len(self._fallback_rows)

    def __len__(self) -> int:
        return self._len

    def _check(self, index: int) -> int:
        if not -self._len <= index < self._len:
            raise IndexError(f"row {index} out of range for {self._len} rows of {self.path}")
        return index % self._len

    def meta(self, index: int) -> RowMeta:
        i = self._check(index)
        text, fallback = decode_field(self._read(self.keys["text"], i))
        if fallback:
            self._fallback_rows.add(i)
        pose = decode_field(self._read(POSE_KEY, i))[0] if self.has_pose else ""
        return RowMeta(index=i, text=text, category=decode_field(self._read(self.keys["category"], i))[0],
                       subcategory=decode_field(self._read(self.keys["subcategory"], i))[0],
                       product_id=_product_id(self._read(PRODUCT_KEY, i)), pose=pose)

    def row(self, index: int) -> Row:
        m = self.meta(index)
        if not m.text:  # nothing to pair the image with (the JSONL reader skips such lines too)
            raise BadRow(m.index, "empty description")
        try:
            pixels = self._file()[IMAGE_KEY][m.index]
        except OSError as exc:
            raise BadRow(m.index, f"unreadable image data ({_first_line(exc)})") from None
        return Row(**vars(m), image=to_rgb(pixels, m.index), text_fallback=m.index in self._fallback_rows)

    def product_ids(self) -> np.ndarray:
        if self._product_ids is None:
            ids = np.asarray(self._read(PRODUCT_KEY, slice(None))).reshape(len(self), -1)[:, 0]
            if ids.dtype.kind == "f" and np.all(np.isfinite(ids)) and np.all(ids == np.round(ids)):
                ids = ids.astype(np.int64)  # 161470.0 -> "161470", as meta() reads it
            if ids.dtype.kind in "iu":
                self._product_ids = ids.astype(str)
            else:
                self._product_ids = np.array([_product_id(v) for v in ids], dtype=str)
        return self._product_ids

    # -- whole-file scans (for `kaleido data info`) -----------------------------------------------
    def column(self, field: str) -> list[str]:
        """Every decoded value of a text field ('text', 'category', 'subcategory'), read in chunks."""
        key = self.keys[field]
        out: list[str] = []
        for start in range(0, self._len, CHUNK):
            for k, value in enumerate(self._read(key, slice(start, start + CHUNK))):
                text, fallback = decode_field(value)
                if fallback and field == "text":
                    self._fallback_rows.add(start + k)
                out.append(text)
        return out

    def count_text_fallbacks(self) -> int:
        """Rows of the whole file whose text needed the decoding fallback."""
        self.column("text")
        return self.text_fallbacks

    def summary(self) -> dict:
        return {
            "format": "fashion-gen hdf5",
            "rows": self._len,
            "products": len(set(self.product_ids().tolist())),
            "categories": Counter(self.column("category")),
            "subcategories": Counter(self.column("subcategory")),
            "image_shape": self.image_shape,
            "text_fallbacks": self.count_text_fallbacks(),
        }
