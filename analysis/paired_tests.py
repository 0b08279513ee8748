"""Paired tests on per-fold metric differences, and multiplicity corrections.

- :func:`paired_test`: the NeuroRAD-FM choice — a Shapiro-Wilk test on the paired
  differences decides between the paired t-test (differences look normal) and the
  Wilcoxon signed-rank test (they do not). Both from scipy.
- :func:`corrected_resampled_ttest`: Nadeau & Bengio's corrected resampled t-test for
  ``J = r x k`` repeated cross-validation folds. The folds share training data, so the
  naive variance ``s^2 / J`` is too small; the corrected one is
  ``(1 / J + n_test / n_train) s^2``, with ``J - 1`` degrees of freedom. This is the
  honest test for repeated CV.
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
from scipy import stats

__all__ = [
    "PairedTestResult",
    "paired_test",
    "corrected_resampled_ttest",
    "adjust_pvalues",
    "TEST_CHOICES",
]

TEST_CHOICES = ("auto", "wilcoxon", "ttest", "corrected-t")


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


def corrected_resampled_ttest(a: np.ndarray, b: np.ndarray | None = None, *, n_train: float,
                              n_test: float, alternative: str = "two-sided"
                              ) -> PairedTestResult:
    """Nadeau-Bengio corrected resampled t-test over repeated-CV folds.

    ``t = mean(d) / sqrt((1 / J + n_test / n_train) * var(d, ddof=1))``, ``df = J - 1``.

    Parameters
    ----------
    a, b : ndarray, shape (J,)
        Per-fold metric of each side (J = repeats x folds), or the differences in ``a``.
    n_train, n_test : float
        (Mean) training and test set sizes of the folds.
    alternative : {'two-sided', 'greater', 'less'}

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
        t = mean_diff / np.sqrt((1.0 / j + n_test / n_train) * var)
    dist = stats.t(df=j - 1)
    if alternative == "two-sided":
        p = 2 * dist.sf(abs(t))
    elif alternative == "greater":
        p = dist.sf(t)
    elif alternative == "less":
        p = dist.cdf(t)
    else:
        raise ValueError(f"alternative must be 'two-sided', 'greater' or 'less', got "
                         f"{alternative!r}")
    return PairedTestResult("corrected-t", float(t), float(min(1.0, p)), mean_diff, j,
                            float("nan"), float(j - 1), alternative)


def adjust_pvalues(p_values: np.ndarray, method: str = "holm") -> np.ndarray:
    """Holm ('holm') or Benjamini-Hochberg ('bh' / 'fdr_bh') adjusted p-values.

    NaN entries stay NaN and are left out of the family.
    """
    from statsmodels.stats.multitest import multipletests

    method = {"bh": "fdr_bh"}.get(method, method)
    if method not in ("holm", "fdr_bh"):
        raise ValueError(f"method must be 'holm' or 'bh', got {method!r}")
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method=method)[1]
    return out
