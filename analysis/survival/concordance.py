"""Concordance indices (Harrell's C, Uno's IPCW C) and their vectorised bootstrap.

Harrell's C comes straight from scikit-survival
(:func:`sksurv.metrics.concordance_index_censored`). Uno's C is computed here (see
:func:`uno_c`), because :func:`sksurv.metrics.concordance_index_ipcw` weights an event
at ``T_i`` by ``1 / G(T_i)^2``. Uno et al. (2011) and R's
``concordance(timewt = "n/G2")`` use the left limit, ``1 / G(T_i-)^2``. The two differ
when a censoring shares an event's time (scikit-survival issue #428). Bootstrap
replicates use the same definitions written as quadratic forms over a
patient-by-patient pair matrix: with
``c`` the resample counts of each patient, a replicate is
``sum_ij c_i c_j w_i K_ij / sum_ij c_i c_j w_i A_ij`` where ``A`` marks comparable pairs
(sksurv's rule: i had the event and j's time is later, or equal and censored), ``K`` the
concordant ones (1, or 0.5 for tied risks) and ``w`` is 1 (Harrell) or
``1 / G(T_i-)^2`` (Uno). Duplicated patients are never comparable with themselves,
exactly as in a resampled data set. So every replicate equals :func:`harrell_c` (sksurv)
or :func:`uno_c` on the resampled arrays, to rounding; for Uno's C the censoring
distribution comes from the full data, as described below. The tests check this.

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
    "concordance_null_variance",
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


def _censoring_left_limit(at: np.ndarray, censor_time: np.ndarray,
                          censor_event: np.ndarray) -> np.ndarray:
    """Kaplan–Meier censoring survival just before each time in ``at``: G(t-) = P(C >= t).

    This is the reverse Kaplan–Meier estimate
    (:func:`sksurv.nonparametric.kaplan_meier_estimator` with ``reverse=True``). A
    censoring tied with an event counts as coming after it: the events at t leave the
    censoring risk set first, as in R's ``survfit`` and ``concordance``. G(t-) is G at the
    last distinct time strictly before t, and 1 before the first. NaN beyond the last
    time of the censoring data while G there is still positive, where G is not estimated.
    """
    from sksurv.nonparametric import kaplan_meier_estimator

    uniq, g_after = kaplan_meier_estimator(np.asarray(censor_event, bool),
                                           np.asarray(censor_time, np.float64),
                                           reverse=True)
    g_before = np.concatenate([[1.0], g_after])
    at = np.asarray(at, dtype=np.float64)
    left = g_before[np.searchsorted(uniq, at, side="left")]
    return np.where((at > uniq[-1]) & (g_after[-1] > 0), np.nan, left)


def _uno_weights(time: np.ndarray, event: np.ndarray, tau: float,
                 censor_time: np.ndarray | None, censor_event: np.ndarray | None
                 ) -> np.ndarray:
    """Uno's weight of each patient as the earlier member of a pair: 1 / G(T_i-)^2 for
    events with T_i < tau, else 0 (G from ``censor_*``, default the same patients)."""
    if censor_time is None:
        censor_time, censor_event = time, event
    counts = event & (time < tau)
    g_left = _censoring_left_limit(time[counts], censor_time, censor_event)
    if np.isnan(g_left).any():
        late = float(time[counts][np.isnan(g_left)].min())
        raise SurvivalDataError(
            f"Uno's c-index: the event at time {late:g} (before tau={tau:g}) is later than "
            f"the last time of the censoring data ({float(np.max(censor_time)):g}), where "
            "the censoring distribution is not estimated; use a smaller --tau.")
    if (g_left <= 0).any():
        late = float(time[counts][g_left <= 0].min())
        raise SurvivalDataError(
            f"Uno's c-index: the censoring distribution is zero before the event at time "
            f"{late:g} (before tau={tau:g}); use a smaller --tau.")
    weights = np.zeros(time.size)
    weights[counts] = 1.0 / np.square(g_left)
    return weights


# patient pairs held in memory at once by uno_c (rows of earlier members x all patients)
_PAIR_BLOCK = 1 << 20


def uno_c(time: np.ndarray, event: np.ndarray, risk: np.ndarray, *, tau: float,
          censor_time: np.ndarray | None = None,
          censor_event: np.ndarray | None = None) -> float:
    """Uno's IPCW concordance index truncated at ``tau`` (higher risk = earlier event).

    ``C = sum_ij w_i A_ij K_ij / sum_ij w_i A_ij``. Here ``A_ij`` marks comparable pairs:
    i had the event and ``T_j > T_i``, or ``T_j == T_i`` with j censored. ``K_ij`` is 1
    when ``risk_i > risk_j``, 0.5 for risks tied within 1e-8, else 0. The weight is
    ``w_i = 1 / G(T_i-)^2`` for events with ``T_i < tau`` and 0 otherwise. ``G(T_i-)`` is
    the left limit of the Kaplan–Meier censoring survival, the probability that i was
    still uncensored when its event was seen. This matches Uno et al. (2011) and R
    ``survival::concordance(..., reverse = TRUE, timewt = "n/G2", ymax = tau)``. scikit-
    survival's ``concordance_index_ipcw`` uses ``G(T_i)`` instead. The two agree (to
    rounding) unless a censoring shares an event's time before tau (sksurv issue #428).

    Truncation: only events with ``T_i < tau`` count as the earlier member of a pair
    (Uno et al.; sksurv). R's ``ymax`` keeps ``T_i <= ymax``, so the two agree unless an
    event falls exactly on ``tau``. A ``tau`` beyond the last follow-up time is lowered to
    that time. This drops events at the last time, which only have pairs with
    censorings tied with them.

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

    Raises
    ------
    SurvivalDataError
        No event before ``tau``, no comparable pair, a risk vector of the wrong length or
        with non-finite values, or a censoring distribution that is zero or not estimated
        before an event.

    References
    ----------
    Uno H., Cai T., Pencina M.J., D'Agostino R.B., Wei L.J. (2011). On the C-statistics
    for evaluating overall adequacy of risk prediction procedures with censored survival
    data. Statistics in Medicine 30:1105–1117.

    Examples
    --------
    >>> round(uno_c([11, 11, 26, 89, 128, 299, 300], [1, 0, 0, 1, 0, 1, 0],
    ...             [-0.02, 1.2, -0.56, -1.33, -0.81, 1.02, -1.29], tau=200), 6)
    0.313725
    """
    time, event = check_survival_data(time, event, what="the c-index data")
    tau = _check_tau(time, event, tau)
    risk = np.asarray(risk, dtype=np.float64).ravel()
    if risk.size != time.size:
        raise SurvivalDataError(f"Uno's c-index: risk has {risk.size} values for "
                                f"{time.size} patients; pass one risk score per patient.")
    if not np.isfinite(risk).all():
        bad = int(np.flatnonzero(~np.isfinite(risk))[0])
        raise SurvivalDataError(f"Uno's c-index: risk of patient {bad} is {risk[bad]}; "
                                "risk scores must be finite.")
    weight = _uno_weights(time, event, tau, censor_time, censor_event)
    earlier = np.flatnonzero(weight > 0)
    numerator = denominator = 0.0
    rows = max(1, _PAIR_BLOCK // time.size)
    for start in range(0, earlier.size, rows):
        i = earlier[start:start + rows]
        comparable = (time[None, :] > time[i, None]) | (
            (time[None, :] == time[i, None]) & ~event[None, :])
        diff = risk[i, None] - risk[None, :]
        credit = (diff > _TIED_TOL) + 0.5 * (np.abs(diff) <= _TIED_TOL)
        numerator += weight[i] @ np.sum(comparable * credit, axis=1)
        denominator += weight[i] @ np.sum(comparable, axis=1)
    if denominator == 0:
        raise SurvivalDataError(f"Uno's c-index at tau={tau:g}: no comparable pairs (no "
                                "patient is followed past an event before tau).")
    return float(numerator / denominator)


@dataclass(frozen=True, eq=False)
class ConcordancePairs:
    """Pair structure of one set of patients, reused for every risk vector and replicate.

    Attributes
    ----------
    comparable : ndarray of bool, shape (n, n)
        ``comparable[i, j]``: i had the event and j's time is later (or equal, censored).
    uno_weight : ndarray, shape (n,)
        Uno weight ``1 / G(T_i-)^2`` of each patient as the earlier member (0 for
        censored patients and from tau on), as in :func:`uno_c`.
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
    return ConcordancePairs(comparable=comparable,
                            uno_weight=_uno_weights(time, event, tau, censor_time,
                                                    censor_event),
                            tau=tau)


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


def concordance_null_variance(comparable: np.ndarray, weight: np.ndarray) -> float:
    """Exact variance of a (weighted) concordance index for risk scores unrelated to the
    outcome.

    The c-index of one set of patients is ``C = sum_ij w_i A_ij K_ij / sum_ij w_i A_ij``
    (:func:`concordance_replicates`). For risk scores drawn i.i.d. from a continuous
    distribution independently of (time, event), each ``K_ij = 1{risk_i > risk_j}`` has
    variance 1/4, two indicators that share a patient in the same role (both earlier, or
    both later members) covary by +1/12, in opposite roles by -1/12, and indicators of
    disjoint pairs are independent. With pair weights ``v_ij = w_i A_ij``, ``W = sum v``,
    and for each patient ``O_i = sum_j v_ij`` (as the earlier member), ``I_j = sum_i v_ij``
    (as the later member)::

        Var(C) = [ sum v^2 / 4 + ( sum_i (O_i^2 - sum_j v_ij^2)
                                 + sum_j (I_j^2 - sum_i v_ij^2) - 2 sum_k O_k I_k ) / 12 ] / W^2

    Without censoring between events (every comparable pair an event before a
    non-event, unit weights) this is the Mann-Whitney null variance
    ``(n + 1) / (12 n_1 n_0)``; Harrell's C of censored data compares events with later
    events too, and its variance is then smaller (about 0.55 of the Mann-Whitney value
    on 60 % events). It is the exact test noise that a fold scored by a constant risk (a
    Cox model at the null model, C = 0.5 exactly) does not show; the one-backbone
    interval adds the Mann-Whitney value instead, by measurement
    (:func:`neurofeat.analysis.correction_factors.degenerate_fold_variance`,
    :data:`neurofeat.analysis.correction_factors.CALIBRATED_CORRECTION_SINGLE`).

    Parameters
    ----------
    comparable : ndarray of bool or float, shape (m, m)
        Comparable pairs of the m patients (:class:`ConcordancePairs`), earlier member in
        the row.
    weight : ndarray, shape (m,)
        Weight of each patient as the earlier member (1 = Harrell's C; the squared IPCW
        weight = Uno's C).

    Returns
    -------
    float
        NaN where there is no comparable pair (or all weights are 0).

    Examples
    --------
    >>> comparable = np.array([[0, 1, 1], [0, 0, 0], [0, 0, 0]], bool)  # 1 event first
    >>> round(concordance_null_variance(comparable, np.ones(3)), 6)  # (3 + 1) / (12 * 2)
    0.166667
    """
    v = np.asarray(comparable, dtype=np.float64) * np.asarray(weight, np.float64)[:, None]
    total = float(v.sum())
    if not total > 0:
        return float("nan")
    out_w, in_w = v.sum(axis=1), v.sum(axis=0)
    squares = v * v
    same_role = ((out_w ** 2 - squares.sum(axis=1)).sum()
                 + (in_w ** 2 - squares.sum(axis=0)).sum())
    var_sum = squares.sum() / 4.0 + (same_role - 2.0 * float(out_w @ in_w)) / 12.0
    return float(var_sum / total ** 2)
