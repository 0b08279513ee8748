"""Paired tests on per-fold metric differences, and multiplicity corrections.

- :func:`paired_test`: the NeuroRAD-FM choice — a Shapiro-Wilk test on the paired
  differences decides between the paired t-test (differences look normal) and the
  Wilcoxon signed-rank test (they do not). Both from scipy.
- :func:`corrected_resampled_ttest`: Nadeau & Bengio's corrected resampled t-test for
  ``J = r x k`` repeated cross-validation folds. The folds share training data, so the
  naive variance ``s^2 / J`` is too small; the corrected one is
  ``(1 / J + n_test / n_train) s^2``, with ``J - 1`` degrees of freedom. This is the
  honest test for repeated CV.
- :func:`corrected_resampled_interval`: the same variance as a confidence interval for
  the mean per-fold value (one backbone's metric, or a paired difference).
- The calibrated default (test name ``calibrated-t``): the corrected t with the
  correction term scaled per metric, ``(1/J + c_m n_test/n_train) s^2`` on ``J - 1`` df,
  ``c_m`` from :mod:`~neurofeat.analysis.correction_factors` (its factors and one
  backbone's variance terms, with the measurements behind them). Why: in simulated exact
  nulls (``benchmarks/bench_calibration.py``) the variance of the mean of the R x k fold
  values over data sets, divided by the mean within-data-set variance of the fold
  values, was 0.29 for balanced accuracy at 5 x 5 CV, n = 120 (exactly Nadeau-Bengio's
  1/J + n_test/n_train = 0.04 + 0.25) but 0.42-0.44 for the AUC: rank metrics of
  overlapping training sets are more correlated across folds than the Nadeau-Bengio
  heuristic assumes, so the published corrected t rejected 10-11 % of true nulls on the
  AUC, 5 % on BA. The factor also depends on the model: with the ridge probe of
  continuous tasks the AUC needed 1.05x and BA 0.72x the correction. The spread of the
  within-data-set variance (CV 0.30) matched ``J - 1`` df. ``df='k'`` (k - 1 df) is kept
  as an option: it held the AUC's level (3.4 %) but was conservative for BA (1.2 %).
- :func:`adjust_pvalues`: Holm and Benjamini-Hochberg via
  :func:`statsmodels.stats.multitest.multipletests`, NaN-aware.

References
----------
.. [1] Nadeau C, Bengio Y. Inference for the generalization error. Machine Learning
   2003;52:239-281.
.. [2] Bouckaert RR, Frank E. Evaluating the replicability of significance tests for
   comparing learning algorithms. PAKDD 2004.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import special, stats

from neurofeat.analysis.correction_factors import calibrated_correction

__all__ = [
    "PairedTestResult",
    "paired_test",
    "corrected_resampled_ttest",
    "adjust_pvalues",
    "TEST_CHOICES",
    "DEFAULT_TEST",
    "METRIC_BOUNDS",
    "smallest_attainable_p",
    "RARE_ENDPOINT",
    "is_rare",
    "CorrectedInterval",
    "corrected_resampled_interval",
]

#: neurofeat's calibrated default test (Nadeau-Bengio variance with a per-metric
#: correction factor, J - 1 df).
DEFAULT_TEST = "calibrated-t"

#: Range of each bounded metric; the calibrated intervals are clipped to it (and the
#: interval of a difference to (low - high, high - low)).
METRIC_BOUNDS: dict[str, tuple[float, float]] = {
    name: (0.0, 1.0) for name in ("auc", "ba", "sensitivity", "specificity", "harrell_c",
                                  "uno_c")}

#: A task with fewer positives (or negatives, or events) than this is a rare endpoint:
#: its rows carry a warning (``rare``, ``warning``).
RARE_ENDPOINT = 30



def smallest_attainable_p(n_differing: int, n_diffs: int, *, n_train: float, n_test: float,
                          correction: float = 1.0) -> float:
    """The smallest two-sided p that :func:`corrected_resampled_ttest` (J - 1 df) can give
    when only ``n_differing`` of the ``n_diffs`` = J fold differences are non-zero.

    Folds where both probes score the same (typically both collapsed to a constant, at
    chance) are zero differences whatever the backbones are. With ``m`` non-zero of J the
    fold t cannot exceed ``sqrt(m (J - 1) / (J - m))`` (all ``m`` equal and of one sign),
    so below some ``m`` no data can reach a given level: a large p there says nothing
    about whether the backbones differ. 0 when every difference may be non-zero (the
    bound is infinite), 1 when none is.

    Examples
    --------
    >>> round(smallest_attainable_p(15, 25, n_train=96, n_test=24, correction=1.4), 3)
    0.067
    >>> round(smallest_attainable_p(16, 25, n_train=96, n_test=24, correction=1.4), 3)
    0.047
    """
    j, m = int(n_diffs), int(n_differing)
    if j < 2 or not 0 <= m <= j:
        raise ValueError(f"need 0 <= n_differing <= n_diffs and n_diffs >= 2, got {m} of {j}")
    if m == j:
        return 0.0
    if m == 0:
        return 1.0
    best = np.r_[np.ones(m), np.zeros(j - m)]
    return corrected_resampled_ttest(best, n_train=n_train, n_test=n_test,
                                     correction=correction).p_value


def is_rare(count: int) -> bool:
    """Whether a smallest class (or event count) of ``count`` makes a rare endpoint
    (``-1``: unknown, not rare)."""
    return 0 <= count < RARE_ENDPOINT


#: Tests of ``stats compare`` by name: the calibrated default, then the published
#: procedures ('auto' = Shapiro-Wilk -> paired t / Wilcoxon over folds, NeuroRAD-FM;
#: 'fold-t' = 'ttest'; 'corrected-t' = Nadeau-Bengio with J - 1 df; 'delong' on
#: repeat-averaged out-of-fold scores and 'bootstrap' of the pooled out-of-fold metric,
#: BrainIAC).
TEST_CHOICES = (DEFAULT_TEST, "auto", "wilcoxon", "ttest", "fold-t", "corrected-t",
                "delong", "bootstrap")


@dataclass(frozen=True)
class PairedTestResult:
    """A paired test on differences ``a - b``.

    Attributes
    ----------
    test : str
        'wilcoxon', 'ttest' or 'corrected-t'.
    statistic : float
        W (Wilcoxon, scipy's smaller rank sum), t (t-tests).
    p_value : float
    mean_diff : float
    n : int
        Number of paired values.
    normality_p : float
        Shapiro-Wilk p-value of the differences (NaN when not computed).
    df : float
        Degrees of freedom (t-tests), NaN for Wilcoxon.
    alternative : str
    """

    test: str
    statistic: float
    p_value: float
    mean_diff: float
    n: int
    normality_p: float = float("nan")
    df: float = float("nan")
    alternative: str = "two-sided"

    def summary(self) -> str:
        """``wilcoxon: W = 12, p = 0.031 (mean diff 0.021, n = 25; Shapiro p = 0.01)``."""
        name = {"wilcoxon": "W", "ttest": "t", "corrected-t": "t"}.get(self.test, "stat")
        norm = (f"; Shapiro p = {self.normality_p:.3g}" if np.isfinite(self.normality_p)
                else "")
        return (f"{self.test}: {name} = {self.statistic:.4g}, p = {self.p_value:.3g} "
                f"(mean diff {self.mean_diff:.4g}, n = {self.n}{norm})")

    def to_frame(self) -> pd.DataFrame:
        """One-row DataFrame of the fields."""
        return pd.DataFrame([asdict(self)])


def _diffs(a: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    a = np.asarray(a, dtype=float).reshape(-1)
    d = a if b is None else a - np.asarray(b, dtype=float).reshape(-1)
    if b is not None and np.asarray(b).size != a.size:
        raise ValueError(f"paired samples differ in length: {a.size} vs {np.asarray(b).size}")
    return d[np.isfinite(d)]


def paired_test(a: np.ndarray, b: np.ndarray | None = None, *, method: str = "auto",
                normality_alpha: float = 0.05, alternative: str = "two-sided"
                ) -> PairedTestResult:
    """Wilcoxon signed-rank or paired t-test of ``a - b`` (or of ``a`` if ``b`` is None).

    Parameters
    ----------
    a, b : ndarray, shape (n,)
        Paired values (e.g. per-fold AUC of two backbones on the same folds). Pairs with
        a NaN are dropped.
    method : {'auto', 'wilcoxon', 'ttest'}
        'auto' runs Shapiro-Wilk on the differences: p > ``normality_alpha`` -> paired
        t-test, otherwise Wilcoxon (needs n >= 3 for Shapiro; below that, Wilcoxon).
    normality_alpha : float
    alternative : {'two-sided', 'greater', 'less'}

    Returns
    -------
    PairedTestResult
        All-zero differences give statistic NaN and p = 1.
    """
    if method not in ("auto", "wilcoxon", "ttest"):
        raise ValueError(f"method must be 'auto', 'wilcoxon' or 'ttest', got {method!r}")
    d = _diffs(a, b)
    n = int(d.size)
    if n < 2:
        raise ValueError(f"a paired test needs at least 2 finite differences, got {n}")
    mean_diff = float(d.mean())
    normality_p = float("nan")
    if n >= 3 and np.ptp(d) > 0:
        normality_p = float(stats.shapiro(d).pvalue)
    chosen = method
    if method == "auto":
        chosen = "ttest" if (np.isfinite(normality_p) and normality_p > normality_alpha) \
            else "wilcoxon"
    if np.all(d == 0):
        return PairedTestResult(chosen, float("nan"), 1.0, 0.0, n, normality_p,
                                float(n - 1) if chosen == "ttest" else float("nan"),
                                alternative)
    if chosen == "ttest":
        res = stats.ttest_1samp(d, 0.0, alternative=alternative)
        return PairedTestResult("ttest", float(res.statistic), float(res.pvalue), mean_diff,
                                n, normality_p, float(n - 1), alternative)
    res = stats.wilcoxon(d, alternative=alternative)
    return PairedTestResult("wilcoxon", float(res.statistic), float(res.pvalue), mean_diff, n,
                            normality_p, float("nan"), alternative)


def _resolve_df(df: float | str | None, j: int, n_folds: int | None) -> float:
    if df is None or df == "J":
        return float(j - 1)
    if df == "k":
        if not n_folds or n_folds < 2:
            raise ValueError(f"df='k' needs n_folds >= 2, got {n_folds}")
        return float(min(n_folds, j) - 1)
    if isinstance(df, str) or df <= 0:
        raise ValueError(f"df must be None/'J' (J - 1), 'k' (k - 1) or a positive number, "
                         f"got {df!r}")
    return float(df)


def corrected_resampled_ttest(a: np.ndarray, b: np.ndarray | None = None, *, n_train: float,
                              n_test: float, alternative: str = "two-sided",
                              df: float | str | None = None, n_folds: int | None = None,
                              name: str | None = None, correction: float = 1.0
                              ) -> PairedTestResult:
    """Nadeau-Bengio corrected resampled t-test over repeated-CV folds.

    ``t = mean(d) / sqrt((1 / J + c n_test / n_train) * var(d, ddof=1))``, ``df = J - 1``;
    ``c = 1`` is Nadeau & Bengio's test; neurofeat's calibrated default
    (``calibrated-t``) uses ``c = calibrated_correction(metric)``.

    Parameters
    ----------
    a, b : ndarray, shape (J,)
        Per-fold metric of each side (J = repeats x folds), or the differences in ``a``.
    n_train, n_test : float
        (Mean) training and test set sizes of the folds.
    alternative : {'two-sided', 'greater', 'less'}
    df : None, 'J', 'k' or float
        Degrees of freedom: None/'J' -> J - 1 (Nadeau & Bengio), 'k' -> k - 1 (needs
        ``n_folds``), or a number.
    n_folds : int, optional
        k, folds per repeat.
    name : str, optional
        Test name in the result (default 'corrected-t').
    correction : float
        Factor ``c`` on the ``n_test / n_train`` term.

    Examples
    --------
    >>> r = corrected_resampled_ttest(np.array([0.02, 0.04, 0.00, 0.06]), n_train=80,
    ...                               n_test=20)
    >>> round(r.statistic, 4)      # 0.03 / sqrt((1/4 + 20/80) * 0.002/3)
    1.6432
    """
    if n_train <= 0 or n_test <= 0:
        raise ValueError(f"n_train and n_test must be > 0, got {n_train}, {n_test}")
    d = _diffs(a, b)
    j = int(d.size)
    if j < 2:
        raise ValueError(f"the corrected t-test needs at least 2 folds, got {j}")
    mean_diff = float(d.mean())
    var = float(d.var(ddof=1))
    if var == 0:
        t = 0.0 if mean_diff == 0 else float(np.sign(mean_diff) * np.inf)
    else:
        t = mean_diff / np.sqrt((1.0 / j + correction * n_test / n_train) * var)
    dof = _resolve_df(df, j, n_folds)
    # special.stdtr is what scipy.stats.t's sf/cdf evaluate, without building a frozen
    # distribution (3 ms a call)
    if alternative == "two-sided":
        p = 2 * special.stdtr(dof, -abs(t))
    elif alternative == "greater":
        p = special.stdtr(dof, -t)
    elif alternative == "less":
        p = special.stdtr(dof, t)
    else:
        raise ValueError(f"alternative must be 'two-sided', 'greater' or 'less', got "
                         f"{alternative!r}")
    name = name or "corrected-t"
    return PairedTestResult(name, float(t), float(min(1.0, p)), mean_diff, j,
                            float("nan"), dof, alternative)


@dataclass(frozen=True)
class CorrectedInterval:
    """Mean of per-fold values with a corrected-resampled-t confidence interval.

    Attributes
    ----------
    estimate : float
        Mean over the J finite per-fold values.
    ci_low, ci_high : float
    se : float
        ``sqrt((1 / J + n_test / n_train) var)``.
    df : float
    level : float
    n : int
        J.
    """

    estimate: float
    ci_low: float
    ci_high: float
    se: float
    df: float
    level: float
    n: int


def corrected_resampled_interval(values: np.ndarray, *, n_train: float, n_test: float,
                                 level: float = 0.95, df: float | str | None = None,
                                 n_folds: int | None = None, metric: str | None = None,
                                 correction: float | None = None,
                                 kind: str | None = None,
                                 bounds: tuple[float, float] | None = None,
                                 minority_per_fold: float | None = None,
                                 single: bool = False,
                                 extra_variance: float = 0.0,
                                 variance_floor: float = 0.0,
                                 predicted_minority_per_fold: float | None = None,
                                 n_features: int | None = None) -> CorrectedInterval:
    """Confidence interval for the mean of per-fold values of repeated CV.

    ``mean +- t_{1 - (1 - level) / 2, df} sqrt((1 / J + c n_test / n_train) var)``: the
    interval that inverts :func:`corrected_resampled_ttest` (same variance, same df).
    Give ``metric`` for neurofeat's calibrated interval (``c`` from
    :data:`~neurofeat.analysis.correction_factors.CALIBRATED_CORRECTION`, ``J - 1`` df);
    without it, ``c = 1`` (Nadeau-Bengio).
    Its estimand is the expected value of the per-fold metric, i.e. the expected
    performance of the model trained on ``n_train`` patients on new patients.

    Parameters
    ----------
    values : ndarray, shape (R, k) or (J,)
        Per-fold values (NaN = missing fold, dropped).
    n_train, n_test : float
    level : float
    df : None, 'J', 'k' or float
        As in :func:`corrected_resampled_ttest` (default J - 1).
    n_folds : int, optional
        k; default ``values.shape[1]`` for a 2-d input.
    metric : str, optional
        Metric name ('auc', 'ba', 'harrell_c', ...): use its calibrated correction.
    kind : {'binary', 'continuous', 'survival'}, optional
        Task kind of ``metric`` (see :func:`calibrated_correction`).
    correction : float, optional
        Explicit factor ``c`` (overrides ``metric``).
    bounds : (float, float), optional
        The range of the metric (:data:`METRIC_BOUNDS`): the interval is clipped to it.
        A t interval can cross 0 or 1 for a bounded metric with few or noisy folds; the
        estimand lies inside the range, so clipping never lowers coverage.
    minority_per_fold : float, optional
        Smaller-class patients per test fold (see :func:`calibrated_correction`).
    single : bool
        ``values`` are one backbone's metric (not differences): the single-backbone
        factor where it differs (:data:`CALIBRATED_CORRECTION_SINGLE`).
    extra_variance : float
        Added to the variance of the mean (e.g. :func:`degenerate_fold_variance`).
    variance_floor : float
        The corrected variance of the mean is raised to at least this before
        ``extra_variance`` is added (e.g. :func:`threshold_noise_floor`).
    predicted_minority_per_fold : float, optional
        With ``single``: patients per test fold on the less-called side of the threshold
        (:func:`predicted_minority_per_fold`; see :func:`calibrated_correction`).
    n_features : int, optional
        With ``single``: the model's input dimension (see :func:`calibrated_correction`).

    Examples
    --------
    >>> r = corrected_resampled_interval(np.array([[0.6, 0.7], [0.65, 0.75]]), n_train=50,
    ...                                  n_test=50, metric="auc")
    >>> round(r.estimate, 3), r.df
    (0.675, 3.0)
    """
    v = np.asarray(values, dtype=float)
    if n_folds is None and v.ndim == 2:
        n_folds = v.shape[1]
    v = v.reshape(-1)
    v = v[np.isfinite(v)]
    j = int(v.size)
    nan = float("nan")
    if j < 2:
        return CorrectedInterval(float(v.mean()) if j else nan, nan, nan, nan, nan, level, j)
    dof = _resolve_df(df, j, n_folds)
    if correction is None:
        correction = 1.0 if metric is None else calibrated_correction(
            metric, kind, minority_per_fold=minority_per_fold, single=single, n_train=n_train,
            predicted_minority_per_fold=predicted_minority_per_fold, n_features=n_features)
    se = float(np.sqrt(max((1.0 / j + correction * n_test / n_train) * v.var(ddof=1),
                           variance_floor) + extra_variance))
    half = float(special.stdtrit(dof, 1 - (1 - level) / 2)) * se
    m = float(v.mean())
    low, high = m - half, m + half
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return CorrectedInterval(m, low, high, se, dof, level, j)


def adjust_pvalues(p_values: np.ndarray, method: str = "holm") -> np.ndarray:
    """Holm ('holm') or Benjamini-Hochberg ('bh' / 'fdr_bh') adjusted p-values.

    NaN entries stay NaN and are left out of the family. Same numbers as
    :func:`statsmodels.stats.multitest.multipletests` (tested), without its per-call
    garbage collection (0.2 s a call, which dominated simulation runs).
    """
    method = {"bh": "fdr_bh"}.get(method, method)
    if method not in ("holm", "fdr_bh"):
        raise ValueError(f"method must be 'holm' or 'bh', got {method!r}")
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if not ok.any():
        return out
    vals = p[ok]
    m = vals.size
    order = np.argsort(vals, kind="mergesort")
    ranked = vals[order]
    if method == "holm":
        adj = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * ranked))
    else:
        adj = np.minimum.accumulate((m / np.arange(1, m + 1) * ranked)[::-1])[::-1]
        adj = np.minimum(1.0, adj)
    back = np.empty(m)
    back[order] = adj
    out[ok] = back
    return out
