"""Pair scoring over candidate lists: grouping per query, batching across lists, one read per row."""

import numpy as np
import torch

from kaleido.evaluation.cached_store import CachedStore
from kaleido.evaluation.retrieval import positive_ranks
from kaleido.evaluation.scoring import list_pairs, score_lists


class ArrayStore:
    """Features in RAM with the store's vectorised accessors; counts the rows read."""

    def __init__(self, n=30, p=4, d=3):
        rng = np.random.default_rng(0)
        self.f = rng.normal(size=(n, p, d)).astype(np.float16)
        self.pos = rng.random(size=(n, p, 5)).astype(np.float16)
        self.rows_read = 0
        self.grids = (1,)

    def __len__(self):
        return len(self.f)

    def features(self, i):
        self.rows_read += np.size(i)
        return self.f[i]

    def positions(self, i):
        return self.pos[i]

    def meta(self, i):
        return [f"text {j}" for j in i] if np.ndim(i) else f"text {i}"


def encode(view, texts, images):
    return {"text": torch.as_tensor(texts), "image": torch.as_tensor(images),
            "features": torch.as_tensor(view.features(images))}


def test_list_pairs_layout():
    t, i, n = list_pairs([7, 3, 5])
    assert n == 3
    assert list(zip(t.tolist(), i.tolist(), strict=True)) == [(7, 7), (3, 7), (5, 7), (7, 3), (7, 5)]


def test_scores_grouped_per_query_with_positive_first():
    store = ArrayStore()
    lists = [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9, 10, 11]]

    def match(batch):  # a text-image "similarity": high only on the true pair, rows as tie-breakers
        return (batch["text"] == batch["image"]).double() + 0.01 * batch["text"] - 0.001 * batch["image"]

    itr, tir, stats = score_lists(lists, store, encode, match, batch_size=4, chunk_pairs=8)
    assert [len(s) for s in itr] == [4, 3, 5] and [len(s) for s in tir] == [4, 3, 5]
    assert positive_ranks(itr).tolist() == [1, 1, 1] and positive_ranks(tir).tolist() == [1, 1, 1]
    # ITR list 1 ranks the texts 4, 5, 6 against image 4
    assert np.allclose(itr[1], [1 + 0.04 - 0.004, 0.05 - 0.004, 0.06 - 0.004])
    # TIR list 2 ranks images 7..11 against text 7
    assert np.allclose(tir[2], [1 + 0.07 - 0.007] + [0.07 - 0.001 * r for r in (8, 9, 10, 11)])
    assert stats["pairs"] == 7 + 5 + 9
    assert store.rows_read == stats["rows_read"] == 12  # every row read from the store once


def test_several_lists_in_one_chunk_keep_their_own_scores():
    # The test above fits one list per chunk; here whole lists share a chunk and its batches, so
    # each list's scores must be cut at its own offset (2N + 1 pairs), not at N + 1.
    lists = [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9, 10, 11], [12, 13]]

    def match(batch):
        return 1.0 * batch["text"] + 0.01 * batch["image"]

    itr, tir, stats = score_lists(lists, ArrayStore(), encode, match, batch_size=3)
    assert stats["pairs"] == 7 + 5 + 9 + 3 and stats["batches"] == 8  # one chunk, batches across lists
    for lst, i, t in zip(lists, itr, tir, strict=True):
        q = lst[0]
        assert np.allclose(i, [r + 0.01 * q for r in lst])  # texts of the list against image q
        assert np.allclose(t, [q + 0.01 * r for r in lst])  # images of the list against text q


def test_cached_store_serves_the_same_features_and_refuses_other_rows():
    store = ArrayStore()
    view = CachedStore(store, [3, 1, 3])
    assert np.array_equal(view.features(3), store.f[3].astype(np.float32))
    assert np.array_equal(view.positions(np.array([1, 3])), store.pos[[1, 3]].astype(np.float32))
    assert view.grids == (1,) and len(view) == 30
    assert view.meta(1) == "text 1" and view.meta(np.array([3, 1])) == ["text 3", "text 1"]
    try:
        view.features(2)
    except KeyError as exc:
        assert "row 2" in str(exc)
    else:
        raise AssertionError("row 2 was never loaded")


def test_trim_text_padding_cuts_to_the_longest_text_and_changes_no_output():
    from kaleido.models.kaleido import Kaleido
    from kaleido.training.dataset import trim_text_padding

    torch.manual_seed(0)
    model = Kaleido(init="scratch", hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32,
                    max_text_len=10).build(3, (1, 2)).eval()
    ids = torch.tensor([[101, 7, 8, 102, 0, 0, 0, 0, 0, 0], [101, 9, 102, 0, 0, 0, 0, 0, 0, 0]])
    batch = {"input_ids": ids, "attention_mask": (ids != 0).long(),
             "features": torch.randn(2, 5, 3), "positions": torch.rand(2, 5, 5)}
    cut = trim_text_padding(batch)
    assert cut["input_ids"].shape == (2, 4) and torch.equal(cut["input_ids"], ids[:, :4])
    assert cut["features"] is batch["features"]
    with torch.inference_mode():
        full_seq, full_pooled = model(batch)
        cut_seq, cut_pooled = model(cut)
    torch.testing.assert_close(cut_pooled, full_pooled, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(cut_seq[:, :4], full_seq[:, :4], rtol=1e-5, atol=1e-6)  # text kept
    torch.testing.assert_close(cut_seq[:, 4:], full_seq[:, 10:], rtol=1e-5, atol=1e-6)  # patches
    # a batch already as long as its longest text is returned as is
    assert trim_text_padding(cut) is cut
