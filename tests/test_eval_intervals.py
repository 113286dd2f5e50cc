"""95% intervals of R@K and accuracy: Wilson's score interval, checked against its closed form."""

import math

import numpy as np
import pytest

from kaleido.evaluation.classification import accuracy_interval
from kaleido.evaluation.intervals import share_interval
from kaleido.evaluation.retrieval import recall_interval

Z = 1.959963984540054  # the normal 97.5% quantile


def _wilson(hits: int, n: int) -> list[float]:
    p = hits / n
    centre = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
    half = Z / (1 + Z * Z / n) * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n))
    return [100 * (centre - half), 100 * (centre + half)]


@pytest.mark.parametrize("hits, n", [(9, 20), (1, 20), (4, 20), (197, 201), (30, 100)])
def test_share_interval_is_wilsons(hits, n):
    assert share_interval(hits, n) == pytest.approx(_wilson(hits, n), abs=1e-6)


def test_an_interval_at_none_or_all_is_not_a_point():
    """The normal approximation gives [0, 0] for 0 of 10; Wilson's gives 0 to 27.75%."""
    assert share_interval(0, 10) == pytest.approx([0.0, 27.75], abs=0.01)
    assert share_interval(10, 10) == pytest.approx([72.25, 100.0], abs=0.01)
    width = [hi - lo for lo, hi in (share_interval(5, 10), share_interval(50, 100))]
    assert width[0] > width[1]  # ten times the items: a narrower interval at the same share


def test_bad_counts_are_refused():
    for hits, n in [(1, 0), (-1, 5), (6, 5)]:
        with pytest.raises(ValueError, match="need 0 <= hits <= n"):
            share_interval(hits, n)


def test_recall_interval_counts_the_queries_within_the_top_k():
    ranks = np.array([1, 3, 12, 7, 101])  # R@1: 1 of 5, R@5: 2 of 5, R@10: 3 of 5
    ci = recall_interval(ranks)
    assert ci == {"R@1": share_interval(1, 5), "R@5": share_interval(2, 5), "R@10": share_interval(3, 5)}
    with pytest.raises(ValueError, match="no queries"):
        recall_interval(np.array([], dtype=int))


def test_accuracy_interval_counts_the_right_answers():
    assert accuracy_interval(["a", "b", "b", "c"], ["a", "b", "c", "c"]) == share_interval(3, 4)
    with pytest.raises(ValueError, match="equal, non-empty"):
        accuracy_interval(["a"], ["a", "b"])
