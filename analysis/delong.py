"""DeLong's nonparametric variance of the AUC, its CI, and the paired DeLong test.

Implements the fast midrank algorithm of Sun & Xu (2014): with ``m`` positives and
``n`` negatives, the structural components (placement values) of every classifier come
from three midrank computations (positives alone, negatives alone, both), which costs
``O(k (m + n) log(m + n))`` for ``k`` classifiers instead of DeLong's ``O(k m n)``.

``V10[i] = (T_z[i] - T_x[i]) / n`` for positive ``i`` and ``V01[j] = 1 - (T_z[j] -
T_y[j]) / m`` for negative ``j``; ``AUC = mean(V10)``; ``S = cov(V10) / m + cov(V01) / n``
(covariances over patients, between classifiers, with ``ddof=1``). The paired test is
``z = (AUC_1 - AUC_2) / sqrt(S11 + S22 - 2 S12)``; the CI of one AUC is
``AUC +/- z_(1-alpha/2) sqrt(S)``, clipped to [0, 1] (as pROC's ``ci.auc``).

These match pROC (``var(roc)``, ``cov(roc1, roc2)``, ``ci.auc``, ``roc.test``) for
curves whose direction is "controls < cases".

References
----------
.. [1] DeLong ER, DeLong DM, Clarke-Pearson DL. Comparing the areas under two or more
   correlated receiver operating characteristic curves: a nonparametric approach.
   Biometrics 1988;44:837-845.
.. [2] Sun X, Xu W. Fast implementation of DeLong's algorithm for comparing the areas
   under correlated receiver operating characteristic curves. IEEE Signal Processing
   Letters 2014;21:1389-1393.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import special

from neurofeat.analysis.metrics import midranks

__all__ = [
    "delong_placements",
    "delong_covariance",
    "DeLongAUC",
    "delong_auc",
    "DeLongTest",
    "delong_test",
]


def _split(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true)
    if y_true.dtype != bool:
        uniq = np.unique(y_true)
        if not np.isin(uniq, [0, 1]).all():
            raise ValueError(f"y_true must be 0/1 or bool, found values {uniq[:5].tolist()}")
        y_true = y_true.astype(bool)
    scores = np.atleast_2d(np.asarray(scores, dtype=float))
    if scores.shape[-1] != y_true.size:
        raise ValueError(f"scores have {scores.shape[-1]} columns for {y_true.size} labels")
    if not np.isfinite(scores).all():
        bad = np.argwhere(~np.isfinite(scores))[0]
        raise ValueError(f"score of row {bad[-1]} is not finite ({scores[tuple(bad)]})")
    n_pos = int(y_true.sum())
    if n_pos == 0 or n_pos == y_true.size:
        raise ValueError(f"DeLong needs positives and negatives; got {n_pos} positives of "
                         f"{y_true.size}")
    return scores[:, y_true], scores[:, ~y_true]


def delong_placements(y_true: np.ndarray, scores: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUCs and DeLong structural components by the Sun & Xu midrank algorithm.

    Parameters
    ----------
    y_true : ndarray of bool or 0/1, shape (N,)
    scores : ndarray, shape (k, N) or (N,)
        One row per classifier; higher = positive.

    Returns
    -------
    auc : ndarray, shape (k,)
    v10 : ndarray, shape (k, m)
        Placement of each positive among the negatives.
    v01 : ndarray, shape (k, n)
        Placement of each negative among the positives.
    """
    pos, neg = _split(y_true, scores)
    m, n = pos.shape[1], neg.shape[1]
    tx = midranks(pos)
    ty = midranks(neg)
    tz = midranks(np.concatenate([pos, neg], axis=1))
    auc = (tz[:, :m].sum(axis=1) / m - (m + 1) / 2.0) / n
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    return auc, v10, v01


def delong_covariance(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and their DeLong covariance matrix.

    Parameters
    ----------
    y_true : ndarray, shape (N,)
    scores : ndarray, shape (k, N)

    Returns
    -------
    auc : ndarray, shape (k,)
    cov : ndarray, shape (k, k)
    """
    auc, v10, v01 = delong_placements(y_true, scores)
    m, n = v10.shape[1], v01.shape[1]
    s10 = np.atleast_2d(np.cov(v10, ddof=1))
    s01 = np.atleast_2d(np.cov(v01, ddof=1))
    return auc, s10 / m + s01 / n


@dataclass(frozen=True)
class DeLongAUC:
    """An AUC with its DeLong variance and Wald CI."""

    auc: float
    variance: float
    ci_low: float
    ci_high: float
    confidence: float
    n_pos: int
    n_neg: int

    def summary(self) -> str:
        """``AUC 0.731 (95 % CI 0.630-0.833, DeLong)``."""
        return (f"AUC {self.auc:.3f} ({int(round(100 * self.confidence))} % CI "
                f"{self.ci_low:.3f}-{self.ci_high:.3f}, DeLong; {self.n_pos} pos, "
                f"{self.n_neg} neg)")

    def to_frame(self) -> pd.DataFrame:
        """One-row DataFrame of the fields."""
        return pd.DataFrame([asdict(self)])


def delong_auc(y_true: np.ndarray, scores: np.ndarray, alpha: float = 0.05) -> DeLongAUC:
    """AUC, DeLong variance and CI of one classifier.

    Parameters
    ----------
    y_true : ndarray, shape (N,)
    scores : ndarray, shape (N,)
    alpha : float
        1 - confidence level.

    Examples
    --------
    >>> r = delong_auc(np.array([0, 0, 1, 1, 1]), np.array([0.1, 0.5, 0.4, 0.8, 0.9]))
    >>> round(r.auc, 4)
    0.8333
    """
    auc, cov = delong_covariance(y_true, np.asarray(scores, float).reshape(1, -1))
    var = float(cov[0, 0])
    half = special.ndtri(1 - alpha / 2) * np.sqrt(var)
    y = np.asarray(y_true).astype(bool)
    return DeLongAUC(float(auc[0]), var, float(max(0.0, auc[0] - half)),
                     float(min(1.0, auc[0] + half)), 1 - alpha, int(y.sum()),
                     int((~y).sum()))


@dataclass(frozen=True)
class DeLongTest:
    """Paired DeLong test of two correlated AUCs (same patients)."""

    auc_a: float
    auc_b: float
    diff: float
    diff_ci_low: float
    diff_ci_high: float
    z: float
    p_value: float
    variance_a: float
    variance_b: float
    covariance: float
    alternative: str

    def summary(self) -> str:
        """``AUC 0.824 vs 0.731: diff 0.092 [0.010, 0.174], Z = 2.209, p = 0.0272``."""
        return (f"AUC {self.auc_a:.3f} vs {self.auc_b:.3f}: diff {self.diff:.3f} "
                f"[{self.diff_ci_low:.3f}, {self.diff_ci_high:.3f}], Z = {self.z:.3f}, "
                f"p = {self.p_value:.3g} (DeLong, paired, {self.alternative})")

    def to_frame(self) -> pd.DataFrame:
        """One-row DataFrame of the fields."""
        return pd.DataFrame([asdict(self)])


def delong_test(y_true: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray, *,
                alternative: str = "two-sided", alpha: float = 0.05) -> DeLongTest:
    """Paired DeLong test of ``AUC_a - AUC_b``.

    Parameters
    ----------
    y_true : ndarray, shape (N,)
    scores_a, scores_b : ndarray, shape (N,)
        Scores of the two classifiers on the same patients.
    alternative : {'two-sided', 'greater', 'less'}
        'greater' tests AUC_a > AUC_b.
    alpha : float
        For the CI of the difference.

    Returns
    -------
    DeLongTest
        Identical curves give ``z = 0`` and ``p = 1`` (as pROC).
    """
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"alternative must be 'two-sided', 'greater' or 'less', got "
                         f"{alternative!r}")
    auc, cov = delong_covariance(y_true, np.vstack([np.asarray(scores_a, float),
                                                    np.asarray(scores_b, float)]))
    diff = float(auc[0] - auc[1])
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    if var <= 0 or diff == 0:
        z = 0.0 if diff == 0 else float(np.sign(diff) * np.inf)
    else:
        z = diff / np.sqrt(var)
    if alternative == "two-sided":
        p = 2 * special.ndtr(-abs(z))
    elif alternative == "greater":
        p = special.ndtr(-z)
    else:
        p = special.ndtr(z)
    half = special.ndtri(1 - alpha / 2) * np.sqrt(max(var, 0.0))
    return DeLongTest(float(auc[0]), float(auc[1]), diff, float(diff - half),
                      float(diff + half), float(z),
                      float(min(1.0, p)), float(cov[0, 0]), float(cov[1, 1]),
                      float(cov[0, 1]), alternative)
