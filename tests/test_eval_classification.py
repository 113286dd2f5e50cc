"""Accuracy and macro-F1 against a hand computation, and SumCLS against the paper's own sum."""

import pytest

from kaleido.evaluation.classification import chance_classification, classification_metrics, sum_cls


def test_metrics_match_a_hand_computation():
    y_true = ["a", "a", "a", "b", "b", "c"]
    y_pred = ["a", "a", "b", "b", "c", "c"]
    m = classification_metrics(y_true, y_pred)
    assert m["acc"] == pytest.approx(100 * 4 / 6)
    # per class F1: a: p=1, r=2/3 -> 0.8; b: p=1/2, r=1/2 -> 0.5; c: p=1/2, r=1 -> 2/3
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)


def test_a_label_only_predicted_still_counts_in_macro_f1():
    m = classification_metrics(["a", "a"], ["a", "z"])
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.0) / 2)


def test_majority_baseline():
    m = chance_classification(["a", "a", "a", "b"])
    assert m["acc"] == 75.0 and m["macro_f1"] == pytest.approx((6 / 7 + 0) / 2)
    # the most frequent label, not the first in sorted order (which "a" also was above)
    assert chance_classification(["b", "a", "b", "c", "b"])["acc"] == 60.0


def test_sum_cls_reproduces_the_paper():
    total = sum_cls({"acc": 95.07, "macro_f1": 0.714}, {"acc": 88.07, "macro_f1": 0.636})
    assert total == pytest.approx(318.14)


def test_bad_shapes():
    for truth, pred in (([1, 2], [1]), ([], []), ([[1, 2]], [[1, 2]])):
        with pytest.raises(ValueError, match="need two equal, non-empty 1-d"):
            classification_metrics(truth, pred)
