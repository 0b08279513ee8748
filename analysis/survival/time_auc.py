"""Time-dependent discrimination and calibration: cumulative/dynamic AUC and the IBS.

Thin over :func:`sksurv.metrics.cumulative_dynamic_auc` and
:func:`sksurv.metrics.integrated_brier_score`, adding the "where follow-up allows"
logic: a horizon t is evaluated only when some patient died by t, some patient is
still followed after t, and t lies inside the observed follow-up; otherwise it is
reported as skipped with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from neurofeat.analysis.survival.validation import SurvivalDataError, check_survival_data

__all__ = ["TimeAUCResult", "time_dependent_auc", "BrierResult", "integrated_brier"]


@dataclass(frozen=True, eq=False)
class TimeAUCResult:
    """Cumulative/dynamic AUC at fixed horizons.

    Attributes
    ----------
    times : ndarray, shape (m,)
        Requested horizons.
    auc : ndarray, shape (m,)
        AUC(t); NaN where skipped.
    reasons : tuple of str
        '' where evaluated, else why the horizon was skipped.
    """

    times: np.ndarray
    auc: np.ndarray
    reasons: tuple[str, ...]

    def summary(self) -> str:
        """``AUC(365)=0.70, AUC(730)=0.68, AUC(1095) skipped (...)``."""
        parts = []
        for t, a, why in zip(self.times, self.auc, self.reasons):
            parts.append(f"AUC({t:g})={a:.3f}" if not why else f"AUC({t:g}) skipped ({why})")
        return ", ".join(parts)

    def to_frame(self) -> pd.DataFrame:
        """One row per horizon: time, auc, skipped_reason."""
        return pd.DataFrame({"time": self.times, "auc": self.auc,
                             "skipped_reason": list(self.reasons)})


def _surv(event: np.ndarray, time: np.ndarray):
    from sksurv.util import Surv

    return Surv.from_arrays(np.asarray(event, bool), np.asarray(time, np.float64))


def time_dependent_auc(time: np.ndarray, event: np.ndarray, risk: np.ndarray,
                       times: np.ndarray, *, censor_time: np.ndarray | None = None,
                       censor_event: np.ndarray | None = None) -> TimeAUCResult:
    """Cumulative/dynamic AUC (IPCW) at each horizon where follow-up allows.

    Parameters
    ----------
    time, event, risk : ndarray, shape (n,)
    times : ndarray, shape (m,)
        Horizons (same unit as ``time``).
    censor_time, censor_event : ndarray, optional
        Data for the censoring distribution (default: the same patients).

    Returns
    -------
    TimeAUCResult
    """
    from sksurv.metrics import cumulative_dynamic_auc

    time, event = check_survival_data(time, event, what="the time-dependent AUC data")
    risk = np.asarray(risk, np.float64)
    times = np.atleast_1d(np.asarray(times, np.float64))
    if censor_time is None:
        censor_time, censor_event = time, event
    train = _surv(censor_event, censor_time)
    test = _surv(event, time)
    auc = np.full(times.size, np.nan)
    reasons = []
    for k, t in enumerate(times):
        if t >= time.max() or t >= np.max(censor_time):
            reasons.append(f"beyond follow-up (max {time.max():g})")
        elif t < time.min():
            reasons.append(f"before the first time ({time.min():g})")
        elif not (event & (time <= t)).any():
            reasons.append("no death by then")
        elif not (time > t).any():
            reasons.append("nobody followed beyond it")
        else:
            try:
                auc[k] = float(cumulative_dynamic_auc(train, test, risk, [t])[0][0])
                reasons.append("")
            except ValueError as err:
                reasons.append(str(err))
    return TimeAUCResult(times=times, auc=auc, reasons=tuple(reasons))


@dataclass(frozen=True, eq=False)
class BrierResult:
    """Integrated Brier score over a time range.

    Attributes
    ----------
    ibs : float
    times : ndarray
        Grid the score was integrated over.
    """

    ibs: float
    times: np.ndarray

    def summary(self) -> str:
        """``IBS = 0.182 over [120, 900]``."""
        return f"IBS = {self.ibs:.3f} over [{self.times[0]:g}, {self.times[-1]:g}]"

    def to_frame(self) -> pd.DataFrame:
        """One row: ibs, t_min, t_max, n_times."""
        return pd.DataFrame([{"ibs": self.ibs, "t_min": self.times[0],
                              "t_max": self.times[-1], "n_times": self.times.size}])


def integrated_brier(time: np.ndarray, event: np.ndarray, survival: np.ndarray,
                     grid: np.ndarray, *, quantiles: tuple[float, float] = (0.1, 0.9),
                     censor_time: np.ndarray | None = None,
                     censor_event: np.ndarray | None = None) -> BrierResult:
    """Integrated Brier score (IPCW) of predicted survival curves.

    Parameters
    ----------
    time, event : ndarray, shape (n,)
    survival : ndarray, shape (n, n_grid)
        Predicted S(grid | x_i).
    grid : ndarray, shape (n_grid,)
    quantiles : (float, float)
        Integrate over grid points between these quantiles of the observed times.
    censor_time, censor_event : ndarray, optional

    Returns
    -------
    BrierResult

    Raises
    ------
    SurvivalDataError
        Fewer than two grid points inside the follow-up range.
    """
    from sksurv.metrics import integrated_brier_score

    time, event = check_survival_data(time, event, what="the Brier score data")
    grid = np.asarray(grid, np.float64)
    low, high = np.quantile(time, quantiles)
    keep = (grid >= max(low, time.min())) & (grid <= high) & (grid < time.max())
    if censor_time is None:
        censor_time, censor_event = time, event
    keep &= grid < np.max(censor_time)
    if keep.sum() < 2:
        raise SurvivalDataError(
            f"fewer than two grid times inside the follow-up range [{low:g}, {high:g}]; "
            "the integrated Brier score needs a longer follow-up")
    ibs = integrated_brier_score(_surv(censor_event, censor_time), _surv(event, time),
                                 np.asarray(survival)[:, keep], grid[keep])
    return BrierResult(ibs=float(ibs), times=grid[keep])
