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

Refinement (``refine`` = T > 0, off by default; the authors decoded in one pass): mask-predict
(Ghazvininejad et al., EMNLP 2019), still encoder-only. The one-pass caption fixes the length;
then T times, the least confident of its words are masked again (L x (T + 1 - t) / (T + 1) of
its L words at pass t) and predicted with the other words visible. One pass predicts every slot
independently, so its words need not fit together ("solid. a"); each refinement reads the words
already chosen. Training for it (the conditional masked LM) masks every slot of half the
captions, as the authors did, and a random number of the labelled slots of the other half,
those alone carrying a loss.

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
    """Replace the text of an encoded batch by ``[CLS]`` + ``slots`` x ``[MASK]``: a text block of
    ``slots + 1`` positions, every one attended (padding after it would only cost time, as the
    model takes any text block up to its ``max_text_len``, see ``trim_text_padding``)."""
    ids = batch["input_ids"]
    if slots + 1 > ids.shape[1]:
        raise ValueError(f"caption_tokens={slots} does not fit the model's {ids.shape[1]} text positions")
    new_ids = torch.full((ids.shape[0], slots + 1), tokenizer.mask_token_id, dtype=ids.dtype)
    new_ids[:, 0] = tokenizer.cls_token_id
    mask = torch.ones_like(new_ids, dtype=batch["attention_mask"].dtype)
    return {**batch, "input_ids": new_ids, "attention_mask": mask}


def reveal(batch: dict, tokens: torch.Tensor, shown: torch.Tensor) -> dict:
    """``batch`` (a :func:`caption_batch`) with slot ``j`` holding ``tokens[:, j]`` where ``shown``."""
    ids = batch["input_ids"].clone()
    slots = tokens.shape[1]
    ids[:, 1 : slots + 1] = torch.where(shown, tokens, ids[:, 1 : slots + 1])
    return {**batch, "input_ids": ids}


def cmlm_mask(known: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Which labelled slots (``known``, B x slots) a refinement-trained caption masks: all of them
    for a random half of the rows (the one-pass objective), else ``k`` of the row's ``n``, ``k``
    uniform in 1..n, at random."""
    rows, slots = known.shape
    n = known.sum(1)
    k = (torch.rand(rows, generator=generator) * n).long() + 1  # uniform in 1..n
    k = torch.where(torch.rand(rows, generator=generator) < 0.5, n, k)
    score = torch.rand(rows, slots, generator=generator).masked_fill(~known, 2.0)
    rank = score.argsort(1).argsort(1)  # a random order of the labelled slots, the others last
    return known & (rank < k[:, None])


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


def _allowed(logits: torch.Tensor, tokenizer: Any, vocab: torch.Tensor | None,
             end: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-probabilities over the tokens a slot may hold, their token ids): never ``[CLS]``,
    ``[MASK]``, ``[PAD]``, ``[UNK]``; ``[SEP]`` only where ``end``."""
    logits = logits.float().clone()
    ids_of = torch.arange(logits.shape[-1]) if vocab is None else vocab.cpu()
    banned = [tokenizer.cls_token_id, tokenizer.mask_token_id, tokenizer.pad_token_id, tokenizer.unk_token_id]
    if not end:
        banned.append(tokenizer.sep_token_id)
    logits[..., torch.isin(ids_of, torch.as_tensor(banned))] = float("-inf")
    return torch.log_softmax(logits, -1), ids_of


def first_pass(logits: torch.Tensor, tokenizer: Any,
               vocab: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The one-pass choice (rule in the module docstring): each slot's token id (B, slots), its
    probability, and each caption's length in slots (the first ``[SEP]``'s slot, at most
    ``slots - 1``, at least 1)."""
    logp, ids_of = _allowed(logits, tokenizer, vocab, end=True)
    best = logp.argmax(-1)
    sep = tokenizer.sep_token_id
    start_sep = ids_of[best[:, 0]] == sep  # slot 0 never ends the caption: its best other token
    if start_sep.any():
        row = logp[:, 0].clone()
        row[:, ids_of == sep] = float("-inf")
        best[:, 0] = torch.where(start_sep, row.argmax(-1), best[:, 0])
    conf = logp.gather(-1, best[..., None])[..., 0].exp()
    ids = ids_of[best]
    slots = ids.shape[1]
    # the last slot is the end marker's when the caption is as long as it gets (training never
    # puts a word there): at most slots - 1 words, also when no slot predicts [SEP]
    body = ids[:, : max(1, slots - 1)] == sep
    length = torch.where(body.any(1), body.int().argmax(1), body.shape[1])
    return ids, conf, length.long()


def caption_text(ids: torch.Tensor, length: torch.Tensor, tokenizer: Any) -> list[str]:
    """Each row's first ``length`` token ids as text, immediate repeats collapsed (the usual
    failure of parallel decoding)."""
    out = []
    for row, n in zip(ids.tolist(), length.tolist(), strict=True):
        words: list[int] = []
        for t in row[:n]:
            if not words or words[-1] != t:
                words.append(t)
        out.append(tokenizer.decode(words, skip_special_tokens=True).strip())
    return out


def decode(logits: torch.Tensor, tokenizer: Any, vocab: torch.Tensor | None = None) -> list[str]:
    """Captions from (B, slots, V) logits by the rule in the module docstring; with ``vocab``, the
    last axis holds those token ids' logits only."""
    ids, _, length = first_pass(logits, tokenizer, vocab)
    return caption_text(ids, length, tokenizer)


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
    refine: bool = False,
) -> tuple[nn.Module, nn.Module, dict]:
    """Fine-tune copies of the encoder and AMLM head to write ``texts[i]`` from ``rows[i]``'s patches;
    with ``closed_vocab`` the head returned is a :class:`VocabHead` over the captions' WordPieces;
    with ``refine`` the captions are partly masked (:func:`cmlm_mask`) for mask-predict decoding."""
    encoder, head = copy.deepcopy(model), copy.deepcopy(mlm_head)
    labels = caption_labels(texts, tokenizer, slots)
    tokens = labels.clamp(min=0)  # the token ids a revealed slot shows
    masking = torch.Generator().manual_seed(seed)
    if closed_vocab:
        vocab = caption_vocab(labels)
        head = VocabHead(head, vocab)
        known = labels != IGNORE
        labels[known] = torch.searchsorted(vocab, labels[known])  # token id -> its slot in vocab

    def loss_fn(batch_idx: np.ndarray) -> torch.Tensor:
        r = rows[batch_idx]
        batch, target = caption_batch(encode(train_store, r, r), tokenizer, slots), labels[batch_idx]
        if refine:
            masked = cmlm_mask(target != IGNORE, masking)
            batch = reveal(batch, tokens[batch_idx], (target != IGNORE) & ~masked)
            target = target.masked_fill(~masked, IGNORE)
        sequence, _ = encoder(batch)
        logits = head.logits(sequence[:, 1 : slots + 1], encoder).float()
        return nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=IGNORE
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
    refine: int = 0,
) -> list[str]:
    """One caption per store row, from its image patches alone (its own text never enters), with
    ``refine`` mask-predict passes after the first; ``progress(captions done, captions)`` after
    each batch."""
    encoder.eval()
    head.eval()
    vocab = getattr(head, "vocab", None)
    out: list[str] = []
    for b in range(0, len(rows), batch_size):
        r = rows[b : b + batch_size]
        batch = caption_batch(encode(store, r, r), tokenizer, slots)
        sequence, _ = encoder(batch)
        ids, conf, length = first_pass(head.logits(sequence[:, 1 : slots + 1], encoder), tokenizer, vocab)
        pos = torch.arange(slots)
        words, end = pos < length[:, None], pos == length[:, None]
        ids = torch.where(end, tokenizer.sep_token_id, ids)  # the length stays: [SEP] shown where it ends
        for t in range(1, refine + 1):
            count = torch.ceil(length * (refine + 1 - t) / (refine + 1)).long()
            rank = conf.masked_fill(~words, float("inf")).argsort(1).argsort(1)  # least confident first
            again = words & (rank < count[:, None])
            sequence, _ = encoder(reveal(batch, ids, (words & ~again) | end))
            logits = head.logits(sequence[:, 1 : slots + 1], encoder)
            logp, ids_of = _allowed(logits, tokenizer, vocab, end=False)  # the length is kept
            best_p, best = logp.max(-1)
            ids = torch.where(again, ids_of[best], ids)
            conf = torch.where(again, best_p.exp(), conf)
        out += caption_text(ids, length, tokenizer)
        if progress is not None:
            progress(len(out), len(rows))
    return out
