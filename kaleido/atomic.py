"""Writes that a reader (or a restart after a crash) never sees half done: files and folders.

Everything is first written under a temporary name beside its destination, flushed to the disk
(``fsync`` of the data, then of the folder that holds the new name) and renamed over the
destination in one step, so a killed process or a power loss leaves either the previous version
or the new one, never a torn or empty file. A write that fails removes its temporary.

A folder is swapped in whole: files of an earlier version that the new one does not write (an
objective's heads under a bare model) do not survive. Between the two renames of the swap there is
an instant with no folder (the previous one then sits beside it as ``.<name>.old-*``), never a
mixed one. The next write of the same folder clears what a killed write left (and puts a
parked previous version back first if the swap never finished).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TMP_MARK = ".tmp-"
OLD_MARK = ".old-"


def _fsync(path: Path, folder: bool = False) -> None:
    """Flush a file's data, or a folder's entries, to the disk. A file that cannot be flushed is
    an error (the write is not safe); a folder only where the platform allows it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        if folder:  # pragma: no cover - platforms without folder descriptors
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not folder:
            raise
    finally:
        os.close(fd)


def is_temporary(path: Path) -> bool:
    """Whether ``path`` is a leftover of a write that was killed half way."""
    return path.name.startswith(".") and TMP_MARK in path.name


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix, so writers that go by it still do);
    once the block has written it, it replaces ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}{TMP_MARK}{uuid.uuid4().hex[:8]}{path.suffix}")
    try:
        yield tmp
        if not tmp.is_file():
            raise FileNotFoundError(f"nothing was written to {tmp} for {path}")
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(path.parent, folder=True)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> Path:
    """``path.write_text(text)`` (UTF-8), atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | Path, data: Any, **dumps: Any) -> Path:
    """``data`` as JSON (``json.dumps`` keyword arguments, default ``indent=1``), atomically."""
    return write_text(path, json.dumps(data, **{"indent": 1, **dumps}))


def _sibling_folder(folder: Path, mark: str) -> Path:
    """A new empty folder ``.<name><mark><random>`` beside ``folder``, made with ``mkdir`` so it gets
    the umask's mode (``tempfile.mkdtemp`` makes 0700, which the rename would keep: a model folder
    no other user of a shared cluster could read)."""
    while True:
        path = folder.parent / f".{folder.name}{mark}{uuid.uuid4().hex[:8]}"
        try:
            path.mkdir()
            return path
        except FileExistsError:  # pragma: no cover - 32 random bits
            continue


def _settle(folder: Path) -> None:
    """Clear what a write of ``folder`` killed half way left beside it: its temporaries, and the
    previous version parked during the swap (put back if the swap never finished)."""
    for stale in folder.parent.glob(f".{glob.escape(folder.name)}{TMP_MARK}*"):
        shutil.rmtree(stale, ignore_errors=True)
    parked = sorted(folder.parent.glob(f".{glob.escape(folder.name)}{OLD_MARK}*"),
                    key=lambda p: p.stat().st_mtime)
    if parked and not folder.exists():
        os.replace(parked.pop(), folder)
    for stale in parked:
        shutil.rmtree(stale, ignore_errors=True)


@contextmanager
def atomic_folder(folder: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling folder; once the block has filled it, it replaces ``folder`` whole.
    Leftovers of an earlier write of ``folder`` that was killed are cleared first."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    _settle(folder)
    tmp = _sibling_folder(folder, TMP_MARK)
    try:
        yield tmp
        for file in tmp.rglob("*"):
            if file.is_file():
                _fsync(file)
        _fsync(tmp, folder=True)
        old = None
        if folder.exists():
            old = _sibling_folder(folder, OLD_MARK)
            os.replace(folder, old)
        try:
            os.replace(tmp, folder)
        except OSError:
            if old is not None:
                os.replace(old, folder)  # put the previous folder back
            raise
        _fsync(folder.parent, folder=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
