"""MACIL-SD's frame-level metrics on numpy arrays: the PR-AUC that the
original implementation (github.com/JustinYuu/MACIL_SD) reports as "AP", and
the step-wise average precision."""
from __future__ import annotations

from typing import Tuple

import numpy as np

__all__ = ['pr_curve', 'pr_auc', 'step_ap']


def _curve(scores: np.ndarray, labels: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Precision and recall at each distinct threshold, highest first."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel()
    if scores.shape != labels.shape:
        raise ValueError(f'{scores.size} scores but {labels.size} labels')
    if scores.size == 0:
        raise ValueError('no scores to evaluate')
    if not np.isin(labels, (0, 1)).all():
        raise ValueError('frame labels must be 0 or 1')
    if not np.isfinite(scores).all():
        raise ValueError('scores contain NaN or inf')
    positives = labels.sum()
    if positives == 0:
        raise ValueError('precision-recall needs at least one positive frame')
    order = np.argsort(-scores, kind='mergesort')
    s, y = scores[order], labels[order].astype(np.float64)
    last = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]  # end of each tie group
    tp = np.cumsum(y)[last]
    fp = (last + 1) - tp
    return tp / (tp + fp), tp / positives


def pr_curve(scores, labels) -> Tuple[np.ndarray, np.ndarray]:
    """``(recall, precision)`` of the PR-AUC: from ``(0, 1)`` through one point
    per distinct threshold up to full recall.

    Raises:
        ValueError: As :func:`pr_auc`.
    """
    precision, recall = _curve(scores, labels)
    stop = int(np.searchsorted(recall, recall[-1])) + 1  # scikit-learn stops at full recall
    return np.r_[0.0, recall[:stop]], np.r_[1.0, precision[:stop]]


def pr_auc(scores, labels) -> float:
    """The upstream "AP": trapezoidal area under the precision–recall curve
    (one point per distinct threshold plus ``(recall 0, precision 1)``), as
    scikit-learn's ``auc(recall, precision)`` after ``precision_recall_curve``.

    Raises:
        ValueError: On mismatched sizes, no positive, non-binary labels or
            non-finite scores.
    """
    r, p = pr_curve(scores, labels)
    return float(np.trapz(p, r)) if hasattr(np, 'trapz') else float(np.trapezoid(p, r))


def step_ap(scores, labels) -> float:
    """Average precision ``Σ_n (R_n − R_{n−1})·P_n`` (scikit-learn's
    ``average_precision_score``), no interpolation.

    Raises:
        ValueError: As :func:`pr_auc`.
    """
    precision, recall = _curve(scores, labels)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
