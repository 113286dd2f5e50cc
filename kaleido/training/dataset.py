"""The pre-training data path: store rows -> ITM pairing -> tokens -> mask plan -> task transforms.

The mask plan covers only what the tasks hide (``hidden_by(tasks)``) and has the same
distribution for ITM negatives as for positives (see :meth:`PretrainDataset.plan`).

Every random choice of an example draws from one ``np.random.Generator`` seeded by
``(seed, epoch, index)``, so an example depends on nothing else: not on the worker that builds
it, the batch it lands in, nor where a run resumed. The dataset is picklable (DataLoader workers);
the store opens its own memory maps per process.

:func:`encode_pairs` is the plain path for evaluation: text row i with image row j, unmasked and
untransformed, in the same batch layout the model reads.

:func:`trim_text_padding` cuts a batch's text block to its longest text (dynamic padding), which
``PretrainDataset.collate`` does by default: padded positions are masked out of attention, so the
cut changes no output at a real position, but every layer's matrix products skip the columns (the
quickstart's descriptions average 20 WordPieces of its 48 text positions; the GPU benchmark's
texts leave 41% of its 119 positions as padding at a fixed 64).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol

import numpy as np
import torch

from kaleido.maskers.base import MaskPlan, check_masker
from kaleido.tasks.base import Sample, Task, hidden_by, patch_layout


class Alignments(Protocol):
    """Per store row, ``(token_position, patch_index)`` pairs (see docs/ARCHITECTURE.md)."""

    def pairs(self, index: int) -> Sequence[tuple[int, int]]: ...


def _text_ids(tokenizer: Any, text: str, max_text_len: int) -> list[int]:
    """WordPiece ids without special tokens, truncated to leave room for [CLS] and [SEP]."""
    return tokenizer(text, add_special_tokens=False)["input_ids"][: max_text_len - 2]


def _sequence(tokenizer: Any, ids: list[int], max_text_len: int) -> np.ndarray:
    out = np.full(max_text_len, tokenizer.pad_token_id, dtype=np.int64)
    out[0], out[1: len(ids) + 1], out[len(ids) + 1] = tokenizer.cls_token_id, ids, tokenizer.sep_token_id
    return out


def _check_store(store: Any) -> tuple[int, ...]:
    grids = tuple(int(g) for g in store.grids)
    expected = patch_layout(grids)
    levels = np.asarray(store.levels)
    if levels.shape != expected.shape or not np.array_equal(levels, expected):
        raise ValueError(f"store levels do not follow the level-by-level patch order of grids {grids}")
    return grids


def encode_pairs(store: Any, tokenizer: Any, text_rows: Sequence[int] | np.ndarray,
                 image_rows: Sequence[int] | np.ndarray, max_text_len: int = 64) -> dict[str, torch.Tensor]:
    """A model batch pairing the text of ``text_rows[k]`` with the image of ``image_rows[k]``:
    ``input_ids``, ``attention_mask`` (B, T), ``features`` (B, P, D), ``positions`` (B, P, 5)."""
    if len(text_rows) != len(image_rows):
        raise ValueError(f"encode_pairs needs as many text rows as image rows, got {len(text_rows)} "
                         f"and {len(image_rows)}")
    ids = np.stack([_sequence(tokenizer, _text_ids(tokenizer, store.meta(int(t)).text, max_text_len),
                              max_text_len) for t in text_rows])
    images = sorted(set(int(i) for i in image_rows))  # each image read once
    feats = {i: np.asarray(store.features(i), dtype=np.float32) for i in images}
    pos = {i: np.asarray(store.positions(i), dtype=np.float32) for i in images}
    return {"input_ids": torch.from_numpy(ids),
            "attention_mask": torch.from_numpy((ids != tokenizer.pad_token_id).astype(np.int64)),
            "features": torch.from_numpy(np.stack([feats[int(i)] for i in image_rows])),
            "positions": torch.from_numpy(np.stack([pos[int(i)] for i in image_rows]))}


def trim_text_padding(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The batch with ``input_ids`` / ``attention_mask`` cut after the last attended text position
    of any row; the model's outputs at ``[CLS]`` (and every kept position) are unchanged."""
    mask = batch["attention_mask"]
    attended = mask.any(dim=0).nonzero()
    keep = int(attended.max()) + 1 if len(attended) else 1
    if keep >= mask.shape[1]:
        return batch
    return {**batch, "input_ids": batch["input_ids"][:, :keep], "attention_mask": mask[:, :keep]}


class PretrainDataset(torch.utils.data.Dataset):
    """Map-style pre-training examples over a feature store; ``collate`` makes the batch dict."""

    def __init__(self, store: Any, tokenizer: Any, masker: Any, tasks: Sequence[Task] | Mapping[str, Task],
                 alignments: Alignments | None = None, seed: int = 0, max_text_len: int = 64,
                 pad_text: Literal["longest", "max"] = "longest") -> None:
        if pad_text not in ("longest", "max"):
            raise ValueError(f"pad_text must be 'longest' (the batch's longest text) or 'max' "
                             f"(max_text_len), got {pad_text!r}")
        self.pad_text = pad_text
        self.store = store
        self.tokenizer = tokenizer
        self.masker = masker
        self.tasks: list[Task] = list(tasks.values()) if isinstance(tasks, Mapping) else list(tasks)
        self.alignments = alignments
        self.seed = int(seed)
        self.max_text_len = int(max_text_len)
        self.epoch = 0
        self.grids = _check_store(store)
        self.levels = patch_layout(self.grids)
        for task in self.tasks:
            task.bind(self.grids)
        check_masker(masker)
        self.hidden = hidden_by(self.tasks)
        self.product_ids = np.asarray(store.product_ids()).astype(str)
        if len(self.product_ids) != len(store):
            raise ValueError(f"store.product_ids() has {len(self.product_ids)} entries for {len(store)} rows")
        needs_other = any(t.name in ("itm", "cp") for t in self.tasks)
        if needs_other and len(store) and len(np.unique(self.product_ids)) < 2:
            raise ValueError("itm and cp need rows of at least two different products")
        self.mask_token_id = int(tokenizer.mask_token_id)
        special = set(tokenizer.all_special_ids)
        self.random_token_ids = np.array([i for i in range(len(tokenizer)) if i not in special],
                                         dtype=np.int64)

    def __len__(self) -> int:
        return len(self.store)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, int(index)])

    def other_product(self, row: int, rng: np.random.Generator) -> int:
        """A uniformly drawn row of a different product than ``row`` (never another pose of it)."""
        own = self.product_ids[row]
        for _ in range(16):  # rejection is cheap when products are many
            other = int(rng.integers(len(self.product_ids)))
            if self.product_ids[other] != own:
                return other
        return int(rng.choice(np.flatnonzero(self.product_ids != own)))

    def _pairs(self, row: int) -> Sequence[tuple[int, int]] | None:
        return self.alignments.pairs(row) if self.alignments is not None else None

    def plan(self, text_row: int, image_row: int, n_tokens: int, rng: np.random.Generator) -> MaskPlan:
        """The mask plan of a pair, drawn from the same distribution whether it is matched or not.

        A positive gets the masker's plan over its row's alignments. A negative's text and image
        come from two rows, so its tokens are those of a plan for the text row and its patches
        those of a plan for the image row, each made as if that row were a positive (own
        alignments, own text length, the same one-side coin): each side then has exactly the
        distribution it has in a positive of its row (only the one-side coupling of aligned pairs
        is absent, and a mismatched pair has no aligned pairs). Why: ITM must not read its label
        off the masking; handing negatives no alignments did that (their masked tokens were
        uniform, stopwords included, while a positive's were aligned content words).
        """
        text_plan = self.masker.plan(n_tokens, self.levels, self.grids, self._pairs(text_row), rng,
                                     hidden=self.hidden)
        if text_row == image_row:
            return text_plan
        image_tokens = len(_text_ids(self.tokenizer, self.store.meta(image_row).text, self.max_text_len))
        image_plan = self.masker.plan(image_tokens, self.levels, self.grids, self._pairs(image_row), rng,
                                      hidden=self.hidden)
        return MaskPlan(text_plan.tokens, image_plan.patches)

    def __getitem__(self, index: int) -> Sample:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"row {index} out of range for a store of {len(self)} rows")
        rng = self.rng(index)
        text_row = image_row = index
        for task in self.tasks:
            chosen = task.pair(index, rng, self)
            if chosen is not None:
                text_row, image_row = chosen
        matched = text_row == image_row
        ids = _text_ids(self.tokenizer, self.store.meta(text_row).text, self.max_text_len)
        features = np.array(self.store.features(image_row), dtype=np.float32)
        plan = self.plan(text_row, image_row, len(ids), rng)
        sample = Sample(index=index, text_row=text_row, image_row=image_row, matched=matched,
                        input_ids=_sequence(self.tokenizer, ids, self.max_text_len), n_tokens=len(ids),
                        features=features, original=features.copy(),
                        positions=np.asarray(self.store.positions(image_row), dtype=np.float32), plan=plan)
        for task in self.tasks:
            task.prepare(sample, rng, self)
        return sample

    def collate(self, samples: list[Sample]) -> dict[str, torch.Tensor]:
        """Stack examples into the batch dict the model and the task heads read."""
        ids = np.stack([s.input_ids for s in samples])
        batch = {"input_ids": torch.from_numpy(ids),
                 "attention_mask": torch.from_numpy((ids != self.tokenizer.pad_token_id).astype(np.int64)),
                 "features": torch.from_numpy(np.stack([s.features for s in samples])),
                 "positions": torch.from_numpy(np.stack([s.positions for s in samples])),
                 "index": torch.tensor([s.index for s in samples], dtype=torch.long),
                 "matched": torch.tensor([s.matched for s in samples], dtype=torch.bool)}
        for task in self.tasks:
            batch.update(task.collate([s.labels[task.name] for s in samples]))
        return trim_text_padding(batch) if self.pad_text == "longest" else batch
