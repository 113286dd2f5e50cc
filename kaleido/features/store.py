"""The on-disk feature store: one folder per split, one shard per preparing process.

Layout of ``<split>/shard-RRRRR-of-WWWWW/``: fixed-size binary arrays preallocated for the
shard's rows (``features`` (N, P, D), ``rotations`` (N, 3, D), ``grey`` (N, G, D) in the store
dtype; ``positions`` (N, P, 5) and ``boxes`` (N, P, 4) float32; ``source`` int64; ``fallback``
uint8), the row index as ``index.jsonl`` with byte ``offsets``, and ``manifest.json``.

Rows are written in chunks with positioned writes (no memory map on the writing side, so the
writer's memory does not grow with the store) and flushed to the disk, then the manifest's
committed-row counter is replaced atomically. A crash (or a power loss) leaves at most a partly
written chunk past the counter, which a resumed run overwrites. Readers memory-map the committed
rows read-only, so any number of DataLoader workers and ranks share the page cache instead of
loading the store into RAM.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import NamedTuple

import numpy as np

from kaleido.atomic import write_json
from kaleido.data.rows import RowMeta

VERSION = 1
MANIFEST = "manifest.json"
ROW_ARRAYS = ("features", "rotations", "grey", "positions", "boxes", "source", "fallback")


def shard_name(rank: int, world_size: int) -> str:
    return f"shard-{rank:05d}-of-{world_size:05d}"


def shard_world(path: Path) -> int:
    """The process count a shard folder was written by (the N of ``shard-R-of-N``)."""
    return int(Path(path).name.rsplit("-of-", 1)[1])


def _sync(f) -> None:
    """Flush a chunk's bytes to the disk before the manifest's counter says they are there."""
    f.flush()
    os.fsync(f.fileno())


def _shapes(spec: dict) -> dict[str, tuple[tuple[int, ...], str]]:
    """Per-row shape and dtype of every array of a shard."""
    p, d, g, dt = spec["patches"], spec["feature_dim"], spec["grey"], spec["dtype"]
    return {"features": ((p, d), dt), "rotations": ((3, d), dt), "grey": ((g, d), dt),
            "positions": ((p, 5), "float32"), "boxes": ((p, 4), "float32"), "source": ((), "int64"),
            "fallback": ((), "uint8")}


def _row_bytes(shape: tuple[int, ...], dtype: str) -> int:
    return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize


class SkippedRow(NamedTuple):
    """A row prepare skipped: its reader row, why, and how messages name it (a JSONL row with its
    file line, as the reader's dropped lines are named)."""

    row: int
    why: str
    where: str

    @classmethod
    def of(cls, entry: Sequence) -> SkippedRow:
        """From a manifest entry: ``[row, why, where]``, or ``[row, why]`` in older stores."""
        row, why, *where = entry
        return cls(int(row), str(why), str(where[0]) if where else f"row {row}")


def source_info(manifest: dict) -> dict[str, str]:
    """``source_file`` and ``source_note`` of a shard manifest ("" where it has none)."""
    return {"source_file": manifest.get("source_file", ""), "source_note": manifest.get("source_note", "")}


class ShardWriter:
    """Appends rows to one shard; resumes a shard whose manifest matches ``key`` and ``spec``."""

    def __init__(self, path: Path, key: str, spec: dict, capacity: int) -> None:
        self.path, self.key, self.spec = Path(path), key, dict(spec)
        self.shapes = _shapes(self.spec)
        old = self._read_manifest()
        if old and old.get("key") == key and old.get("spec") == self.spec and old.get("capacity") == capacity:
            self.manifest = old
        else:
            if self.path.exists():
                shutil.rmtree(self.path)
            self.path.mkdir(parents=True)
            self.manifest = {"version": VERSION, "key": key, "spec": self.spec, "capacity": capacity,
                             "committed": 0, "next": 0, "index_bytes": 0, "skipped": [], "fallbacks": 0,
                             "text_fallbacks": 0, "done": False}
            for name, (shape, dtype) in self.shapes.items():
                with open(self.path / f"{name}.bin", "wb") as f:
                    f.truncate(capacity * _row_bytes(shape, dtype))
            with open(self.path / "offsets.bin", "wb") as f:
                f.truncate((capacity + 1) * 8)
            (self.path / "index.jsonl").write_bytes(b"")
            write_json(self.path / MANIFEST, self.manifest, sort_keys=True)
        # drop whatever a crash left past the committed rows of the index
        with open(self.path / "index.jsonl", "r+b") as f:
            f.truncate(self.manifest["index_bytes"])

    def _read_manifest(self) -> dict | None:
        try:
            return json.loads((self.path / MANIFEST).read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    @property
    def committed(self) -> int:
        return self.manifest["committed"]

    @property
    def next(self) -> int:
        """Position in this shard's list of source rows where work continues."""
        return self.manifest["next"]

    @property
    def done(self) -> bool:
        return bool(self.manifest["done"])

    def _pwrite(self, name: str, start: int, array: np.ndarray) -> None:
        shape, dtype = self.shapes[name]
        array = np.ascontiguousarray(array, dtype=dtype)
        if array.shape[1:] != shape:
            raise ValueError(f"store {name}: row shape {array.shape[1:]} != {shape}")
        with open(self.path / f"{name}.bin", "r+b") as f:
            f.seek(start * _row_bytes(shape, dtype))
            f.write(array.tobytes())
            _sync(f)

    def commit(self, rows: dict[str, np.ndarray], metas: list[RowMeta], next_pos: int,
               skipped: Sequence[Sequence] = (), fallbacks: int = 0, text_fallbacks: int = 0) -> None:
        """Write a chunk of rows after the committed ones, then advance the counter atomically."""
        start, n = self.committed, len(metas)
        if start + n > self.manifest["capacity"]:
            raise ValueError(f"shard {self.path.name} holds {self.manifest['capacity']} rows, "
                             f"asked to write up to {start + n}")
        for name in ROW_ARRAYS:
            if len(rows[name]) != n:
                raise ValueError(f"store {name}: {len(rows[name])} rows for {n} metas")
            if n:
                self._pwrite(name, start, rows[name])
        lines = [(json.dumps(asdict(m), ensure_ascii=False) + "\n").encode("utf-8") for m in metas]
        ends = self.manifest["index_bytes"] + np.cumsum([len(x) for x in lines], dtype=np.int64)
        with open(self.path / "index.jsonl", "r+b") as f:
            f.seek(self.manifest["index_bytes"])
            f.write(b"".join(lines))
            _sync(f)
        with open(self.path / "offsets.bin", "r+b") as f:
            f.seek((start + 1) * 8)
            f.write(ends.astype(np.int64).tobytes())
            _sync(f)
        self.manifest.update(committed=start + n, next=next_pos,
                             index_bytes=int(ends[-1]) if n else self.manifest["index_bytes"],
                             fallbacks=self.manifest["fallbacks"] + fallbacks,
                             text_fallbacks=self.manifest.get("text_fallbacks", 0) + text_fallbacks)
        self.manifest["skipped"] = self.manifest["skipped"] + [list(s) for s in skipped]
        write_json(self.path / MANIFEST, self.manifest, sort_keys=True)

    def finish(self, extra: dict | None = None) -> None:
        self.manifest.update(done=True, **(extra or {}))
        write_json(self.path / MANIFEST, self.manifest, sort_keys=True)


class FeatureStore:
    """Read every shard of a split as one store; accessors take a row number or an index array.

    Arrays come back as numpy (features in the store dtype, float16 by default). The store
    pickles by path, so DataLoader workers reopen their own memory maps.
    """

    def __init__(self, path: str | Path, require_done: bool = True) -> None:
        self.path = Path(path)
        shards = sorted(p for p in self.path.glob("shard-*") if (p / MANIFEST).is_file())
        if not shards:
            raise FileNotFoundError(f"no feature store at {self.path} (run `kaleido prepare` first)")
        self._shards = shards
        self._manifests = [json.loads((p / MANIFEST).read_text(encoding="utf-8")) for p in shards]
        worlds = {shard_world(p) for p in shards}
        if require_done:
            unfinished = [p.name for p, m in zip(shards, self._manifests, strict=True) if not m["done"]]
            if unfinished or len(worlds) != 1 or len(shards) != worlds.pop():
                which = ", ".join(unfinished) or "shards"
                raise ValueError(f"feature store {self.path} is incomplete ({which} missing or unfinished)"
                                 ": run `kaleido prepare` again to continue it")
        specs = {json.dumps(m["spec"], sort_keys=True) for m in self._manifests}
        if len(specs) != 1:
            raise ValueError(f"feature store {self.path}: shards were written with different settings")
        self.spec = self._manifests[0]["spec"]
        self.key = self._manifests[0]["key"]
        self._counts = np.array([m["committed"] for m in self._manifests], dtype=np.int64)
        self._starts = np.concatenate([[0], np.cumsum(self._counts)])
        self._shapes = _shapes(self.spec)
        self._maps: dict | None = None
        self._pid = -1

    # -- what every row shares ------------------------------------------------------------------
    @property
    def grids(self) -> tuple[int, ...]:
        return tuple(self.spec["grids"])

    @property
    def levels(self) -> np.ndarray:
        """(P,) level id 1..L of each patch, level by level."""
        return np.concatenate([np.full(g * g, i, dtype=np.int64) for i, g in enumerate(self.grids, 1)])

    @property
    def feature_dim(self) -> int:
        return int(self.spec["feature_dim"])

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.spec["dtype"])

    def __len__(self) -> int:
        return int(self._starts[-1])

    @property
    def skipped(self) -> list[SkippedRow]:
        """Each row prepare skipped: reader row, why, and how messages name it."""
        return [SkippedRow.of(s) for m in self._manifests for s in m["skipped"]]

    @property
    def source_skipped(self) -> list[str]:
        """What the reader dropped before any row was made ("line N: why"); every rank's reader
        reads the whole source, so one shard's list is the store's."""
        return list(self._manifests[0].get("source_skipped", [])) if self._manifests else []

    @property
    def source_info(self) -> dict[str, str]:
        """The data file the rows came from and the reader's note on it (``source_file``,
        ``source_note``); like ``source_skipped``, one shard's is the store's."""
        return source_info(self._manifests[0] if self._manifests else {})

    @property
    def fallbacks(self) -> int:
        return sum(m["fallbacks"] for m in self._manifests)

    @property
    def text_fallbacks(self) -> int:
        """Rows whose text was not UTF-8 and was read as cp1252 (0 for stores from before the count)."""
        return sum(m.get("text_fallbacks", 0) for m in self._manifests)

    # -- per-process memory maps -----------------------------------------------------------------
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_maps"], state["_pid"] = None, -1
        return state

    def _arrays(self) -> dict:
        if self._maps is None or self._pid != os.getpid():
            maps: dict[str, list] = {name: [] for name in (*ROW_ARRAYS, "offsets")}
            for shard, n in zip(self._shards, self._counts, strict=True):
                for name, (shape, dtype) in self._shapes.items():
                    empty = n == 0 or _row_bytes(shape, dtype) == 0  # mmap refuses empty files
                    maps[name].append(np.zeros((n, *shape), dtype=dtype) if empty else np.memmap(
                        shard / f"{name}.bin", dtype=dtype, mode="r", shape=(n, *shape)))
                maps["offsets"].append(np.memmap(shard / "offsets.bin", dtype=np.int64, mode="r",
                                                 shape=(n + 1,)))
            self._maps, self._pid = maps, os.getpid()
        return self._maps

    def _locate(self, i: int | np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
        scalar = np.ndim(i) == 0
        idx = np.atleast_1d(np.asarray(i, dtype=np.int64))
        n = len(self)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"row index out of range for a store of {n} rows")
        idx = np.where(idx < 0, idx + n, idx)
        shard = np.searchsorted(self._starts, idx, side="right") - 1
        return shard, idx - self._starts[shard], scalar

    def _get(self, name: str, i: int | np.ndarray) -> np.ndarray:
        arrays = self._arrays()[name]
        shard, local, scalar = self._locate(i)
        if scalar:
            return np.array(arrays[shard[0]][local[0]])
        shape, dtype = self._shapes[name]
        out = np.empty((len(local), *shape), dtype=dtype)
        for s in np.unique(shard):
            sel = shard == s
            out[sel] = arrays[s][local[sel]]
        return out

    # -- per-row accessors ------------------------------------------------------------------------
    def features(self, i: int | np.ndarray) -> np.ndarray:
        """(P, D) patch features, or (n, P, D) for an index array."""
        return self._get("features", i)

    def rotations(self, i: int | np.ndarray) -> np.ndarray:
        """(3, D) features of the 1x1 region rotated by 90, 180, 270 degrees."""
        return self._get("rotations", i)

    def grey(self, i: int | np.ndarray) -> np.ndarray:
        """(G, D) features of the grey-scale 4x4 patches (G = 16; 0 when the layout has no 4x4 level)."""
        return self._get("grey", i)

    def positions(self, i: int | np.ndarray) -> np.ndarray:
        """(P, 5) [x1, x2, y1, y2, w*h] normalised by the image size."""
        return self._get("positions", i)

    def boxes(self, i: int | np.ndarray) -> np.ndarray:
        """(P, 4) pixel boxes x1, y1, x2, y2 in the source image."""
        return self._get("boxes", i)

    def source(self, i: int | np.ndarray) -> int | np.ndarray:
        """Index of the row in its reader (the data set split)."""
        out = self._get("source", i)
        return int(out) if np.ndim(i) == 0 else out

    def fallback(self, i: int | np.ndarray) -> bool | np.ndarray:
        """Whether no foreground was found and the whole image was used."""
        out = self._get("fallback", i).astype(bool)
        return bool(out) if np.ndim(i) == 0 else out

    def meta(self, i: int | np.ndarray) -> RowMeta | list[RowMeta]:
        """The row's index entry (text, category, sub-category, product id, pose, reader index)."""
        shard, local, scalar = self._locate(i)
        offsets = self._arrays()["offsets"]
        out = []
        for s, j in zip(shard, local, strict=True):
            lo, hi = int(offsets[s][j]), int(offsets[s][j + 1])
            with open(self._shards[s] / "index.jsonl", "rb") as f:
                f.seek(lo)
                out.append(RowMeta(**json.loads(f.read(hi - lo))))
        return out[0] if scalar else out

    def product_ids(self) -> np.ndarray:
        """Product id of every row (str array), for per-product negatives and camouflage donors."""
        if getattr(self, "_product_ids", None) is not None:
            return self._product_ids
        ids = []
        for shard, n in zip(self._shards, self._counts, strict=True):
            with open(shard / "index.jsonl", "rb") as f:
                ids += [json.loads(line)["product_id"] for line, _ in zip(f, range(n), strict=False)]
        self._product_ids = np.asarray(ids, dtype=str)
        return self._product_ids
