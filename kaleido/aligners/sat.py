"""The ``sat`` aligner: train a Show-Attend-Tell captioner, then align its words to Kaleido patches.

Three steps, each cached under the stage's folder so that a rerun (or a crash) redoes nothing:

1. **Grid features**: every image (its product region by default) is passed once through the
   recipe's frozen backbone (which resizes it to its input size); the last feature map (h x w
   cells of D channels) is kept as a float16 memory map shared by every run over the same store.
2. **Training**: the LSTM captioner learns the training descriptions with teacher forcing and
   the doubly stochastic attention regulariser; a checkpoint every ``checkpoint_every`` steps
   holds the model, optimiser, RNG and the position in the epoch, so a resumed run ends with the
   same weights as an uninterrupted one.
3. **Alignment**: each image is captioned (greedy or beam) and every generated word that also
   occurs in the description is mapped to the patch its attention points at
   (:mod:`kaleido.aligners.heatmap`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from kaleido import registry
from kaleido.aligners.base import AlignSource, Pairs
from kaleido.aligners.captioner import Caption, Captioner, caption_loss
from kaleido.aligners.heatmap import Select, row_alignments
from kaleido.aligners.vocab import SPECIALS, Vocab, words
from kaleido.atomic import atomic_file, atomic_folder
from kaleido.data.rows import BadRow
from kaleido.progress import bar
from kaleido.training.checkpoint import rng_state, set_rng_state
from kaleido.training.optim import fused

log = logging.getLogger(__name__)

MODEL_FILE = "captioner.pt"
CHECKPOINT_FILE = "checkpoint.pt"


def _atomic_save(obj: object, path: Path) -> None:
    with atomic_file(path) as tmp:
        torch.save(obj, tmp)


@contextmanager
def _cpu_threads(device: torch.device, threads: int) -> Iterator[None]:
    """Run the captioner's many tiny per-step operations on ``threads`` CPU threads (0: torch's
    choice). Measured on the shared 2-core box at load ~7: one training step (32 captions x 32
    words) 0.24 s on 1 thread against 2 to 9 s on 2, whose threads wait on each other."""
    if device.type != "cpu" or threads <= 0 or threads == torch.get_num_threads():
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def crop_region(image: np.ndarray, boxes: np.ndarray, region: str) -> tuple[int, int, int, int]:
    """The pixels the captioner looks at: the union of the patch boxes (``crop``, the product
    region of the Kaleido layout) or the whole image, as integer x1, y1, x2, y2."""
    height, width = image.shape[:2]
    if region == "image":
        return 0, 0, width, height
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x1, y1 = int(np.floor(max(0.0, b[:, 0].min()))), int(np.floor(max(0.0, b[:, 1].min())))
    x2, y2 = int(np.ceil(min(width, b[:, 2].max()))), int(np.ceil(min(height, b[:, 3].max())))
    if x2 - x1 < 1 or y2 - y1 < 1:
        return 0, 0, width, height
    return x1, y1, x2, y2


def crop(image: np.ndarray, region: tuple[int, int, int, int]) -> np.ndarray:
    """``image[region]`` as a contiguous H x W x 3 uint8 array."""
    x1, y1, x2, y2 = region
    return np.ascontiguousarray(image[y1:y2, x1:x2, :3])


# Arguments that do not change the alignments: which splits are aligned (each has its own store),
# how often the checkpoint is written (a resumed run reaches the same weights), where and on how
# many threads it runs.
_NOT_IN_KEY = frozenset({"self", "splits", "checkpoint_every", "device", "threads"})


# Settings that count something: each must be at least 1 (0 epochs would align with an untrained
# captioner, a batch of 0 divides by zero, a max_len of 0 leaves every training caption wordless).
_AT_LEAST_ONE = ("epochs", "batch_size", "max_len", "min_count", "beam_size", "raster", "checkpoint_every",
                 "feature_dim", "embed_dim", "hidden_dim", "attention_dim")


def _check_settings(settings: dict) -> None:
    """Refuse a value the captioner cannot train or decode with, naming the parameter (so that
    `kaleido check` reports it at its ``aligner.`` field, before any stage runs)."""
    for name in _AT_LEAST_ONE:
        if settings[name] < 1:
            raise ValueError(f"sat: {name} must be >= 1, got {settings[name]}")
    if not settings["lr"] > 0 or not math.isfinite(settings["lr"]):
        raise ValueError(f"sat: lr must be a positive number, got {settings['lr']}")
    if not 0.0 <= settings["dropout"] < 1.0:
        raise ValueError(f"sat: dropout must be in [0, 1), got {settings['dropout']}")
    for name in ("alpha_c", "clip_grad_norm", "low_scale"):
        if not settings[name] >= 0:
            raise ValueError(f"sat: {name} must be >= 0, got {settings[name]}")
    if settings["max_vocab"] <= len(SPECIALS):
        raise ValueError(f"sat: max_vocab must be more than the {len(SPECIALS)} special tokens "
                         f"({', '.join(SPECIALS)}), got {settings['max_vocab']}")
    if settings["threads"] < 0:
        raise ValueError(f"sat: threads must be 0 (torch's choice) or positive, got {settings['threads']}")
    if any(level < 1 for level in settings["levels"]):
        raise ValueError(f"sat: levels are patch levels numbered from 1 (a Kaleido layout's 1 = 1x1 ... 5 = "
                         f"5x5; a fixed grid's only level is 1), got {settings['levels']}")


@registry.aligners.register("sat")
class SATAligner:
    """Show-Attend-Tell captioner; each generated word also in the description -> its best patch."""

    def __init__(
        self,
        region: Literal["crop", "image"] = "crop",
        image_size: int = 0,
        stride: int = 0,
        low_level: int = 0,
        low_scale: float = 1.0,
        low_key: bool = False,
        cells: int = 0,
        feature_dim: int = 256,
        embed_dim: int = 128,
        hidden_dim: int = 256,
        attention_dim: int = 128,
        dropout: float = 0.3,
        global_init: bool = True,
        word_query: bool = True,
        deep_output: bool = True,
        epochs: int = 10,
        batch_size: int = 32,
        lr: float = 1e-3,
        alpha_c: float = 1.0,
        word_dropout: float = 0.0,
        grid_dropout: float = 0.0,
        clip_grad_norm: float = 5.0,
        min_count: int = 2,
        max_vocab: int = 5000,
        max_len: int = 24,
        decode: Literal["greedy", "beam"] = "greedy",
        beam_size: int = 3,
        levels: list[int] = [3, 4, 5],  # noqa: B006 - pydantic copies defaults
        select: Select = "density",
        raster: int = 64,
        stopwords: bool = True,
        skip_words: list[str] = [],  # noqa: B006
        splits: list[Literal["train", "test"]] = ["train"],  # noqa: B006
        checkpoint_every: int = 200,
        seed: int = 0,
        device: str = "auto",
        threads: int = 1,
    ) -> None:
        # Every argument is part of the store key except those that cannot change a result; read
        # from the call itself so that a new setting can never be left out of the key.
        self._settings = {k: v for k, v in locals().items() if k not in _NOT_IN_KEY}
        _check_settings({k: v for k, v in locals().items() if k != "self"})
        if not levels:
            raise ValueError("sat: levels must name at least one Kaleido level (e.g. [3, 4, 5])")
        if image_size and image_size < 32:
            raise ValueError(f"sat: image_size must be 0 (the backbone's) or >= 32, got {image_size}")
        if stride < 0:
            raise ValueError(f"sat: stride must be 0 (the backbone's last map) or positive, got {stride}")
        if low_level < 0:
            raise ValueError(f"sat: low_level must be 0 (off), 1 (pixels) or a backbone stride, "
                             f"got {low_level}")
        if low_key and low_level != 1:
            raise ValueError("sat: low_key (attend by the pixel stream alone) needs low_level = 1")
        if cells < 0:
            raise ValueError(f"sat: cells must be 0 (the backbone map's own) or positive, got {cells}")
        if not 0.0 <= word_dropout < 1.0:
            raise ValueError(f"sat: word_dropout must be in [0, 1), got {word_dropout}")
        if not 0.0 <= grid_dropout < 1.0:
            raise ValueError(f"sat: grid_dropout must be in [0, 1), got {grid_dropout}")
        self.region = region
        self.image_size, self.stride = image_size, stride
        # hypercolumn: an early, colour-preserving map (1 = the normalised pixels) pooled to the grid
        self.low_level, self.low_scale = low_level, low_scale
        # cells: an N x N attention grid finer than the backbone map (its cells repeated, the early
        # map pooled to N x N), so a colour key can single out parts smaller than a deep cell
        self.cells = cells
        self.arch = dict(feature_dim=feature_dim, embed_dim=embed_dim, hidden_dim=hidden_dim,
                         attention_dim=attention_dim, dropout=dropout, global_init=global_init,
                         word_query=word_query, deep_output=deep_output, key_channels=3 if low_key else 0)
        self.epochs, self.batch_size, self.lr, self.alpha_c = epochs, batch_size, lr, alpha_c
        self.word_dropout, self.grid_dropout = word_dropout, grid_dropout
        self.clip_grad_norm = clip_grad_norm
        self.min_count, self.max_vocab, self.max_len = min_count, max_vocab, max_len
        self.decode, self.beam_size = decode, beam_size
        self.levels, self.select, self.raster, self.stopwords = list(levels), select, raster, stopwords
        # words never aligned besides the function words (a catalogue's brands, say: they are
        # generated and aligned like any word, docs/ALIGNMENT.md), normalised like the text's
        self.skip_words = frozenset(w for phrase in skip_words for w in words(phrase))
        self.splits = list(splits)
        self.checkpoint_every, self.seed, self.device_name = checkpoint_every, seed, device
        self.threads = threads  # CPU threads of the captioner's training and decoding (not in the key)

    # -- settings -------------------------------------------------------------------------
    def key(self) -> dict:
        """The settings that shape the alignments, defaults filled in (the alignment store's key)."""
        settings = {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in self._settings.items()}
        return {"name": "sat", **settings}

    def _train_key(self) -> dict:
        """What shapes the trained captioner (decoding and patch choice do not)."""
        skip = {"decode", "beam_size", "levels", "select", "raster", "stopwords", "skip_words"}
        return {k: v for k, v in self.key().items() if k not in skip}

    @property
    def device(self) -> torch.device:
        if self.device_name == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device_name)

    # -- 1. grid features -----------------------------------------------------------------
    def _grid_dir(self, source: AlignSource, workdir: Path) -> Path:
        grid_args = self._grid_args()
        parts = [source.grid_key, self.region, *([grid_args] if grid_args else []),
                 *([{"low_level": self.low_level, "low_scale": self.low_scale}] if self.low_level else []),
                 *([{"cells": self.cells}] if self.cells else [])]
        digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode())
        root = source.cache if source.cache is not None else workdir
        return Path(root) / f"sat-grid-{digest.hexdigest()[:12]}" / source.split

    def _grid_args(self) -> dict:
        """Keyword arguments of ``source.feature_map``: the aligner's own grid resolution, when set
        (a finer grid than the backbone's last map at its patch-feature size)."""
        args: dict = {}
        if self.stride:
            args["stride"] = self.stride
        if self.image_size:
            args["image_size"] = self.image_size
        return args

    def _feature_map(self, source: AlignSource, images: list[np.ndarray]) -> torch.Tensor:
        """(B, D, h, w) grid features of cropped regions: the backbone map the aligner attends over,
        with ``low_level`` its early map of that stride (1: the normalised pixels) average-pooled
        to the same h x w cells and concatenated (a hypercolumn): the deep ImageNet map alone
        barely keeps a cell's colour, which is what names a part in the synthetic descriptions."""
        fmap = source.feature_map(images, **self._grid_args())
        hw = (self.cells, self.cells) if self.cells else tuple(fmap.shape[-2:])
        if self.cells:  # each deep cell repeated over the finer cells it covers
            fmap = torch.nn.functional.interpolate(fmap.float(), size=hw, mode="nearest")
        if not self.low_level:
            return fmap
        low = source.feature_map(images, **{**self._grid_args(), "stride": self.low_level})
        if low.shape[-2] < hw[0] or low.shape[-1] < hw[1]:
            raise ValueError(f"sat: low_level {self.low_level} gives a {tuple(low.shape[-2:])} map, coarser "
                             f"than the {hw} grid")
        # ``low_scale`` weighs the few early channels against the many deep ones (96 at stride 16)
        low = self.low_scale * torch.nn.functional.adaptive_avg_pool2d(low.float(), hw)
        return torch.cat([fmap.float(), low], dim=1)

    def grids(self, source: AlignSource, workdir: Path, progress: bool = True) -> dict:
        """Backbone grid features of every row, computed once: ``grid`` (N, h*w, D) float16 memmap,
        ``valid`` (N,) bool (False for a row whose image could not be read), ``regions`` (N, 4),
        ``hw`` (h, w)."""
        path = self._grid_dir(source, workdir)
        if not (path / "meta.json").is_file():
            self._write_grids(source, path, progress)
        meta = json.loads((path / "meta.json").read_text())
        return {"grid": np.load(path / "grid.npy", mmap_mode="r"), "valid": np.load(path / "valid.npy"),
                "regions": np.load(path / "regions.npy"), "hw": tuple(meta["hw"]), "skipped": meta["skipped"]}

    def _write_grids(self, source: AlignSource, path: Path, progress: bool) -> None:
        n = len(source)
        with atomic_folder(path) as tmp:
            valid = np.zeros(n, dtype=bool)
            regions = np.zeros((n, 4), dtype=np.int32)
            grid = None
            hw: tuple[int, int] = (0, 0)
            skipped: dict[str, int] = {}
            batch_rows: list[int] = []
            batch_imgs: list[np.ndarray] = []

            def flush() -> None:
                nonlocal grid, hw
                if not batch_rows:
                    return
                with torch.inference_mode():
                    fmap = self._feature_map(source, list(batch_imgs))
                b, d, h, w = fmap.shape
                if grid is None:
                    hw = (h, w)
                    grid = np.lib.format.open_memmap(tmp / "grid.npy", mode="w+", dtype=np.float16,
                                                     shape=(n, h * w, d))
                cells = fmap.detach().float().flatten(2).transpose(1, 2).cpu().numpy()
                grid[np.array(batch_rows)] = cells.astype(np.float16)
                batch_rows.clear()
                batch_imgs.clear()

            with bar(f"sat grid features ({source.split})", n, progress) as pbar:
                for i in range(n):
                    try:
                        image = source.image(i)
                    except BadRow as exc:
                        skipped[exc.reason] = skipped.get(exc.reason, 0) + 1
                        log.warning("sat: skipping store row %d, %s: %s", i, exc.where, exc.reason)
                        pbar.advance(1)
                        continue
                    region = crop_region(image, source.boxes(i), self.region)
                    regions[i] = region
                    valid[i] = True
                    batch_rows.append(i)
                    batch_imgs.append(crop(image, region))
                    if len(batch_rows) == 32:
                        flush()
                    pbar.advance(1)
                flush()
            if grid is None:
                raise ValueError(f"sat: no usable image in split {source.split!r} ({n} rows)")
            grid.flush()
            del grid
            np.save(tmp / "valid.npy", valid)
            np.save(tmp / "regions.npy", regions)
            (tmp / "meta.json").write_text(json.dumps({"hw": list(hw), "rows": n,
                                                       "skipped": sum(skipped.values()),
                                                       "skip_reasons": skipped}))

    # -- 2. training ----------------------------------------------------------------------
    def _new_model(self, vocab_size: int, input_dim: int) -> Captioner:
        torch.manual_seed(self.seed)
        return Captioner(vocab_size, input_dim, **self.arch)

    def fit(self, train: AlignSource, workdir: Path, progress: bool = True, on_step=None) -> dict:
        """Train the captioner on ``train`` (resuming a checkpoint; reusing a finished model).

        ``on_step(step)`` is called after every optimiser step (tests use it to interrupt)."""
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        final = workdir / MODEL_FILE
        if final.is_file():
            saved = torch.load(final, map_location="cpu", weights_only=False)
            if saved["train_key"] == self._train_key():
                return {**saved["report"], "reused": True}
        grids = self.grids(train, workdir, progress)
        rows = np.flatnonzero(grids["valid"])
        vocab = Vocab.build((train.texts[i] for i in rows), self.min_count, self.max_vocab)
        caps = [vocab.encode(train.texts[i], self.max_len) for i in rows]
        keep = [j for j, c in enumerate(caps) if any(t != vocab.unk for t in c[1:-1])]
        rows, caps = rows[keep], [caps[j] for j in keep]
        if len(rows) == 0:
            raise ValueError(f"sat: no training row has a description word seen {self.min_count}+ times")
        padded = torch.zeros(len(caps), max(map(len, caps)), dtype=torch.long)
        for j, c in enumerate(caps):
            padded[j, : len(c)] = torch.tensor(c)
        lengths = torch.tensor([len(c) for c in caps])

        device = self.device
        model = self._new_model(len(vocab), grids["grid"].shape[2]).to(device)
        optim = torch.optim.Adam(model.parameters(), lr=self.lr, fused=fused(model.parameters()))
        per_epoch = -(-len(rows) // self.batch_size)
        total = per_epoch * self.epochs
        start_epoch = start_batch = step = 0
        history: list[float] = []
        ckpt_path = workdir / CHECKPOINT_FILE
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False) if ckpt_path.is_file() else None
        if ckpt is not None and ckpt["train_key"] == self._train_key() and ckpt["vocab"] == vocab.itos:
            model.load_state_dict(ckpt["model"])
            optim.load_state_dict(ckpt["optim"])
            start_epoch, start_batch, step = ckpt["epoch"], ckpt["batch"], ckpt["step"]
            history = ckpt["history"]
            set_rng_state(ckpt["rng"])  # the dropout streams, CUDA's included
            log.info("sat: resuming at epoch %d, batch %d", start_epoch, start_batch)
        else:  # a fresh run (a checkpoint of other settings is ignored and later overwritten)
            torch.manual_seed(self.seed + 1)  # dropout stream, restored on resume

        def save_checkpoint(epoch: int, batch: int) -> None:
            _atomic_save({"train_key": self._train_key(), "vocab": vocab.itos, "model": model.state_dict(),
                          "optim": optim.state_dict(), "epoch": epoch, "batch": batch, "step": step,
                          "history": history, "rng": rng_state()}, ckpt_path)

        model.train()
        with _cpu_threads(device, self.threads), bar("sat training", total, progress, completed=step) as pbar:
            for epoch in range(start_epoch, self.epochs):
                order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(self.seed + epoch))
                for b in range(start_batch if epoch == start_epoch else 0, per_epoch):
                    idx = order[b * self.batch_size:(b + 1) * self.batch_size]
                    sel = np.sort(rows[idx.numpy()])  # sorted reads from the memmap
                    sel_idx = idx[np.argsort(rows[idx.numpy()], kind="stable")]
                    grid = torch.from_numpy(np.asarray(grids["grid"][sel], dtype=np.float32)).to(device)
                    if self.grid_dropout > 0:  # against memorising an image by its exact cell values
                        grid = torch.nn.functional.dropout(grid, self.grid_dropout, training=True)
                    seq = padded[sel_idx, : int(lengths[sel_idx].max())].to(device)
                    inputs = seq[:, :-1]
                    if self.word_dropout > 0:  # hide previous words: the next one must be read off the image
                        hide = torch.rand(inputs.shape, device=device) < self.word_dropout
                        hide[:, 0] = False  # <start>
                        inputs = torch.where(hide & (inputs != vocab.pad), torch.full_like(inputs, vocab.unk),
                                             inputs)
                    logits, alphas = model(grid, inputs)
                    loss, ce = caption_loss(logits, alphas, seq[:, 1:], vocab.pad, self.alpha_c)
                    if not torch.isfinite(loss):  # stop before the step: the last checkpoint stays good
                        raise ValueError(f"sat: the captioner's loss is not finite at epoch {epoch + 1}, "
                                         f"step {step + 1} (lr {self.lr}); its last checkpoint is kept: "
                                         f"lower [aligner] lr or clip_grad_norm")
                    optim.zero_grad(set_to_none=True)
                    loss.backward()
                    if self.clip_grad_norm > 0:
                        torch.nn.utils.clip_grad_norm_(model.parameters(), self.clip_grad_norm)
                    optim.step()
                    step += 1
                    history.append(float(ce.detach()))
                    pbar.advance(1, info=f"epoch {epoch + 1}/{self.epochs} ce {history[-1]:.3f}")
                    if step % self.checkpoint_every == 0:
                        save_checkpoint(epoch, b + 1)
                    if on_step is not None:
                        on_step(step)
                save_checkpoint(epoch + 1, 0)
        tail = history[-per_epoch:]
        report = {"train_rows": int(len(rows)), "vocab": len(vocab), "steps": step, "epochs": self.epochs,
                  "final_ce": float(np.mean(tail)) if tail else None,
                  "first_ce": float(np.mean(history[:per_epoch])) if history else None,
                  "grid_hw": list(grids["hw"]), "skipped_images": grids["skipped"]}
        _atomic_save({"train_key": self._train_key(), "vocab": vocab.itos, "state": model.state_dict(),
                      "input_dim": int(grids["grid"].shape[2]), "grid_hw": list(grids["hw"]),
                      "report": report}, final)
        ckpt_path.unlink(missing_ok=True)
        return {**report, "reused": False}

    # -- 3. captions and alignments --------------------------------------------------------
    def load(self, workdir: Path) -> tuple[Captioner, Vocab, tuple[int, int]]:
        """The trained captioner of ``workdir`` (eval mode), its vocabulary and grid size."""
        path = Path(workdir) / MODEL_FILE
        if not path.is_file():
            raise FileNotFoundError(f"no trained captioner at {path} (run `kaleido align RECIPE` first)")
        saved = torch.load(path, map_location="cpu", weights_only=False)
        vocab = Vocab(saved["vocab"])
        model = Captioner(len(vocab), saved["input_dim"], **self.arch)
        model.load_state_dict(saved["state"])
        return model.to(self.device).eval(), vocab, tuple(saved["grid_hw"])

    def caption(self, model: Captioner, vocab: Vocab, grid: torch.Tensor) -> list[Caption]:
        """Decode a batch of grids (B, N, D) with the configured strategy."""
        grid = grid.to(self.device)
        if self.decode == "beam":
            return [model.beam(grid[b:b + 1], vocab.start, vocab.end, self.max_len, self.beam_size)
                    for b in range(grid.shape[0])]
        return model.greedy(grid, vocab.start, vocab.end, self.max_len)

    def align(self, source: AlignSource, workdir: Path, progress: bool = True) -> tuple[list[Pairs], dict]:
        model, vocab, hw = self.load(workdir)
        grids = self.grids(source, workdir, progress)
        n = len(source)
        present = {int(v) for v in np.unique(source.levels)}
        candidates = [lv for lv in self.levels if lv in present]
        if not candidates:  # e.g. the scale-fixed layout: its one grid is all there is
            candidates = sorted(present)
            log.warning("sat: no patch of levels %s in this layout; aligning to levels %s", self.levels,
                        candidates)
        out: list[Pairs] = [[] for _ in range(n)]
        words_total = matched = 0
        valid = np.flatnonzero(grids["valid"])
        with _cpu_threads(self.device, self.threads), bar(f"sat aligning ({source.split})", len(valid),
                                                          progress) as pbar:
            for start in range(0, len(valid), 64):
                rows = valid[start:start + 64]
                grid = torch.from_numpy(np.asarray(grids["grid"][rows], dtype=np.float32))
                caps = self.caption(model, vocab, grid)
                texts = [source.texts[i] for i in rows]
                offsets = source.offsets(texts)
                for i, cap, text, offs in zip(rows, caps, texts, offsets, strict=True):
                    caption_words = [vocab.itos[t] for t in cap.ids]
                    pairs = row_alignments(caption_words, cap.alphas.numpy(), hw, text, offs,
                                           grids["regions"][i], source.boxes(int(i)), source.levels,
                                           candidates, self.select, self.raster, self.stopwords,
                                           self.skip_words)
                    out[int(i)] = pairs
                    words_total += len(caption_words)
                    matched += len({t for t, _ in pairs})
                pbar.advance(len(rows))
        aligned = sum(1 for p in out if p)
        report = {"split": source.split, "rows": n, "skipped_images": grids["skipped"],
                  "aligned_rows": aligned,
                  "pairs": sum(len(p) for p in out), "mean_caption_words": words_total / max(1, len(valid)),
                  "aligned_tokens_per_row": matched / max(1, len(valid)), "levels": candidates}
        return out, report

    def attend(self, source: AlignSource, i: int, workdir: Path) -> tuple[list[str], np.ndarray, tuple]:
        """Caption row ``i`` now: its words, their attention grids (T, h, w) and the region they cover
        (what ``kaleido show --word`` draws)."""
        model, vocab, hw = self.load(workdir)
        image = source.image(i)
        region = crop_region(image, source.boxes(i), self.region)
        with torch.inference_mode():
            fmap = self._feature_map(source, [crop(image, region)])
        cap = self.caption(model, vocab, fmap.float().flatten(2).transpose(1, 2))[0]
        return [vocab.itos[t] for t in cap.ids], cap.alphas.numpy().reshape(-1, *hw), region
