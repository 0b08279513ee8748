"""Concordance indices (Harrell's C, Uno's IPCW C) and their vectorised bootstrap.

Point estimates come straight from scikit-survival
(:func:`sksurv.metrics.concordance_index_censored`,
:func:`sksurv.metrics.concordance_index_ipcw`). Bootstrap replicates use the same
definitions written as quadratic forms over a patient-by-patient pair matrix: with
``c`` the resample counts of each patient, a replicate is
``sum_ij c_i c_j w_i K_ij / sum_ij c_i c_j w_i A_ij`` where ``A`` marks comparable pairs
(sksurv's rule: i had the event and j's time is later, or equal and censored), ``K`` the
concordant ones (1, or 0.5 for tied risks) and ``w`` is 1 (Harrell) or the squared
inverse probability of censoring weight (Uno). Duplicated patients are never
comparable with themselves, exactly as in a resampled data set, so every replicate
equals sksurv on the resampled arrays (to rounding); the tests check this.

Uno's C needs a censoring distribution and a truncation time ``tau``. Here the
censoring distribution is estimated once, by Kaplan–Meier on the evaluated patients
(out-of-fold predictions: the whole cohort or the site), and held fixed across
bootstrap replicates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurofeat.analysis.survival.validation import SurvivalDataError, check_survival_data

__all__ = [
    "ConcordancePairs",
    "harrell_c",
    "uno_c",
    "default_tau",
    "concordance_pairs",
    "bootstrap_concordance",
    "concordance_replicates",
]

_TIED_TOL = 1e-8


def harrell_c(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> float:
    """Harrell's concordance index (higher risk = earlier event).

    Parameters
    ----------
    time : ndarray, shape (n,)
    event : ndarray of bool, shape (n,)
    risk : ndarray, shape (n,)

    Returns
    -------
    float
    """
    from sksurv.metrics import concordance_index_censored

    time, event = check_survival_data(time, event, what="the c-index data")
    return float(concordance_index_censored(event, time, np.asarray(risk, float))[0])


def default_tau(time: np.ndarray, quantile: float = 0.9) -> float:
    """Default truncation time for Uno's C: the ``quantile`` of observed follow-up times.

    With ``quantile=0.9`` about 10 % of patients are still followed at ``tau``, so the
    censoring survival function is positive there (Uno et al. 2011 require it).
    """
    return float(np.quantile(np.asarray(time, dtype=np.float64), quantile))


def _check_tau(time: np.ndarray, event: np.ndarray, tau: float) -> float:
    tau = float(tau)
    if not np.isfinite(tau) or tau <= 0:
        raise SurvivalDataError(f"tau must be a positive time, got {tau}")
    if not (event & (time < tau)).any():
        raise SurvivalDataError(
            f"no event before the truncation time tau={tau:g}; Uno's c-index is undefined. "
            "Use a larger --tau.")
    if tau > time.max():
        tau = float(time.max())
    return tau


def _ipcw_weights(time: np.ndarray, event: np.ndarray, tau: float,
                  censor_time: np.ndarray | None, censor_event: np.ndarray | None
                  ) -> np.ndarray:
    """sksurv's IPCW weights 1/G(t_i) for events before tau, else 0 (not squared)."""
    from sksurv.nonparametric import CensoringDistributionEstimator
    from sksurv.util import Surv

    if censor_time is None:
        censor_time, censor_event = time, event
    cens = CensoringDistributionEstimator().fit(
        Surv.from_arrays(np.asarray(censor_event, bool), np.asarray(censor_time, float)))
    mask = time < tau
    weights = np.zeros(time.size)
    try:
        weights[mask] = cens.predict_ipcw(Surv.from_arrays(event[mask], time[mask]))
    except ValueError as err:
        raise SurvivalDataError(
            f"Uno's c-index: {err}. The censoring distribution is zero before tau={tau:g}; "
            "use a smaller --tau.") from None
    return weights


def uno_c(time: np.ndarray, event: np.ndarray, risk: np.ndarray, *, tau: float,
          censor_time: np.ndarray | None = None,
          censor_event: np.ndarray | None = None) -> float:
    """Uno's IPCW concordance index truncated at ``tau``.

    Parameters
    ----------
    time, event, risk : ndarray, shape (n,)
    tau : float
        Truncation time: only events before ``tau`` count as the earlier member of a pair.
    censor_time, censor_event : ndarray, optional
        Data for the Kaplan–Meier censoring distribution (default: the same patients).

    Returns
    -------
    float
    """
    from sksurv.metrics import concordance_index_ipcw
    from sksurv.util import Surv

    time, event = check_survival_data(time, event, what="the c-index data")
    tau = _check_tau(time, event, tau)
    if censor_time is None:
        censor_time, censor_event = time, event
    train = Surv.from_arrays(np.asarray(censor_event, bool), np.asarray(censor_time, float))
    try:
        return float(concordance_index_ipcw(train, Surv.from_arrays(event, time),
                                            np.asarray(risk, float), tau=tau)[0])
    except ValueError as err:
        raise SurvivalDataError(f"Uno's c-index at tau={tau:g}: {err}") from None


@dataclass(frozen=True, eq=False)
class ConcordancePairs:
    """Pair structure of one set of patients, reused for every risk vector and replicate.

    Attributes
    ----------
    comparable : ndarray of bool, shape (n, n)
        ``comparable[i, j]``: i had the event and j's time is later (or equal, censored).
    uno_weight : ndarray, shape (n,)
        Squared IPCW weight of each patient as the earlier member (0 beyond tau).
    tau : float
    """

    comparable: np.ndarray
    uno_weight: np.ndarray
    tau: float

    @property
    def n(self) -> int:
        """Number of patients."""
        return int(self.comparable.shape[0])


def concordance_pairs(time: np.ndarray, event: np.ndarray, *, tau: float | None = None,
                      censor_time: np.ndarray | None = None,
                      censor_event: np.ndarray | None = None) -> ConcordancePairs:
    """Precompute comparable pairs and Uno weights for ``(time, event)``.

    Parameters
    ----------
    time, event : ndarray, shape (n,)
    tau : float, optional
        Truncation time for Uno's C (default :func:`default_tau`).
    censor_time, censor_event : ndarray, optional
        Data for the censoring distribution (default: the same patients).

    Returns
    -------
    ConcordancePairs
    """
    time, event = check_survival_data(time, event, what="the c-index data")
    tau = _check_tau(time, event, default_tau(time) if tau is None else tau)
    later = time[None, :] > time[:, None]
    same_censored = (time[None, :] == time[:, None]) & ~event[None, :]
    comparable = event[:, None] & (later | same_censored)
    weights = _ipcw_weights(time, event, tau, censor_time, censor_event)
    return ConcordancePairs(comparable=comparable, uno_weight=np.square(weights), tau=tau)


def _counts(indices: np.ndarray, n: int) -> np.ndarray:
    b = indices.shape[0]
    flat = (indices + (np.arange(b) * n)[:, None]).ravel()
    return np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)


def _concordant_matrix(comparable: np.ndarray, risk_row: np.ndarray) -> np.ndarray:
    diff = risk_row[:, None] - risk_row[None, :]
    return comparable * ((diff > _TIED_TOL) + 0.5 * (np.abs(diff) <= _TIED_TOL))


def concordance_replicates(comparable: np.ndarray, weight: np.ndarray, risk: np.ndarray,
                           indices: np.ndarray, *, chunk_size: int = 500) -> np.ndarray:
    """Weighted concordance of every (index set, risk row), as sksurv would compute it.

    Parameters
    ----------
    comparable : ndarray of bool or float, shape (n, n)
        Comparable pairs (see :class:`ConcordancePairs`).
    weight : ndarray, shape (n,)
        Weight of each patient as the earlier member of a pair (1 = Harrell, squared
        IPCW = Uno).
    risk : ndarray, shape (R, n)
    indices : ndarray of int, shape (B, m)
        Index sets into the n patients (bootstrap resamples, leave-one-out sets, a fold).
    chunk_size : int
        Index sets processed at once.

    Returns
    -------
    ndarray, shape (B, R)
        NaN where an index set has no comparable pair.
    """
    risk = np.atleast_2d(np.asarray(risk, dtype=np.float64))
    indices = np.atleast_2d(np.asarray(indices))
    n = comparable.shape[0]
    comparable = np.asarray(comparable, dtype=np.float64)
    weight = np.asarray(weight, dtype=np.float64)
    out = np.empty((indices.shape[0], risk.shape[0]))
    concordant = [_concordant_matrix(comparable, row) for row in risk]
    for start in range(0, indices.shape[0], chunk_size):
        counts = _counts(indices[start:start + chunk_size], n)
        weighted = counts * weight
        den = np.einsum("bi,bi->b", weighted, counts @ comparable.T)
        with np.errstate(invalid="ignore", divide="ignore"):
            for r, conc in enumerate(concordant):
                num = np.einsum("bi,bi->b", weighted, counts @ conc.T)
                out[start:start + chunk_size, r] = np.where(den > 0, num / den, np.nan)
    return out


def bootstrap_concordance(pairs: ConcordancePairs, risk: np.ndarray, indices: np.ndarray,
                          *, chunk_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """Harrell's and Uno's C on bootstrap resamples, averaged over risk vectors.

    Parameters
    ----------
    pairs : ConcordancePairs
        From :func:`concordance_pairs` on the same patients (n).
    risk : ndarray, shape (n,) or (n_repeats, n)
        Risk scores; with several rows (repeats of cross-validation), each replicate is
        the mean over rows of the per-row c-index.
    indices : ndarray of int, shape (n_boot, m)
        Resample indices into the n patients (rows = replicates).
    chunk_size : int
        Replicates processed at once (memory ~ chunk_size * n * 8 bytes * 3).

    Returns
    -------
    harrell : ndarray, shape (n_boot,)
    uno : ndarray, shape (n_boot,)
        NaN for a replicate without comparable pairs.
    """
    risk = np.atleast_2d(np.asarray(risk, dtype=np.float64))
    if risk.shape[1] != pairs.n:
        raise ValueError(f"risk has {risk.shape[1]} patients, pairs {pairs.n}")
    harrell = concordance_replicates(pairs.comparable, np.ones(pairs.n), risk, indices,
                                     chunk_size=chunk_size)
    uno = concordance_replicates(pairs.comparable, pairs.uno_weight, risk, indices,
                                 chunk_size=chunk_size)
    return harrell.mean(axis=1), uno.mean(axis=1)
