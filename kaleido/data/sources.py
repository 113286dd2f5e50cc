"""The registered datasets (recipe section ``[data]``): each ``open(split) -> Reader``.

- ``synthetic``: the embedded default; writes ``train.h5`` / ``test.h5`` (disjoint products)
  into ``dir`` on first use, atomically, with a manifest so other parameters are never mixed up.
- ``fashiongen``: the two HDF5 files of the Fashion-Gen release.
- ``jsonl``: users' own JSONL data, split by product when no test file is given.

A dataset whose files can change under the same recipe values has ``fingerprint() -> str``,
which the feature store's key includes (:func:`kaleido.features.prepare.prepare_key`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path

import numpy as np

from kaleido import registry
from kaleido.atomic import write_text
from kaleido.data import jsonl
from kaleido.data.fashiongen import FashionGenReader
from kaleido.data.jsonl import JsonlReader
from kaleido.data.rows import DataError, Reader
from kaleido.data.synth import VERSION as SYNTH_VERSION

log = logging.getLogger(__name__)

# a file's content hash by (resolved path, size, mtime_ns): every stage's key hashes the data files,
# and one `kaleido run` asks for those keys a dozen times; an edit changes the size or the mtime
_content_hashes: dict[tuple[str, int, int], bytes] = {}
_overlap_checked: set[tuple] = set()  # (train, test) file_version()s compared for shared products

SPLITS = ("train", "test")
TEST_SEED_OFFSET = 1_000_000  # the synthetic test split uses seed + this, and product ids after train's


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of: {', '.join(SPLITS)}")


def _existing(param: str, path: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"data.{param}: no such file: {p}")
    return p


def file_fingerprint(*paths: str | Path | None, contents: bool = True) -> str:
    """What identifies the data files beyond their names, for the feature store's key: a hash of
    their bytes (``contents``; small text files such as JSONL), else of their sizes (the 13 GB
    Fashion-Gen release: an edit there changes the size, and reading it all would take minutes).
    A missing file counts as empty here; opening it fails in one line later."""
    digest = hashlib.sha256()
    for path in paths:
        if path is None:
            continue
        path = Path(path)
        digest.update(str(path.name).encode())
        if not path.is_file():
            continue
        if contents:
            digest.update(_content_hash(path))
        else:
            digest.update(str(path.stat().st_size).encode())
    return digest.hexdigest()[:12]


def _content_hash(path: Path) -> bytes:
    """The sha256 of a file's bytes, read once per version of the file in this process."""
    key = jsonl.file_version(path)
    if key not in _content_hashes:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        _content_hashes[key] = digest.digest()
    return _content_hashes[key]


def open_file(path: str | Path) -> FashionGenReader | JsonlReader:
    """A reader for one data file, picked by its suffix (.h5 / .hdf5 or .jsonl)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    if p.suffix.lower() in (".h5", ".hdf5"):
        return FashionGenReader(p)
    if p.suffix.lower() in (".jsonl", ".json"):
        return JsonlReader(p)
    raise DataError(f"{p}: unknown data file type {p.suffix!r}; expected .h5, .hdf5 or .jsonl")


@registry.datasets.register("synthetic")
class SyntheticData:
    """Procedurally drawn fashion products (Fashion-Gen schema), written on first use."""

    def __init__(self, dir: str = "data/synthetic", products: int = 300, test_products: int = 60,
                 seed: int = 0, version: int = SYNTH_VERSION) -> None:
        # version: the generator's (kaleido.data.synth.VERSION); part of the recipe so that every
        # stage key built on the data changes when the generator draws other data.
        if products < 1 or test_products < 1:
            raise ValueError("data.products and data.test_products must be >= 1")
        if version != SYNTH_VERSION:
            raise ValueError(f"data.version: this kaleido draws synthetic data version {SYNTH_VERSION}, "
                             f"not {version}")
        self.dir = Path(dir)
        self.products, self.test_products, self.seed = products, test_products, seed

    def manifest(self) -> dict:
        return {"generator": "kaleido.data.synth", "version": SYNTH_VERSION, "products": self.products,
                "test_products": self.test_products, "seed": self.seed}

    def path(self, split: str) -> Path:
        _check_split(split)
        return self.dir / f"{split}.h5"

    def ensure(self, progress: bool = True) -> None:
        """Write both splits when absent (with a progress bar per split, on a terminal, when
        ``progress``); refuse a folder made with other parameters."""
        manifest_path = self.dir / "synthetic.json"
        if manifest_path.is_file():
            found = json.loads(manifest_path.read_text(encoding="utf-8"))
            older = found.get("version") != SYNTH_VERSION
            if older and {**found, "version": SYNTH_VERSION} == self.manifest():
                # the same data drawn by an older generator: a cache of a procedure, so draw it anew
                for stale in (manifest_path, self.path("train"), self.path("test")):
                    stale.unlink(missing_ok=True)
                found = None
            if found is not None and found != self.manifest():
                raise DataError(f"data.dir: {self.dir} holds synthetic data made with {found}, not "
                                f"{self.manifest()}; delete it or choose another dir")
        else:  # files without a manifest (a run stopped before writing it): their parameters are unknown
            for stale in (self.path("train"), self.path("test")):
                if stale.is_file():
                    log.warning("%s: no synthetic.json beside it, drawn again", stale)
                    stale.unlink()
        from kaleido.data.synth import write_synthetic
        from kaleido.progress import bars

        todo = [(split, products, seed, start) for split, products, seed, start in
                (("train", self.products, self.seed, 0),
                 ("test", self.test_products, self.seed + TEST_SEED_OFFSET, self.products))
                if not self.path(split).is_file()]
        with bars(enabled=progress and bool(todo)) as display:
            for split, products, seed, start in todo:
                step = display.add(f"drawing synthetic {split} data ({products} products)")
                write_synthetic(self.path(split), products, seed, id_start=start, progress=step)
        if not manifest_path.is_file():
            write_text(manifest_path, json.dumps(self.manifest(), indent=1) + "\n")

    def open(self, split: str) -> Reader:
        _check_split(split)
        self.ensure()
        return FashionGenReader(self.path(split))

    def describe(self) -> str:
        return (f"synthetic: {self.products} train / {self.test_products} test products, seed {self.seed}, "
                f"in {self.dir}")


@registry.datasets.register("fashiongen")
class FashionGenData:
    """The Fashion-Gen release: one HDF5 file per split (read lazily)."""

    def __init__(self, train: str, test: str) -> None:
        self.files = {"train": train, "test": test}

    def open(self, split: str) -> Reader:
        _check_split(split)
        return FashionGenReader(_existing(split, self.files[split]))

    def fingerprint(self) -> str:
        """The files' sizes (see :func:`file_fingerprint`)."""
        return file_fingerprint(self.files["train"], self.files["test"], contents=False)

    def describe(self) -> str:
        return f"fashiongen: train {self.files['train']}, test {self.files['test']}"


@registry.datasets.register("jsonl")
class JsonlData:
    """Users' own JSONL data; without a test file, ``test_fraction`` of the products are held out."""

    def __init__(self, train: str, test: str | None = None, test_fraction: float = 0.1,
                 seed: int = 0) -> None:
        if test is None and not 0.0 < test_fraction < 1.0:
            raise ValueError(f"data.test_fraction must be in (0, 1), got {test_fraction}")
        self.train, self.test, self.test_fraction, self.seed = train, test, test_fraction, seed

    def split_rows(self, reader: JsonlReader) -> dict[str, list[int]]:
        """Row indices of each split; every pose of a product lands in the same split."""
        ids = reader.product_ids()
        products = np.unique(ids)
        if len(products) < 2:
            raise DataError(f"data.train: {self.train} has {len(products)} product; a split needs at least 2")
        n_test = min(len(products) - 1, max(1, math.ceil(self.test_fraction * len(products))))
        order = np.random.default_rng(self.seed).permutation(len(products))
        test_ids = set(products[order[:n_test]].tolist())
        test = [i for i, p in enumerate(ids.tolist()) if p in test_ids]
        train = [i for i, p in enumerate(ids.tolist()) if p not in test_ids]
        return {"train": train, "test": test}

    def open(self, split: str) -> Reader:
        _check_split(split)
        if self.test is not None:
            reader = JsonlReader(_existing(split, self.train if split == "train" else self.test))
            if split == "test":
                self._warn_shared_products(reader)
            same = split == "test" and reader.path.resolve() == Path(self.train).expanduser().resolve()
            if same and reader.skipped:  # one file named twice: its dropped lines count once
                return reader.without_skipped(f"{reader.path.name} is also data.train: its "
                                              f"{len(reader.skipped)} dropped lines are reported under train")
            return reader
        whole = JsonlReader(_existing("train", self.train))  # its bad lines logged once per process
        part = whole.subset(self.split_rows(whole)[split])
        if split == "train" or not whole.skipped:
            return part
        # a dropped line has no product to place it in a split: the file is data.train, so the
        # train split reports it and the test split, read from the same file, does not again
        return part.without_skipped(f"{whole.path.name} is split by product: its {len(whole.skipped)} "
                                    "dropped lines are reported under train")

    def _warn_shared_products(self, test: JsonlReader) -> None:
        """A test file sharing products with the train file is allowed (a check of memorisation)
        but never silent: its figures would not measure generalisation. Read and said once per
        process per version of the two files."""
        train = _existing("train", self.train)
        key = (jsonl.file_version(train), jsonl.file_version(test.path))
        if key in _overlap_checked:  # once per process: every stage opens the test split again
            return
        _overlap_checked.add(key)
        train_ids = set(JsonlReader(train).product_ids().tolist())
        test_ids = set(test.product_ids().tolist())
        shared = test_ids & train_ids
        if shared:
            log.warning("data.test: %d of its %d products are also in data.train (%s, e.g. %s): figures on "
                        "them measure memorisation, not generalisation", len(shared), len(test_ids),
                        test.path.name, sorted(shared)[0])

    def fingerprint(self) -> str:
        """The JSONL files' contents: an edited file is prepared again, not read from a stale store
        (the images it names are not hashed: give an edited image a new name), and the reader's
        :data:`~kaleido.data.jsonl.READER_VERSION` (which lines become rows)."""
        return file_fingerprint(self.train, self.test) + f"-r{jsonl.READER_VERSION}"

    def describe(self) -> str:
        if self.test is not None:
            return f"jsonl: train {self.train}, test {self.test}"
        return (f"jsonl: {self.train}, {self.test_fraction:.0%} of products held out for test "
                f"(seed {self.seed})")
