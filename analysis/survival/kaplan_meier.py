"""Kaplan–Meier estimator with Greenwood confidence intervals and numbers at risk.

The product-limit estimate and its log-log interval come from
:func:`sksurv.nonparametric.kaplan_meier_estimator`; the per-time counts (at risk,
events, censored), Greenwood's variance and the ``'log'`` (R's default) and ``'plain'``
intervals are added here, together with the median survival and its interval the way
R's ``survfit`` computes them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from neurofeat.analysis.survival.validation import check_survival_data

__all__ = ["KaplanMeierResult", "kaplan_meier", "number_at_risk"]

_CONF_TYPES = ("log", "log-log", "plain")


def number_at_risk(time: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Number of patients still at risk (time >= t) at each time in ``at``.

    Parameters
    ----------
    time : ndarray, shape (n,)
    at : ndarray, shape (m,)

    Returns
    -------
    ndarray of int, shape (m,)
    """
    sorted_time = np.sort(np.asarray(time, dtype=np.float64))
    at = np.atleast_1d(np.asarray(at, dtype=np.float64))
    return sorted_time.size - np.searchsorted(sorted_time, at, side="left")


# R's tolerance for "the curve sits on the level" (survival:::survmean, sqrt(.Machine$double.eps))
_LEVEL_TOL = float(np.sqrt(np.finfo(np.float64).eps))


def _first_time_at_or_below(times: np.ndarray, curve: np.ndarray, level: float) -> float:
    """R's median rule (``survival:::survmean``, behind ``print(survfit)`` and
    ``summary(survfit)$table``) for a step curve and its confidence bounds.

    The answer is the first time ``t_k`` where the curve is <= ``level``. If the curve is
    exactly on ``level`` there (within sqrt(machine eps)), the answer is the midpoint of
    ``t_k`` and the next time the curve falls below its value at ``t_k``. That is the next
    drop (an event time), never a censoring time, because censorings do not move the
    curve. If the curve never falls again, the answer is ``t_k``. NaN points (an undefined
    bound) never count. Returns NaN when the curve never reaches ``level``.

    R's ``quantile(survfit)`` gives the same answer except when the curve never falls
    again: then it returns the midpoint of ``t_k`` and the last follow-up time. neurofeat
    returns ``t_k``, as R's printed table does. After ``t_k`` the curve stays on ``level``
    until the end of follow-up, so any time in that span could be called the median.
    ``t_k`` is the standard definition, inf{t: S(t) <= level}. The midpoint depends on how
    long the last censored patient happened to be followed.
    """
    curve = np.asarray(curve, dtype=np.float64)
    reached = np.flatnonzero(curve < level + _LEVEL_TOL)      # NaN compares False
    if reached.size == 0:
        return float("nan")
    k = int(reached[0])
    if abs(curve[k] - level) < _LEVEL_TOL:
        falls = np.flatnonzero(curve[k + 1:] < curve[k])
        if falls.size:
            return float((times[k] + times[k + 1 + int(falls[0])]) / 2.0)
    return float(times[k])


@dataclass(frozen=True, eq=False)
class KaplanMeierResult:
    """A Kaplan–Meier survival curve.

    Attributes
    ----------
    time : ndarray, shape (n_times,)
        Distinct observed times (events and censorings), ascending.
    survival : ndarray, shape (n_times,)
        S(t) just after each time.
    std_err : ndarray, shape (n_times,)
        Greenwood standard error of S(t).
    ci_low, ci_high : ndarray, shape (n_times,)
        Pointwise confidence interval of S(t) (``conf_type``, ``conf_level``).
    n_at_risk, n_events, n_censored : ndarray of int, shape (n_times,)
    conf_level : float
    conf_type : str
        ``'log'`` (R's default), ``'log-log'`` or ``'plain'``.
    label : str
        Group name (for plots and tables).
    median, median_ci_low, median_ci_high : float
        Median survival and its interval (NaN when not reached), as
        ``print(survfit(...))`` gives them. This is the first time S (or the bound) is at
        or below 0.5. Where it sits exactly on 0.5, the value is the midpoint to its next
        drop (an event time, never a censoring), or the first time itself when it never
        drops again.
    """

    time: np.ndarray
    survival: np.ndarray
    std_err: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    n_at_risk: np.ndarray
    n_events: np.ndarray
    n_censored: np.ndarray
    conf_level: float
    conf_type: str
    label: str
    median: float
    median_ci_low: float
    median_ci_high: float

    @property
    def n(self) -> int:
        """Number of patients."""
        return int(self.n_at_risk[0]) if self.n_at_risk.size else 0

    @property
    def n_event_total(self) -> int:
        """Number of events."""
        return int(self.n_events.sum())

    def survival_at(self, t: np.ndarray) -> np.ndarray:
        """S(t) at arbitrary times (right-continuous step function; 1 before the first time).

        Parameters
        ----------
        t : array-like, shape (m,)

        Returns
        -------
        ndarray, shape (m,)
        """
        t = np.atleast_1d(np.asarray(t, dtype=np.float64))
        k = np.searchsorted(self.time, t, side="right") - 1
        out = np.ones(t.shape, dtype=np.float64)
        out[k >= 0] = self.survival[k[k >= 0]]
        return out

    def at_risk(self, t: np.ndarray) -> np.ndarray:
        """Number at risk (time >= t) at the times ``t``, for a numbers-at-risk table."""
        t = np.atleast_1d(np.asarray(t, dtype=np.float64))
        # at-risk count at t = patients whose time >= t
        k = np.searchsorted(self.time, t, side="left")
        cum_leaving = np.concatenate([[0], np.cumsum(self.n_events + self.n_censored)])
        return self.n - cum_leaving[k]

    def summary(self) -> str:
        """One line: n, events, median survival with its interval."""
        level = int(round(self.conf_level * 100))
        med = "not reached" if np.isnan(self.median) else f"{self.median:g}"
        return (f"{self.label or 'all'}: n={self.n}, events={self.n_event_total}, "
                f"median={med} ({level}% CI {self.median_ci_low:g} to "
                f"{self.median_ci_high:g}, {self.conf_type})")

    def to_frame(self) -> pd.DataFrame:
        """One row per distinct time (R's ``summary(survfit(...), censored=TRUE)``)."""
        level = int(round(self.conf_level * 100))
        return pd.DataFrame({
            "group": self.label,
            "time": self.time,
            "n_at_risk": self.n_at_risk,
            "n_events": self.n_events,
            "n_censored": self.n_censored,
            "survival": self.survival,
            "std_err": self.std_err,
            f"ci_low_{level}": self.ci_low,
            f"ci_high_{level}": self.ci_high,
        })


def kaplan_meier(
    time: np.ndarray,
    event: np.ndarray,
    *,
    conf_level: float = 0.95,
    conf_type: str = "log",
    label: str = "",
) -> KaplanMeierResult:
    """Kaplan–Meier estimate of the survival function.

    Parameters
    ----------
    time : array-like of float, shape (n,)
        Follow-up times (> 0).
    event : array-like of bool, shape (n,)
        True = event observed.
    conf_level : float
        Level of the pointwise interval.
    conf_type : {'log', 'log-log', 'plain'}
        Interval transform; ``'log'`` matches R ``survfit``'s default, ``'log-log'``
        matches sksurv and lifelines.
    label : str
        Group name carried into tables and plots.

    Returns
    -------
    KaplanMeierResult

    Raises
    ------
    ValueError
        Unknown ``conf_type`` or ``conf_level`` outside (0, 1).
    SurvivalDataError
        Bad times (see :func:`check_survival_data`).

    References
    ----------
    Kaplan E.L., Meier P. (1958). JASA 53:457–481. Greenwood M. (1926).

    Examples
    --------
    >>> km = kaplan_meier([9, 13, 13, 18], [1, 1, 0, 1])
    >>> round(float(km.survival[0]), 4)
    0.75
    """
    from sksurv.nonparametric import kaplan_meier_estimator

    if conf_type not in _CONF_TYPES:
        raise ValueError(f"conf_type must be one of {_CONF_TYPES}, got {conf_type!r}")
    if not 0.0 < conf_level < 1.0:
        raise ValueError(f"conf_level must be in (0, 1), got {conf_level!r}")
    time, event = check_survival_data(time, event, min_patients=1, require_events=False,
                                      what=f"group {label!r}" if label else "the data")

    uniq, inverse = np.unique(time, return_inverse=True)
    n_events = np.bincount(inverse, weights=event, minlength=uniq.size).astype(np.int64)
    n_total = np.bincount(inverse, minlength=uniq.size).astype(np.int64)
    n_censored = n_total - n_events
    n_at_risk = time.size - np.concatenate([[0], np.cumsum(n_total)[:-1]])

    km_time, survival = kaplan_meier_estimator(event, time)[:2]
    if not np.array_equal(km_time, uniq):  # pragma: no cover - guards an sksurv change
        raise RuntimeError("sksurv returned different time points than expected")

    # Greenwood: Var(log S) = sum d / (n (n - d)); infinite once S reaches 0
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(n_events > 0, n_events / (n_at_risk * (n_at_risk - n_events)), 0.0)
    var_log = np.cumsum(terms)
    se_log = np.sqrt(var_log)
    with np.errstate(invalid="ignore"):
        std_err = survival * se_log
    z = stats.norm.isf((1.0 - conf_level) / 2.0)
    zero = survival <= 0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if conf_type == "log":
            ci_low = survival * np.exp(-z * se_log)
            ci_high = np.minimum(survival * np.exp(z * se_log), 1.0)
        elif conf_type == "plain":
            ci_low = np.maximum(survival - z * std_err, 0.0)
            ci_high = np.minimum(survival + z * std_err, 1.0)
        else:
            _, _, ci = kaplan_meier_estimator(event, time, conf_type="log-log",
                                              conf_level=conf_level)
            ci_low, ci_high = ci[0], ci[1]
    ci_low = np.where(zero, np.nan, ci_low)
    ci_high = np.where(zero, np.nan, ci_high)
    ci_low = np.where(se_log == 0, survival, ci_low)
    ci_high = np.where(se_log == 0, survival, ci_high)

    median = _first_time_at_or_below(uniq, survival, 0.5)
    # R: the interval of the median is where the CI band crosses 0.5, by the same rule
    # (a flat 0.5 ends at the band's next fall). An undefined band (S = 0) never counts
    # as crossing, so the bound stays NA as in survfit
    med_low = _first_time_at_or_below(uniq, ci_low, 0.5)
    med_high = _first_time_at_or_below(uniq, ci_high, 0.5)
    return KaplanMeierResult(
        time=uniq, survival=survival, std_err=std_err, ci_low=ci_low, ci_high=ci_high,
        n_at_risk=n_at_risk, n_events=n_events, n_censored=n_censored,
        conf_level=float(conf_level), conf_type=conf_type, label=str(label),
        median=median, median_ci_low=med_low, median_ci_high=med_high)
