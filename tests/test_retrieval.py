"""Rank@K on hand-made score lists with known answers, and the documented tie rule."""

import numpy as np
import pytest

from kaleido.evaluation.retrieval import chance_recall, positive_ranks, recall_at, sum_r


def test_ranks_of_hand_made_lists():
    scores = [
        [0.9, 0.1, 0.5, 0.3],  # positive best -> rank 1
        [0.2, 0.9, 0.8, 0.1],  # two above -> rank 3
        [0.0, 0.1, 0.2, 0.3],  # worst -> rank 4
        [0.5, 0.4],  # a shorter list is fine
    ]
    assert positive_ranks(scores).tolist() == [1, 3, 4, 1]


def test_ties_count_against_the_positive():
    assert positive_ranks([[0.5, 0.5, 0.1]]).tolist() == [2]
    assert positive_ranks([[0.5, 0.5, 0.5, 0.5]]).tolist() == [4]  # a constant scorer ranks last
    assert positive_ranks([[0.5, 0.4999, 0.5]]).tolist() == [2]


def test_recall_at_k_in_percent():
    ranks = np.array([1, 3, 6, 11, 10])
    r = recall_at(ranks)
    assert r == {"R@1": 20.0, "R@5": 40.0, "R@10": 80.0}


def test_chance_recall_with_101_candidates():
    c = chance_recall([101] * 7)
    assert c["R@1"] == pytest.approx(100 / 101)
    assert c["R@10"] == pytest.approx(1000 / 101)
    assert chance_recall([4])["R@5"] == 100.0


def test_sum_r_adds_six_recalls():
    itr = {"R@1": 27.99, "R@5": 60.09, "R@10": 68.37}
    tir = {"R@1": 33.88, "R@5": 60.60, "R@10": 68.59}
    assert sum_r(itr, tir) == pytest.approx(319.52)


def test_bad_scores_are_errors():
    with pytest.raises(ValueError, match="NaN"):
        positive_ranks([[0.1, float("nan")]])
    with pytest.raises(ValueError, match="no queries"):
        recall_at(np.array([]))


def test_confident_match_scores_do_not_saturate_into_ties():
    """In float32 log p(match) is 0.0 for margins 20 and 17 alike: the positive would tie its
    negative and rank 2; the log-odds keep the order p(match) gives."""
    import torch

    from kaleido.tasks.itm import match_score

    logits = torch.tensor([[0.0, 20.0], [0.0, 17.0], [1.0, -2.0]])
    assert logits.log_softmax(-1)[0, 1] == logits.log_softmax(-1)[1, 1] == 0.0
    scores = match_score(logits)
    assert scores.tolist() == [20.0, 17.0, -3.0]
    assert positive_ranks([scores.numpy()]).tolist() == [1]
    assert torch.equal(scores.argsort(), logits.double().softmax(-1)[:, 1].argsort())  # exact order
