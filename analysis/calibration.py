"""Calibration of predicted probabilities: slope, intercept, Brier score, reliability bins.

A probe can rank patients well (high AUC) and still give probabilities that are too
extreme or shifted; NeuroRAD-FM's limitations ask for calibration slope and intercept
and Brier scores. Definitions (Van Calster et al. 2016; Steyerberg 2019):

- **Calibration slope** ``b`` of the logistic recalibration model
  ``logit P(y = 1) = a + b * logit(p)`` (statsmodels GLM, binomial, logit link). 1 is
  ideal; < 1 means predictions too extreme (overfitting), > 1 too modest.
- **Calibration intercept** (calibration-in-the-large) ``a`` of
  ``logit P(y = 1) = a + offset(logit(p))`` (slope fixed at 1). 0 is ideal; < 0 means
  risks overestimated on average.
- Both with Wald intervals at ``level`` from the fitted GLM (``conf_int``).
- **Brier score** ``mean((p - y)^2)`` with a stratified-bootstrap percentile interval,
  the Brier score of always predicting the prevalence (``brier_null =
  prev (1 - prev)``) and the scaled Brier ``1 - brier / brier_null``.
- **Reliability bins**: patients binned by predicted probability (quantile bins by
  default), observed fraction with its Wilson interval against the mean prediction.

Probabilities are clipped to ``[1e-8, 1 - 1e-8]`` before the logit.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> p = rng.uniform(0.05, 0.95, 4000)
>>> y = rng.random(4000) < p
>>> result = calibration(y, p, n_boot=200)
>>> abs(result.slope - 1) < 0.15, abs(result.intercept) < 0.1
(True, True)

References
----------
.. [1] Van Calster B et al. A calibration hierarchy for risk models was defined: from
   utopia to empirical data. J Clin Epidemiol 2016;74:167-176.
.. [2] Cox DR. Two further applications of a model for binary regression. Biometrika
   1958;45:562-565.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from neurofeat.analysis.bootstrap import percentile_interval, stratified_bootstrap_indices

__all__ = [
    "EPSILON",
    "check_binary_predictions",
    "logistic_recalibration",
    "brier_score",
    "reliability_bins",
    "CalibrationResult",
    "calibration",
]

#: Probabilities are clipped to [EPSILON, 1 - EPSILON] before the logit.
EPSILON: float = 1e-8


def check_binary_predictions(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``y`` as bool and ``p`` as float, checked.

    Raises
    ------
    ValueError
        Shapes differ, ``y`` is not 0/1, or ``p`` is outside [0, 1] or not finite.
    """
    y = np.asarray(y)
    p = np.asarray(p, dtype=np.float64)
    if y.shape != p.shape or y.ndim != 1:
        raise ValueError(f"labels have shape {y.shape} and probabilities {p.shape}; give two "
                         "1-d arrays of the same length")
    values = set(np.unique(y.astype(float)).tolist())
    if not values <= {0.0, 1.0}:
        raise ValueError(f"labels must be 0/1 (or bool), got values {sorted(values)[:5]}; "
                         "calibration needs a binary outcome")
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise ValueError("probabilities must be finite and within [0, 1]")
    return y.astype(bool), p


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, EPSILON, 1 - EPSILON)
    return np.log(q) - np.log1p(-q)


def logistic_recalibration(y: np.ndarray, p: np.ndarray, level: float = 0.95
                           ) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Calibration slope and intercept with Wald intervals (statsmodels GLM).

    Parameters
    ----------
    y : ndarray of bool, shape (n,)
    p : ndarray of float, shape (n,)
        Predicted probabilities.
    level : float

    Returns
    -------
    (slope, low, high), (intercept, low, high)
        NaN when the model cannot be fitted (one class, or separation).
    """
    import statsmodels.api as sm

    y, p = check_binary_predictions(y, p)
    nan3 = (np.nan, np.nan, np.nan)
    if y.all() or not y.any():
        return nan3, nan3
    lp = _logit(p)
    alpha = 1 - level
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            slope_fit = sm.GLM(y.astype(float), sm.add_constant(lp, has_constant="add"),
                               family=sm.families.Binomial()).fit()
            ci = np.asarray(slope_fit.conf_int(alpha))
            out.append((float(slope_fit.params[1]), float(ci[1, 0]), float(ci[1, 1])))
        except Exception:  # noqa: BLE001 - perfect separation and friends -> NaN
            out.append(nan3)
        try:
            int_fit = sm.GLM(y.astype(float), np.ones((y.size, 1)), offset=lp,
                             family=sm.families.Binomial()).fit()
            ci = np.asarray(int_fit.conf_int(alpha))
            out.append((float(int_fit.params[0]), float(ci[0, 0]), float(ci[0, 1])))
        except Exception:  # noqa: BLE001
            out.append(nan3)
    return out[0], out[1]


def brier_score(y: np.ndarray, p: np.ndarray, index: np.ndarray | None = None) -> np.ndarray:
    """Brier score ``mean((p - y)^2)`` of each row of ``index`` (default: all rows).

    Returns
    -------
    ndarray, shape (B,)
    """
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if index is None:
        return np.array([np.mean((p - y) ** 2)])
    return np.mean((p[index] - y[index]) ** 2, axis=1)


def reliability_bins(y: np.ndarray, p: np.ndarray, *, n_bins: int = 10,
                     strategy: str = "quantile", level: float = 0.95) -> pd.DataFrame:
    """Observed fraction against mean predicted probability, per bin.

    Parameters
    ----------
    y, p : ndarrays, shape (n,)
    n_bins : int
    strategy : {'quantile', 'uniform'}
        Quantile bins hold equal numbers of patients (ties may merge bins); uniform
        bins split [0, 1] evenly (empty bins are dropped).
    level : float
        Level of the Wilson interval of each observed fraction.

    Returns
    -------
    DataFrame
        bin, n, bin_low, bin_high, mean_predicted, observed, observed_ci_low,
        observed_ci_high.
    """
    from statsmodels.stats.proportion import proportion_confint

    y, p = check_binary_predictions(y, p)
    if strategy == "quantile":
        edges = np.unique(np.quantile(p, np.linspace(0, 1, n_bins + 1)))
    elif strategy == "uniform":
        edges = np.linspace(0, 1, n_bins + 1)
    else:
        raise ValueError(f"strategy must be 'quantile' or 'uniform', got {strategy!r}")
    if edges.size < 2:
        edges = np.array([p.min(), p.max()])
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, edges.size - 2)
    rows = []
    for b in range(edges.size - 1):
        members = which == b
        count = int(members.sum())
        if count == 0:
            continue
        events = int(y[members].sum())
        low, high = proportion_confint(events, count, alpha=1 - level, method="wilson")
        rows.append({"bin": b, "n": count, "bin_low": float(edges[b]),
                     "bin_high": float(edges[b + 1]), "mean_predicted": float(p[members].mean()),
                     "observed": events / count, "observed_ci_low": float(low),
                     "observed_ci_high": float(high)})
    return pd.DataFrame(rows, columns=["bin", "n", "bin_low", "bin_high", "mean_predicted",
                                       "observed", "observed_ci_low", "observed_ci_high"])


@dataclass(frozen=True, eq=False)
class CalibrationResult:
    """Calibration of one set of predicted probabilities.

    Attributes
    ----------
    n, n_pos : int
    prevalence, mean_predicted : float
    slope, slope_ci_low, slope_ci_high : float
        Logistic recalibration slope (1 = ideal) and Wald interval.
    intercept, intercept_ci_low, intercept_ci_high : float
        Calibration-in-the-large (0 = ideal) and Wald interval.
    brier, brier_ci_low, brier_ci_high : float
        Brier score and stratified-bootstrap percentile interval.
    brier_null, brier_scaled : float
        ``prev (1 - prev)`` and ``1 - brier / brier_null``.
    level : float
    bins : DataFrame
        :func:`reliability_bins`.
    """

    n: int
    n_pos: int
    prevalence: float
    mean_predicted: float
    slope: float
    slope_ci_low: float
    slope_ci_high: float
    intercept: float
    intercept_ci_low: float
    intercept_ci_high: float
    brier: float
    brier_ci_low: float
    brier_ci_high: float
    brier_null: float
    brier_scaled: float
    level: float
    bins: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)

    def summary(self) -> str:
        """Slope, intercept and Brier with their intervals."""
        pct = int(round(100 * self.level))
        return (f"n={self.n} (pos {self.n_pos}, prevalence {self.prevalence:.3f}, mean "
                f"predicted {self.mean_predicted:.3f})\n"
                f"  calibration slope     {self.slope:.3f} [{self.slope_ci_low:.3f}, "
                f"{self.slope_ci_high:.3f}]  (1 = ideal; {pct}% Wald)\n"
                f"  calibration intercept {self.intercept:.3f} [{self.intercept_ci_low:.3f}, "
                f"{self.intercept_ci_high:.3f}]  (0 = ideal)\n"
                f"  Brier score           {self.brier:.4f} [{self.brier_ci_low:.4f}, "
                f"{self.brier_ci_high:.4f}]  (prevalence only: {self.brier_null:.4f}; "
                f"scaled {self.brier_scaled:.3f})")

    def to_frame(self) -> pd.DataFrame:
        """One row with every number (``level`` as ``ci_level``)."""
        row = {k: v for k, v in asdict(self).items() if k not in ("bins", "level")}
        row["ci_level"] = self.level
        return pd.DataFrame([row])


def calibration(y: np.ndarray, p: np.ndarray, *, n_bins: int = 10, strategy: str = "quantile",
                level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> CalibrationResult:
    """Calibration slope, intercept, Brier score and reliability bins.

    Parameters
    ----------
    y : ndarray of bool or 0/1, shape (n,)
    p : ndarray of float in [0, 1], shape (n,)
    n_bins, strategy : reliability bins (see :func:`reliability_bins`).
    level : float
        Interval level.
    n_boot, seed : stratified (by outcome) bootstrap of the Brier score.

    Returns
    -------
    CalibrationResult

    Raises
    ------
    ValueError
        Labels not binary, probabilities outside [0, 1], mismatched shapes.
    """
    y, p = check_binary_predictions(y, p)
    (slope, s_low, s_high), (intercept, i_low, i_high) = logistic_recalibration(y, p, level)
    brier = float(brier_score(y, p)[0])
    index = stratified_bootstrap_indices(y, n_boot, seed)
    low, high = percentile_interval(brier_score(y, p, index), 1 - level)
    prevalence = float(y.mean())
    null = prevalence * (1 - prevalence)
    return CalibrationResult(
        n=int(y.size), n_pos=int(y.sum()), prevalence=prevalence, mean_predicted=float(p.mean()),
        slope=slope, slope_ci_low=s_low, slope_ci_high=s_high, intercept=intercept,
        intercept_ci_low=i_low, intercept_ci_high=i_high, brier=brier,
        brier_ci_low=float(low), brier_ci_high=float(high), brier_null=float(null),
        brier_scaled=float(1 - brier / null) if null > 0 else float("nan"), level=float(level),
        bins=reliability_bins(y, p, n_bins=n_bins, strategy=strategy, level=level))
