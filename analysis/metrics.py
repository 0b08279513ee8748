"""Classification and regression metrics, single and batched.

The batched forms score many resamples at once: ``labels`` and ``scores`` of shape
``(n_resamples, m)`` give one value per row. They are what the bootstrap, the jackknife
and the per-fold scoring use, so a bootstrap AUC is computed by exactly the same code
as the point estimate.

AUC is the Mann-Whitney form: ``(sum of midranks of positives - n1 (n1 + 1) / 2) /
(n1 n0)``, which counts ties as one half and equals
:func:`sklearn.metrics.roc_auc_score`.

Examples
--------
>>> import numpy as np
>>> roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
0.75
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "midranks",
    "batched_auc",
    "resample_counts",
    "weighted_auc",
    "weighted_confusion_rates",
    "batched_balanced_accuracy",
    "batched_sensitivity",
    "batched_specificity",
    "roc_auc",
    "balanced_accuracy",
    "sensitivity",
    "specificity",
    "BinaryMetrics",
    "binary_metrics",
    "RegressionMetrics",
    "regression_metrics",
]


def midranks(values: np.ndarray) -> np.ndarray:
    """Midranks (1-based, ties get their average rank) along the last axis.

    Parameters
    ----------
    values : ndarray, shape (..., m)

    Returns
    -------
    ndarray of float64, shape (..., m)
        Same as ``scipy.stats.rankdata(values, method="average", axis=-1)``.
    """
    values = np.asarray(values)
    m = values.shape[-1]
    flat = values.reshape(-1, m)
    order = np.argsort(flat, axis=-1, kind="stable")
    sorted_vals = np.take_along_axis(flat, order, axis=-1)
    positions = np.broadcast_to(np.arange(m), flat.shape)
    new_group = np.ones(flat.shape, dtype=bool)
    new_group[:, 1:] = sorted_vals[:, 1:] != sorted_vals[:, :-1]
    # first position of each element's tie group
    first = np.maximum.accumulate(np.where(new_group, positions, 0), axis=-1)
    # last position: scan from the right over group ends
    group_end = np.ones(flat.shape, dtype=bool)
    group_end[:, :-1] = new_group[:, 1:]
    rev = np.where(group_end, positions, m - 1)[:, ::-1]
    last = np.minimum.accumulate(rev, axis=-1)[:, ::-1]
    ranks_sorted = (first + last) / 2.0 + 1.0
    ranks = np.empty(flat.shape, dtype=np.float64)
    np.put_along_axis(ranks, order, ranks_sorted, axis=-1)
    return ranks.reshape(values.shape)


def batched_auc(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Area under the ROC curve of each row.

    Parameters
    ----------
    labels : ndarray of bool, shape (..., m)
        True for positives.
    scores : ndarray, shape (..., m)
        Higher = more likely positive.

    Returns
    -------
    ndarray, shape (...)
        NaN for a row without positives or without negatives.
    """
    labels = np.asarray(labels, dtype=bool)
    ranks = midranks(scores)
    n_pos = labels.sum(axis=-1)
    n_neg = labels.shape[-1] - n_pos
    rank_sum = np.where(labels, ranks, 0.0).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


def resample_counts(index: np.ndarray, n: int) -> np.ndarray:
    """How often each of n rows appears in each index set.

    Parameters
    ----------
    index : ndarray of int, shape (B, m)
    n : int

    Returns
    -------
    ndarray of float64, shape (B, n)
    """
    index = np.atleast_2d(np.asarray(index, dtype=np.int64))
    b = index.shape[0]
    flat = (index + (np.arange(b, dtype=np.int64) * n)[:, None]).reshape(-1)
    return np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)


def weighted_auc(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUC of every (weight vector, score row): resamples without re-sorting.

    A bootstrap resample is a multiset of the n rows, i.e. a count per row. Its AUC is
    ``sum_{i pos, j neg} w_i w_j [s_i > s_j] + 0.5 [s_i = s_j]`` over ``W1 W0``. Sorting
    each score row once and taking cumulative sums of the negative weights gives all
    resamples in O(B n) per score row, instead of one sort per resample.

    Parameters
    ----------
    labels : ndarray of bool, shape (n,)
    scores : ndarray, shape (R, n)
    weights : ndarray, shape (B, n)
        Non-negative counts (e.g. :func:`resample_counts`).

    Returns
    -------
    ndarray, shape (B, R)
        Equals the AUC of the expanded resample (sklearn's ``roc_auc_score`` on
        ``y[idx], s[idx]``); NaN where a resample lacks positives or negatives.
    """
    labels = np.asarray(labels, dtype=bool)
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    w_pos_total = weights[:, labels].sum(axis=1)
    w_neg_total = weights[:, ~labels].sum(axis=1)
    out = np.empty((weights.shape[0], scores.shape[0]))
    for r in range(scores.shape[0]):
        order = np.argsort(scores[r], kind="stable")
        s_sorted = scores[r, order]
        lab = labels[order]
        starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
        w = weights[:, order]
        w_neg = np.where(lab, 0.0, w)
        w_pos = np.where(lab, w, 0.0)
        neg_group = np.add.reduceat(w_neg, starts, axis=1)      # (B, G)
        pos_group = np.add.reduceat(w_pos, starts, axis=1)      # (B, G)
        neg_below = np.cumsum(neg_group, axis=1) - neg_group    # strictly lower groups
        out[:, r] = (pos_group * (neg_below + 0.5 * neg_group)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        denom = (w_pos_total * w_neg_total)[:, None]
        return np.where(denom > 0, out / np.where(denom > 0, denom, 1.0), np.nan)


def weighted_confusion_rates(labels: np.ndarray, predicted: np.ndarray, weights: np.ndarray
                             ) -> tuple[np.ndarray, np.ndarray]:
    """Sensitivity and specificity of every (weight vector, prediction row).

    Parameters
    ----------
    labels : ndarray of bool, shape (n,)
    predicted : ndarray of bool, shape (R, n)
    weights : ndarray, shape (B, n)

    Returns
    -------
    sensitivity, specificity : ndarrays, shape (B, R)
    """
    labels = np.asarray(labels, dtype=bool)
    predicted = np.atleast_2d(np.asarray(predicted, dtype=bool))
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    w_pos = weights @ labels.astype(np.float64)
    w_neg = weights.sum(axis=1) - w_pos
    tp = weights @ (predicted & labels).T.astype(np.float64)
    tn = weights @ (~predicted & ~labels).T.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        sens = np.where(w_pos[:, None] > 0, tp / w_pos[:, None], np.nan)
        spec = np.where(w_neg[:, None] > 0, tn / w_neg[:, None], np.nan)
    return sens, spec


def _rates(labels: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels, dtype=bool)
    predicted = np.asarray(predicted, dtype=bool)
    n_pos = labels.sum(axis=-1)
    n_neg = labels.shape[-1] - n_pos
    true_pos = (labels & predicted).sum(axis=-1)
    true_neg = (~labels & ~predicted).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        sens = np.where(n_pos > 0, true_pos / np.maximum(n_pos, 1), np.nan)
        spec = np.where(n_neg > 0, true_neg / np.maximum(n_neg, 1), np.nan)
    return sens, spec


def batched_sensitivity(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """True-positive rate of each row (shapes as :func:`batched_balanced_accuracy`)."""
    return _rates(labels, predicted)[0]


def batched_specificity(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """True-negative rate of each row (shapes as :func:`batched_balanced_accuracy`)."""
    return _rates(labels, predicted)[1]


def batched_balanced_accuracy(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Balanced accuracy (mean of sensitivity and specificity) of each row.

    Parameters
    ----------
    labels : ndarray of bool, shape (..., m)
    predicted : ndarray of bool, shape (..., m)
        Predicted positive.

    Returns
    -------
    ndarray, shape (...)
        Equals :func:`sklearn.metrics.balanced_accuracy_score` when both classes are
        present; NaN when a row holds only one class (sklearn then warns and returns
        the single recall, which is not a balanced accuracy).
    """
    sens, spec = _rates(labels, predicted)
    return (sens + spec) / 2.0


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """AUC of one score vector; ``y_true`` shape (n,) in {0, 1} or bool."""
    return float(batched_auc(np.asarray(y_true).astype(bool), np.asarray(scores, float)))


def balanced_accuracy(y_true: np.ndarray, predicted: np.ndarray) -> float:
    """Balanced accuracy of one prediction vector (0/1 or bool)."""
    return float(batched_balanced_accuracy(np.asarray(y_true).astype(bool),
                                           np.asarray(predicted).astype(bool)))


def sensitivity(y_true: np.ndarray, predicted: np.ndarray) -> float:
    """Sensitivity (recall of positives) of one prediction vector."""
    return float(batched_sensitivity(np.asarray(y_true).astype(bool),
                                     np.asarray(predicted).astype(bool)))


def specificity(y_true: np.ndarray, predicted: np.ndarray) -> float:
    """Specificity (recall of negatives) of one prediction vector."""
    return float(batched_specificity(np.asarray(y_true).astype(bool),
                                     np.asarray(predicted).astype(bool)))


@dataclass(frozen=True)
class BinaryMetrics:
    """Point metrics of a binary classifier at a fixed threshold."""

    auc: float
    balanced_accuracy: float
    sensitivity: float
    specificity: float
    threshold: float
    n: int
    n_pos: int

    def summary(self) -> str:
        """One line, e.g. ``AUC 0.812  BA 0.744  sens 0.70  spec 0.79  (n=120, 40 pos)``."""
        return (f"AUC {self.auc:.3f}  BA {self.balanced_accuracy:.3f}  "
                f"sens {self.sensitivity:.3f}  spec {self.specificity:.3f}  "
                f"(n={self.n}, {self.n_pos} pos, threshold {self.threshold:g})")

    def to_frame(self) -> pd.DataFrame:
        """One-row DataFrame of the fields."""
        return pd.DataFrame([asdict(self)])


def binary_metrics(y_true: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> BinaryMetrics:
    """AUC, balanced accuracy, sensitivity and specificity of ``scores >= threshold``.

    Parameters
    ----------
    y_true : ndarray, shape (n,)
        0/1 or bool.
    scores : ndarray, shape (n,)
        Predicted probability (or any score where higher = positive).
    threshold : float
        Scores at or above it are called positive.
    """
    y_true = np.asarray(y_true).astype(bool)
    scores = np.asarray(scores, dtype=float)
    predicted = scores >= threshold
    return BinaryMetrics(
        auc=roc_auc(y_true, scores),
        balanced_accuracy=balanced_accuracy(y_true, predicted),
        sensitivity=sensitivity(y_true, predicted),
        specificity=specificity(y_true, predicted),
        threshold=float(threshold),
        n=int(y_true.size),
        n_pos=int(y_true.sum()),
    )


@dataclass(frozen=True)
class RegressionMetrics:
    """Spearman correlation, its p-value, and mean absolute error."""

    spearman: float
    spearman_p: float
    mae: float
    n: int

    def summary(self) -> str:
        """One line with the three numbers."""
        return (f"Spearman rho {self.spearman:.3f} (p={self.spearman_p:.3g})  "
                f"MAE {self.mae:.3f}  (n={self.n})")

    def to_frame(self) -> pd.DataFrame:
        """One-row DataFrame of the fields."""
        return pd.DataFrame([asdict(self)])


def regression_metrics(y_true: np.ndarray, predicted: np.ndarray) -> RegressionMetrics:
    """Spearman rho (scipy) and MAE of a continuous prediction; shapes (n,)."""
    y_true = np.asarray(y_true, dtype=float)
    predicted = np.asarray(predicted, dtype=float)
    rho, p_value = stats.spearmanr(y_true, predicted)
    return RegressionMetrics(spearman=float(rho), spearman_p=float(p_value),
                             mae=float(np.mean(np.abs(y_true - predicted))),
                             n=int(y_true.size))
