"""Captioning's closed vocabulary: the cut decoder equals the full one on its tokens; ids map back."""

import numpy as np
import pytest
import torch
from fakes import TEXTS, FakeStore

from kaleido.evaluation.captioning import (
    IGNORE,
    VocabHead,
    caption_batch,
    caption_labels,
    caption_vocab,
    decode,
)
from kaleido.models.tokenizer import load_tokenizer
from kaleido.training.dataset import encode_pairs


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("minilm")


def test_caption_vocab_is_the_labels_tokens_and_sep(tok):
    labels = caption_labels(["red boots", "red bag"], tok, 6)
    vocab = caption_vocab(labels)
    words = tok.convert_ids_to_tokens(vocab.tolist())
    assert sorted(words) == sorted(["red", "boots", "bag", "[SEP]"])
    assert vocab.tolist() == sorted(vocab.tolist()) and IGNORE not in vocab.tolist()


def test_vocab_head_is_the_full_head_restricted_to_its_rows():
    from kaleido.models.kaleido import Kaleido
    from kaleido.tasks.amlm import MLMHead

    torch.manual_seed(0)
    model = Kaleido(init="scratch", hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32,
                    max_text_len=8).build(3, (1,))
    head = MLMHead(16, model.vocab_size)
    vocab = torch.tensor([102, 2417, 6954])
    hidden = torch.randn(2, 4, 16)
    full = head.logits(hidden, model)
    torch.testing.assert_close(VocabHead(head, vocab).logits(hidden, model), full[..., vocab])
    with pytest.raises(TypeError, match="closed vocabulary needs an MLM head"):
        VocabHead(torch.nn.Linear(2, 2), vocab)


def test_decode_maps_vocab_slots_back_to_tokens(tok):
    vocab = caption_vocab(caption_labels(["red boots"], tok, 4))  # red, boots, [SEP] in id order
    slot = {t: i for i, t in enumerate(tok.convert_ids_to_tokens(vocab.tolist()))}
    logits = torch.zeros(2, 4, len(vocab))
    for b, seq in enumerate([["red", "boots", "[SEP]", "red"], ["[SEP]", "boots", "boots", "[SEP]"]]):
        for s, word in enumerate(seq):
            logits[b, s, slot[word]] = 5.0
    logits[1, 0, slot["red"]] = 4.0  # slot 0 predicts [SEP]: its best other token is used
    assert decode(logits, tok, vocab) == ["red boots", "red boots"]
    # the same logits scattered into the full vocabulary decode the same way
    full = torch.full((2, 4, len(tok)), -1e4)
    full[..., vocab] = logits
    assert decode(full, tok) == ["red boots", "red boots"]


def test_decode_keeps_at_most_slots_minus_one_words_without_sep(tok):
    """Training puts [SEP] or nothing in the last slot, so a caption holds at most slots - 1 tokens
    even when no slot predicts [SEP] (a word there was never trained)."""
    words = ["red", "boots", "bag", "shirt"]
    logits = torch.zeros(1, 4, len(tok))
    for s, word in enumerate(words):
        logits[0, s, tok.convert_tokens_to_ids(word)] = 5.0
    assert decode(logits, tok) == ["red boots bag"]
    logits[0, 3] = 0.0
    logits[0, 3, tok.sep_token_id] = 5.0  # an end marker in the last slot ends it the same way
    assert decode(logits, tok) == ["red boots bag"]
    assert decode(logits[:, :1], tok) == ["red"]  # one slot: still never empty


def test_caption_batch_puts_masks_in_the_slots_not_the_text(tok):
    store = FakeStore(n=4)
    rows = np.arange(4)
    batch = encode_pairs(store, tok, rows, rows, 16)
    slots = 5
    out = caption_batch(batch, tok, slots)
    ids, mask = out["input_ids"], out["attention_mask"]
    assert ids.shape == (4, slots + 1)  # no padding after the slots: it would only cost time
    assert (ids[:, 0] == tok.cls_token_id).all()
    assert (ids[:, 1 : slots + 1] == tok.mask_token_id).all()
    assert (mask == 1).all() and mask.dtype == batch["attention_mask"].dtype
    assert out["features"] is batch["features"] and out["positions"] is batch["positions"]
    with pytest.raises(ValueError, match="does not fit"):
        caption_batch(batch, tok, 16)


def test_generated_captions_do_not_read_the_rows_texts(tok):
    """The captions come from the patches alone: the same images under other texts caption alike."""
    from kaleido.evaluation.captioning import generate
    from kaleido.models.kaleido import Kaleido
    from kaleido.tasks.amlm import MLMHead

    torch.manual_seed(0)
    model = Kaleido(init="scratch", hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32,
                    max_text_len=16).build(16, (1, 2, 3, 4, 5))
    head = MLMHead(16, model.vocab_size)
    with torch.no_grad():  # BERT's 0.02 init barely mixes the patches into the slots: every caption alike
        for p in model.bert.encoder.parameters():
            if p.dim() == 2:
                p.normal_(std=0.5)

    def encode(store, texts, images):
        return encode_pairs(store, tok, texts, images, 16)

    rows = np.arange(6)
    captions = [generate(model, head, tok, FakeStore(n=6, texts=texts), encode, rows, 5, 4)
                for texts in (TEXTS, TEXTS[::-1], ["a b c d e f g h i j"] * 6)]
    assert captions[0] == captions[1] == captions[2]
    # ... and they do read the images: each row its own caption, other patch features other captions
    other = generate(model, head, tok, FakeStore(n=6, texts=TEXTS, seed=1), encode, rows, 5, 4)
    assert len(set(captions[0])) == 6 and other != captions[0]


def test_caption_generation_reports_its_progress(tok):
    """Generating the test captions was a silent step of eval (caption_samples = 1000 in full.toml)."""
    from kaleido.evaluation.captioning import generate
    from kaleido.models.kaleido import Kaleido
    from kaleido.tasks.amlm import MLMHead

    model = Kaleido(init="scratch", hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32,
                    max_text_len=16).build(16, (1, 2, 3, 4, 5))
    seen = []
    captions = generate(model, MLMHead(16, model.vocab_size), tok, FakeStore(n=6, texts=TEXTS),
                        lambda store, t, i: encode_pairs(store, tok, t, i, 16), np.arange(6), 5, 4,
                        progress=lambda done, total: seen.append((done, total)))
    assert len(captions) == 6 and seen == [(4, 6), (6, 6)]


def test_caption_metrics_report_each_step(monkeypatch):
    """The metrics (two PTB tokenizations, then BLEU, METEOR, ROUGE-L, CIDEr per system) were silent;
    the scorers are stand-ins here (no Java), what is checked is the count of steps."""
    import pycocoevalcap.bleu.bleu as bleu
    import pycocoevalcap.cider.cider as cider
    import pycocoevalcap.meteor.meteor as meteor
    import pycocoevalcap.rouge.rouge as rouge
    import pycocoevalcap.tokenizer.ptbtokenizer as ptb

    from kaleido.evaluation import caption_metrics

    class Scorer:
        def __init__(self, *args, **kwargs):
            self.bleu = bool(args)  # Bleu(4)

        def compute_score(self, gts, res, **kwargs):
            return ([0.5] * 4 if self.bleu else 0.5), None

    class Tokenizer:
        def tokenize(self, captions):
            return {k: [c["caption"] for c in v] for k, v in captions.items()}

    for module, name in ((bleu, "Bleu"), (cider, "Cider"), (meteor, "Meteor"), (rouge, "Rouge")):
        monkeypatch.setattr(module, name, Scorer)
    monkeypatch.setattr(ptb, "PTBTokenizer", Tokenizer)
    monkeypatch.setattr(caption_metrics, "require_java", lambda: "java")
    seen = []
    refs = {"1": ["a red shirt"], "2": ["blue jeans"]}
    out = caption_metrics.caption_scores_many(refs, {"ours": {"1": "a shirt", "2": "jeans"},
                                                     "baseline": {"1": "x", "2": "x"}},
                                              progress=lambda done, total: seen.append((done, total)))
    assert set(out) == {"ours", "baseline"}
    assert seen == [(n, 10) for n in range(11)]


def test_cmlm_mask_masks_every_slot_of_half_the_captions_and_some_of_the_rest():
    from kaleido.evaluation.captioning import cmlm_mask

    lengths = torch.arange(400) % 7 + 1  # 1..7 labelled slots of 8
    known = torch.arange(8)[None, :] < lengths[:, None]
    masked = cmlm_mask(known, torch.Generator().manual_seed(0))
    assert not (masked & ~known).any()  # only labelled slots carry a loss
    count = masked.sum(1)
    assert (count >= 1).all() and (count <= lengths).all()
    full = (count == lengths).float().mean().item()
    assert 0.5 < full < 0.75  # half by design, plus the partial draws that happen to take all n
    assert ((count > 1) & (count < lengths)).any()  # and partial masks of varied sizes
    assert torch.equal(masked, cmlm_mask(known, torch.Generator().manual_seed(0)))
    again = cmlm_mask(known, torch.Generator().manual_seed(1))
    assert not torch.equal(masked, again)


def test_reveal_shows_tokens_in_the_slots_only_where_asked(tok):
    from kaleido.evaluation.captioning import reveal

    batch = caption_batch({"input_ids": torch.zeros(2, 8, dtype=torch.long),
                           "attention_mask": torch.ones(2, 8, dtype=torch.long)}, tok, 4)
    tokens = torch.tensor([[11, 12, 13, 14], [21, 22, 23, 24]])
    shown = torch.tensor([[True, False, True, False], [False, False, False, True]])
    ids = reveal(batch, tokens, shown)["input_ids"]
    m = tok.mask_token_id
    assert ids[:, 0].tolist() == [tok.cls_token_id] * 2
    assert ids[:, 1:5].tolist() == [[11, m, 13, m], [m, m, m, 24]] and ids.shape == (2, 5)
    assert (batch["input_ids"][:, 1:5] == m).all()  # the caller's batch is not changed


class _ContextHead:
    """A stand-in encoder + head whose slot 1 reads slot 0: with slot 0 masked it is unsure
    (bag 0.55 / boots 0.45); with "red" shown, it is sure of "boots" (row 0) or of [SEP], then
    "shoes" (row 1). Slot 0 is "red", slot 2 [SEP]. It records the slots it was shown."""

    def __init__(self, tok) -> None:
        self.tok, self.seen = tok, []
        self.id = {w: tok.convert_tokens_to_ids(w) for w in ("red", "bag", "boots", "shoes", "[SEP]")}

    def encoder(self, batch):
        self.seen.append(batch["input_ids"][:, 1:5].clone())
        return batch["input_ids"][..., None].float(), None

    def logits(self, hidden, model):
        ids = hidden[..., 0].long()
        out = torch.full((ids.shape[0], ids.shape[1], len(self.tok)), -20.0)
        out[:, 0, self.id["red"]] = 5.0
        for b in range(ids.shape[0]):
            if ids[b, 0] == self.id["red"]:  # slot 0 shown
                second = ("boots", "shoes") if b == 0 else ("[SEP]", "shoes")
                out[b, 1, self.id[second[0]]], out[b, 1, self.id[second[1]]] = 5.0, 3.0
            else:
                out[b, 1, self.id["bag"]], out[b, 1, self.id["boots"]] = 0.2, 0.0
        out[:, 2:, self.id["[SEP]"]] = 5.0
        return out


def test_mask_predict_rewrites_the_least_confident_words_with_the_others_shown(tok):
    from kaleido.evaluation.captioning import generate

    fake = _ContextHead(tok)

    class Encoder(torch.nn.Module):
        def forward(self, batch):
            return fake.encoder(batch)

    def encode(store, texts, images):
        return {"input_ids": torch.zeros(len(texts), 8, dtype=torch.long),
                "attention_mask": torch.ones(len(texts), 8, dtype=torch.long)}

    head = torch.nn.Module()
    head.logits = fake.logits
    rows = np.arange(2)
    assert generate(Encoder(), head, tok, None, encode, rows, 4, 2) == ["red bag", "red bag"]
    fake.seen.clear()
    # one refinement: 1 of the 2 words (the least sure, "bag") is predicted again with "red" and
    # the end marker shown; the length stays, so row 1's [SEP] gives way to its next best word
    assert generate(Encoder(), head, tok, None, encode, rows, 4, 2, refine=1) == ["red boots", "red shoes"]
    m, red, sep = tok.mask_token_id, fake.id["red"], tok.sep_token_id
    assert [s.tolist() for s in fake.seen] == [[[m, m, m, m]] * 2, [[red, m, sep, m]] * 2]


def test_caption_slots_read_the_same_without_the_padding_after_them(tok):
    """The caption block is [CLS] + slots, not padded to the model's text length: the slots' hidden
    states are those of the padded block (masked padding changes nothing but the time)."""
    from kaleido.models.kaleido import Kaleido

    torch.manual_seed(0)
    model = Kaleido(init="scratch", hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32,
                    max_text_len=16).build(16, (1, 2, 3, 4, 5)).eval()
    rows = np.arange(3)
    batch = encode_pairs(FakeStore(n=3), tok, rows, rows, 16)
    short = caption_batch(batch, tok, 5)
    padded = {**short, "input_ids": torch.cat([short["input_ids"], torch.zeros(3, 10, dtype=torch.long)], 1),
              "attention_mask": torch.cat([short["attention_mask"], torch.zeros(3, 10, dtype=torch.long)], 1)}
    with torch.no_grad():
        a, _ = model(short)
        b, _ = model(padded)
    torch.testing.assert_close(a[:, :6], b[:, :6])  # [CLS] + the slots
    torch.testing.assert_close(a[:, 6:], b[:, 16:])  # the patches
