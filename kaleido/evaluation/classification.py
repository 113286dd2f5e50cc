"""Category (CR) and sub-category (SUB) recognition metrics: accuracy and macro-F1, and SumCLS.

Metrics come from scikit-learn. Macro-F1 averages over every label that occurs in the truth or
in the predictions (scikit-learn's default), so a test label never seen in training still counts
as a class the model got entirely wrong.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kaleido.evaluation.intervals import share_interval


def _labels(y_true: Sequence | np.ndarray, y_pred: Sequence | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1 or y_true.size == 0:
        raise ValueError(f"need two equal, non-empty 1-d label arrays; got {y_true.shape} and {y_pred.shape}")
    return y_true, y_pred


def classification_metrics(y_true: Sequence | np.ndarray, y_pred: Sequence | np.ndarray) -> dict[str, float]:
    """``acc`` as a percentage (the paper's unit) and ``macro_f1`` in [0, 1] (as the paper prints)."""
    from sklearn.metrics import accuracy_score, f1_score

    y_true, y_pred = _labels(y_true, y_pred)
    return {"acc": float(100.0 * accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0))}


def accuracy_interval(y_true: Sequence | np.ndarray, y_pred: Sequence | np.ndarray) -> list[float]:
    """The accuracy's 95% interval over the test images (Wilson, :mod:`kaleido.evaluation.intervals`)."""
    y_true, y_pred = _labels(y_true, y_pred)
    return share_interval(int(np.count_nonzero(y_true == y_pred)), y_true.size)


def chance_classification(y_true: Sequence | np.ndarray) -> dict[str, float]:
    """What always answering the most frequent test label scores (the floor to beat)."""
    y_true = np.asarray(y_true)
    values, counts = np.unique(y_true, return_counts=True)
    return classification_metrics(y_true, np.full(y_true.shape, values[np.argmax(counts)]))


def sum_cls(cr: dict[str, float], sub: dict[str, float]) -> float:
    """SumCLS = (ACC% + 100 x macro-F) over CR and SUB; the paper's 95.07/0.714 + 88.07/0.636 = 318.14."""
    return float(cr["acc"] + 100.0 * cr["macro_f1"] + sub["acc"] + 100.0 * sub["macro_f1"])
