"""FC, fashion captioning, encoder-only as the authors did: every text slot masked, predicted from patches.

The authors masked every text position after ``[CLS]`` (``caption_tokens = max_text_len - 1``, 63,
as ``recipes/full.toml``); the default 24 caps a caption at 23 WordPieces for a short CPU run.

Input: ``[CLS]`` then ``L`` = ``caption_tokens`` slots of ``[MASK]`` (attended), the rest of the
text positions padding, then the image patches. Training labels: the caption's first ``L - 1``
WordPieces, then ``[SEP]`` as the end marker; slots after ``[SEP]`` carry no loss. The AMLM head
of the pre-trained objective (tied to the word embeddings) predicts every slot.

Decoding (one forward pass, non-autoregressive): every slot takes its most probable token,
``[CLS]``, ``[MASK]``, ``[PAD]`` and ``[UNK]`` excluded; the caption is read left to right and
ends at the first ``[SEP]`` (length control: the model learns where the end marker goes), with
at most ``L - 1`` tokens: the last slot never holds a word in training, so a word predicted there
is dropped. Immediate repeats of a token (the usual failure of parallel decoding)
are collapsed. A caption is never empty: if slot 0 predicts ``[SEP]``, slot 0's best other token
is used.

Closed vocabulary (``closed_vocab``, as most captioning systems build their word list from the
training captions): the slots predict only the WordPieces that occur in the training captions,
plus ``[SEP]``. The AMLM head is kept, its tied decoder restricted to those rows of the word
embeddings (:class:`VocabHead`). On the quickstart that is a few hundred of 30,522 tokens: the
output layer shrinks a hundredfold, and a short fine-tuning no longer spends its steps pushing
probability off tokens no caption uses.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from kaleido.evaluation.finetune import finetune

IGNORE = -100
Encode = Callable[[Any, np.ndarray, np.ndarray], dict]


def caption_batch(batch: dict, tokenizer: Any, slots: int) -> dict:
    """Replace the text of an encoded batch by ``[CLS]`` + ``slots`` x ``[MASK]`` (+ padding)."""
    ids = batch["input_ids"]
    if slots + 1 > ids.shape[1]:
        raise ValueError(f"caption_tokens={slots} does not fit the model's {ids.shape[1]} text positions")
    new_ids = torch.full_like(ids, tokenizer.pad_token_id)
    new_ids[:, 0] = tokenizer.cls_token_id
    new_ids[:, 1 : slots + 1] = tokenizer.mask_token_id
    mask = torch.zeros_like(batch["attention_mask"])
    mask[:, : slots + 1] = 1
    return {**batch, "input_ids": new_ids, "attention_mask": mask}


def caption_labels(texts: Sequence[str], tokenizer: Any, slots: int) -> torch.Tensor:
    """(B, slots) targets: the first ``slots - 1`` WordPieces, ``[SEP]``, then ignored slots."""
    out = torch.full((len(texts), slots), IGNORE, dtype=torch.long)
    for i, text in enumerate(texts):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][: slots - 1]
        out[i, : len(ids)] = torch.as_tensor(ids, dtype=torch.long)
        out[i, len(ids)] = tokenizer.sep_token_id
    return out


class VocabHead(nn.Module):
    """The AMLM head with its tied decoder cut to ``vocab`` (token ids): logits over ``vocab`` only."""

    def __init__(self, head: nn.Module, vocab: torch.Tensor) -> None:
        super().__init__()
        for part in ("transform", "bias"):
            if not hasattr(head, part):
                raise TypeError(f"a closed vocabulary needs an MLM head (transform, bias): {type(head)}")
        self.head = head
        self.register_buffer("vocab", torch.as_tensor(vocab, dtype=torch.long), persistent=False)

    def logits(self, hidden: torch.Tensor, model: Any) -> torch.Tensor:
        return nn.functional.linear(self.head.transform(hidden), model.word_embeddings.weight[self.vocab],
                                    self.head.bias[self.vocab])


def caption_vocab(labels: torch.Tensor) -> torch.Tensor:
    """The sorted token ids of the training labels (``[SEP]`` included, ignored slots not)."""
    return torch.unique(labels[labels != IGNORE])


def decode(logits: torch.Tensor, tokenizer: Any, vocab: torch.Tensor | None = None) -> list[str]:
    """Captions from (B, slots, V) logits by the rule in the module docstring; with ``vocab``, the
    last axis holds those token ids' logits only."""
    logits = logits.float().clone()
    ids_of = torch.arange(logits.shape[-1]) if vocab is None else vocab.cpu()
    banned = [tokenizer.cls_token_id, tokenizer.mask_token_id, tokenizer.pad_token_id, tokenizer.unk_token_id]
    logits[..., torch.isin(ids_of, torch.as_tensor(banned))] = float("-inf")
    best = ids_of[logits.argmax(-1)]
    sep = tokenizer.sep_token_id
    is_sep = ids_of == sep
    out = []
    for b in range(best.shape[0]):
        ids = best[b].tolist()
        if ids[0] == sep:
            row = logits[b, 0].clone()
            row[is_sep] = float("-inf")
            ids[0] = int(ids_of[row.argmax()])
        words: list[int] = []
        # the last slot is the end marker's when the caption is as long as it gets (training never
        # puts a word there): at most slots - 1 words, also when no slot predicts [SEP]
        for t in ids[: max(1, len(ids) - 1)]:
            if t == sep:
                break
            if not words or words[-1] != t:
                words.append(t)
        out.append(tokenizer.decode(words, skip_special_tokens=True).strip())
    return out


def constant_caption(train_texts: Sequence[str]) -> str:
    """The baseline caption: the most frequent training text (ties: the first seen)."""
    return Counter(train_texts).most_common(1)[0][0]


def train_captioner(
    model: nn.Module,
    mlm_head: nn.Module,
    tokenizer: Any,
    train_store: Any,
    encode: Encode,
    rows: np.ndarray,
    texts: Sequence[str],
    slots: int,
    batch_size: int,
    epochs: float,
    lr: float,
    seed: int,
    progress: Callable | None = None,
    closed_vocab: bool = False,
) -> tuple[nn.Module, nn.Module, dict]:
    """Fine-tune copies of the encoder and AMLM head to write ``texts[i]`` from ``rows[i]``'s patches;
    with ``closed_vocab`` the head returned is a :class:`VocabHead` over the captions' WordPieces."""
    encoder, head = copy.deepcopy(model), copy.deepcopy(mlm_head)
    labels = caption_labels(texts, tokenizer, slots)
    if closed_vocab:
        vocab = caption_vocab(labels)
        head = VocabHead(head, vocab)
        known = labels != IGNORE
        labels[known] = torch.searchsorted(vocab, labels[known])  # token id -> its slot in vocab

    def loss_fn(batch_idx: np.ndarray) -> torch.Tensor:
        r = rows[batch_idx]
        sequence, _ = encoder(caption_batch(encode(train_store, r, r), tokenizer, slots))
        logits = head.logits(sequence[:, 1 : slots + 1], encoder).float()
        return nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), labels[batch_idx].reshape(-1), ignore_index=IGNORE
        )

    params = list(encoder.parameters()) + list(head.parameters())
    summary = finetune(
        params, [encoder, head], loss_fn, len(rows), batch_size, epochs, lr, seed, "fc", progress
    )
    if closed_vocab:
        summary["vocab"] = len(head.vocab)
    return encoder, head, summary


@torch.inference_mode()
def generate(
    encoder: nn.Module,
    head: nn.Module,
    tokenizer: Any,
    store: Any,
    encode: Encode,
    rows: np.ndarray,
    slots: int,
    batch_size: int,
    progress: Callable[[int, int], None] | None = None,
) -> list[str]:
    """One caption per store row, from its image patches alone (its own text never enters);
    ``progress(captions done, captions)`` after each batch."""
    encoder.eval()
    head.eval()
    out: list[str] = []
    for b in range(0, len(rows), batch_size):
        r = rows[b : b + batch_size]
        sequence, _ = encoder(caption_batch(encode(store, r, r), tokenizer, slots))
        logits = head.logits(sequence[:, 1 : slots + 1], encoder)
        out += decode(logits, tokenizer, getattr(head, "vocab", None))
        if progress is not None:
            progress(len(out), len(rows))
    return out
