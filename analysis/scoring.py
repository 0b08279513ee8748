"""Scorers: one metric, evaluated on many index sets at once.

A :class:`Scorer` is the single interface between out-of-fold predictions and every
statistic built on them (point estimate, per-fold values, bootstrap, jackknife, paired
comparisons). Its function has the signature::

    fn(target, scores, index) -> ndarray, shape (B, R)

- ``target``: the outcome of the n patients, in whatever form the metric needs: a bool
  array (n,) for AUC/balanced accuracy, a float array (n,) for Spearman/MAE, a
  ``(time, event)`` structure for a c-index. Only ``fn`` looks inside it.
- ``scores``: float array (R, n): out-of-fold predictions of each of R CV repeats.
- ``index``: int array (B, m): B index sets of m rows each (bootstrap resamples,
  leave-one-out sets, or one fold's test rows as a (1, m) array).

and returns the metric of every (index set, repeat). Everything else is generic:
:func:`score_point`, :func:`score_folds`, :func:`score_resamples` and
:func:`score_jackknife` call ``fn`` with the right index sets, chunked to bound memory;
:func:`estimate` turns them into a :class:`~neurofeat.analysis.bootstrap.BootstrapCI`
of the repeat-averaged metric.

A survival c-index plugs in as ``Scorer("c_index", fn=my_batched_cindex,
higher_is_better=True, analytic_test=None)`` with ``target`` a structured
(event, time) array; nothing else changes.

Examples
--------
>>> import numpy as np
>>> y = np.array([0, 0, 1, 1], bool)
>>> scores = np.array([[0.1, 0.4, 0.35, 0.8]])
>>> score_point(AUC, y, scores)
array([0.75])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from neurofeat.analysis.bootstrap import BootstrapCI, bootstrap_ci, jackknife_indices
from neurofeat.analysis.metrics import midranks, resample_counts, weighted_auc, \
    weighted_confusion_rates

__all__ = [
    "Scorer",
    "AUC",
    "balanced_accuracy_scorer",
    "sensitivity_scorer",
    "specificity_scorer",
    "SPEARMAN",
    "MAE",
    "get_scorer",
    "score_point",
    "score_folds",
    "predicted_share_folds",
    "score_resamples",
    "score_jackknife",
    "estimate",
]

ScoreFn = Callable[[Any, np.ndarray, np.ndarray], np.ndarray]
AnalyticTest = Callable[[Any, np.ndarray, np.ndarray], tuple[str, float, float]]


@dataclass(frozen=True)
class Scorer:
    """A metric over out-of-fold predictions.

    Attributes
    ----------
    name : str
        Short name used in tables and the store ('auc', 'ba', 'c_index').
    fn : callable
        ``fn(target, scores (R, n), index (B, m)) -> (B, R)``; see the module docstring.
    higher_is_better : bool
    analytic_test : callable, optional
        ``(target, scores_a (n,), scores_b (n,)) -> (test_name, statistic, p_value)``:
        an analytic paired test for this metric (DeLong for AUC). Called by the
        comparison on the repeat-averaged scores.
    threshold : float, optional
        The cut of a metric of ``score >= threshold`` (BA, sensitivity, specificity);
        None for rank and error metrics.
    """

    name: str
    fn: ScoreFn
    higher_is_better: bool = True
    analytic_test: AnalyticTest | None = None
    threshold: float | None = None

    def __call__(self, target: Any, scores: np.ndarray, index: np.ndarray) -> np.ndarray:
        return self.fn(target, scores, index)


def _gather(target: np.ndarray, scores: np.ndarray, index: np.ndarray):
    scores = np.atleast_2d(scores)
    return np.asarray(target)[index], scores[:, index]  # (B, m), (R, B, m)


def _auc_fn(target, scores, index):
    labels = np.asarray(target, bool)
    return weighted_auc(labels, scores, resample_counts(index, labels.size))


def _delong_test(target, scores_a, scores_b):
    from neurofeat.analysis.delong import delong_test

    res = delong_test(np.asarray(target, bool), scores_a, scores_b)
    return "delong", res.z, res.p_value


#: Area under the ROC curve (target: bool (n,)); paired analytic test: DeLong.
AUC = Scorer("auc", _auc_fn, True, _delong_test)


def _threshold_scorer(name: str, combine, threshold: float) -> Scorer:
    def fn(target, scores, index):
        labels = np.asarray(target, bool)
        sens, spec = weighted_confusion_rates(labels, np.atleast_2d(scores) >= threshold,
                                              resample_counts(index, labels.size))
        return combine(sens, spec)

    return Scorer(name, fn, True, None, threshold)


def balanced_accuracy_scorer(threshold: float = 0.5) -> Scorer:
    """Balanced accuracy of ``score >= threshold`` (target: bool (n,))."""
    return _threshold_scorer("ba", lambda se, sp: (se + sp) / 2.0, threshold)


def sensitivity_scorer(threshold: float = 0.5) -> Scorer:
    """Sensitivity of ``score >= threshold``."""
    return _threshold_scorer("sensitivity", lambda se, sp: se, threshold)


def specificity_scorer(threshold: float = 0.5) -> Scorer:
    """Specificity of ``score >= threshold``."""
    return _threshold_scorer("specificity", lambda se, sp: sp, threshold)


def _spearman_fn(target, scores, index):
    values, s = _gather(np.asarray(target, float), scores, index)
    ry = midranks(values)[None]
    rs = midranks(s)
    ry = ry - ry.mean(axis=-1, keepdims=True)
    rs = rs - rs.mean(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (ry * rs).sum(-1) / np.sqrt((ry ** 2).sum(-1) * (rs ** 2).sum(-1))
    return rho.T


def _mae_fn(target, scores, index):
    values, s = _gather(np.asarray(target, float), scores, index)
    return np.abs(s - values[None]).mean(axis=-1).T


#: Spearman rank correlation of a continuous prediction with the raw label.
SPEARMAN = Scorer("spearman", _spearman_fn, True, None)
#: Mean absolute error of a continuous prediction (lower is better).
MAE = Scorer("mae", _mae_fn, False, None)


def get_scorer(name: str, threshold: float = 0.5) -> Scorer:
    """Scorer by name: auc, ba, sensitivity, specificity, spearman, mae."""
    table = {"auc": lambda: AUC, "ba": lambda: balanced_accuracy_scorer(threshold),
             "sensitivity": lambda: sensitivity_scorer(threshold),
             "specificity": lambda: specificity_scorer(threshold),
             "spearman": lambda: SPEARMAN, "mae": lambda: MAE}
    if name not in table:
        raise ValueError(f"unknown metric {name!r}; known: {', '.join(table)}")
    return table[name]()


def score_point(scorer: Scorer, target: Any, scores: np.ndarray,
                rows: np.ndarray | None = None) -> np.ndarray:
    """Metric of each repeat on all rows (or on ``rows``); returns shape (R,)."""
    scores = np.atleast_2d(scores)
    rows = np.arange(scores.shape[1]) if rows is None else np.asarray(rows)
    return np.asarray(scorer(target, scores, rows[None]))[0]


def score_folds(scorer: Scorer, target: Any, scores: np.ndarray, fold_ids: np.ndarray,
                n_folds: int | None = None) -> np.ndarray:
    """Metric on each fold's test rows, shape (R, K); NaN for a fold absent in a repeat.

    Parameters
    ----------
    scores : ndarray, shape (R, n)
    fold_ids : ndarray of int, shape (R, n)
    """
    scores = np.atleast_2d(scores)
    fold_ids = np.atleast_2d(fold_ids)
    k = int(fold_ids.max()) + 1 if n_folds is None else n_folds
    out = np.full((scores.shape[0], k), np.nan)
    for r in range(scores.shape[0]):
        for f in range(k):
            rows = np.flatnonzero(fold_ids[r] == f)
            if rows.size:
                out[r, f] = scorer(target, scores[r:r + 1], rows[None])[0, 0]
    return out


def predicted_share_folds(scores: np.ndarray, fold_ids: np.ndarray, threshold: float,
                          n_folds: int | None = None) -> np.ndarray:
    """Share of each fold's test rows with ``score >= threshold``, shape (R, K); NaN for a
    fold absent in a repeat (``fold_ids`` -1 = not scored)."""
    def share(target, s, index):  # one repeat, one fold (as score_folds calls it)
        return (np.atleast_2d(s)[:, index[0]] >= threshold).mean(-1)[None]

    return score_folds(Scorer("predicted_share", share), None, scores, fold_ids, n_folds)


def score_resamples(scorer: Scorer, target: Any, scores: np.ndarray, index: np.ndarray,
                    chunk: int = 250) -> np.ndarray:
    """Metric on each of B index sets, shape (B, R), computed ``chunk`` sets at a time."""
    scores = np.atleast_2d(scores)
    index = np.atleast_2d(index)
    out = np.empty((index.shape[0], scores.shape[0]))
    for start in range(0, index.shape[0], chunk):
        out[start:start + chunk] = scorer(target, scores, index[start:start + chunk])
    return out


def score_jackknife(scorer: Scorer, target: Any, scores: np.ndarray,
                    rows: np.ndarray | None = None, chunk: int = 250) -> np.ndarray:
    """Leave-one-out metric, shape (m, R), over ``rows`` (default: all n rows)."""
    scores = np.atleast_2d(scores)
    rows = np.arange(scores.shape[1]) if rows is None else np.asarray(rows)
    return score_resamples(scorer, target, scores, rows[jackknife_indices(rows.size)], chunk)


def estimate(scorer: Scorer, target: Any, scores: np.ndarray, boot_index: np.ndarray,
             rows: np.ndarray | None = None, alpha: float = 0.05,
             bca: bool = True) -> BootstrapCI:
    """Repeat-averaged metric with percentile and BCa bootstrap CIs.

    Parameters
    ----------
    scorer : Scorer
    target : any
    scores : ndarray, shape (R, n)
    boot_index : ndarray of int, shape (B, m)
        Resamples of ``rows`` (indices into the n columns).
    rows : ndarray of int, shape (m,), optional
        Rows the statistic is about (default all); used for the point estimate and the
        jackknife.
    alpha : float
    bca : bool
        Compute the jackknife for BCa (m extra evaluations).
    """
    point = float(np.nanmean(score_point(scorer, target, scores, rows)))
    boot = np.nanmean(score_resamples(scorer, target, scores, boot_index), axis=1)
    jack = (np.nanmean(score_jackknife(scorer, target, scores, rows), axis=1)
            if bca else None)
    return bootstrap_ci(point, boot, jack, alpha)
