"""Permutation log-rank test of cross-validated risk groups (Simon et al. 2011).

``neurofeat survival`` splits every test fold into high and low risk at its training
fold's median risk and compares the two groups with a log-rank test. The asymptotic
chi-squared p of that comparison is not a valid p: the groups come from models fitted
on the other folds' outcomes, so the statistic has no chi-squared null (it rejected
12.6 % of true nulls at alpha = 0.05 in ``benchmarks/bench_calibration.py``). Simon,
Subramanian, Li & Menezes (2011) recommend a permutation test that redoes the whole
procedure on data whose outcomes were permuted; this module does that:

1. the observed statistic: the pooled log-rank chi-squared of the first repeat's
   cross-validated risk groups (fold plan, fit on every training fold, split at the
   training median), exactly as :func:`~neurofeat.analysis.survival.protocol.cross_validated_risk`
   and :func:`~neurofeat.analysis.survival.evaluation.evaluate_survival` compute it;
2. ``B`` times: permute the outcome pairs ``(time, event)`` jointly across patients
   (within each stratum, by default the site), redo step 1 on the permuted data;
3. ``p = (1 + #{permuted statistic >= observed}) / (B + 1)``; or, by default, the
   sequential p of Besag & Clifford (1991): permutations stop once every tested subset
   has seen ``h`` permuted statistics at least as large as its observed one (``h = 10``,
   :data:`DEFAULT_STOP_AFTER`), and a subset whose ``h``-th exceedance came at
   permutation ``l`` gets ``p = h / l``; a subset that never reaches ``h`` in ``B``
   permutations gets ``(1 + g) / (B + 1)`` as above.

Under the null that the embeddings carry no information about survival (given the
site), the outcome pairs are exchangeable within site, the procedure is a fixed
function of the data, and the p-value is exact (``P(p <= a) <= a`` for every ``a``,
for any ``B``), however the model overfits. Permuting across sites would not be
exact when survival differs by site and the embeddings encode the site (as scanner
effects do): the permuted data would lose that true-but-uninteresting association.

Decisions
---------
*The fold plan is recomputed for every permutation.* neurofeat's plan is stratified
by the event indicator (:func:`~neurofeat.analysis.survival.protocol.survival_fold_plan`),
so it is a function of the outcomes; keeping the observed plan would apply a
different procedure to the permuted data (its folds stratified by other patients'
events) and break the exchangeability argument. The plan depends only on the patient
ids, the events, the task and the seed, so recomputing it is cheap and deterministic.
*Only the first repeat is refitted*: the statistic uses the first repeat only, and
the plan's first repeat does not depend on the number of repeats, so the permuted
procedure is the observed one, at ``1 / n_repeats`` of the cost of the full CV.
*The observed statistic is recomputed here* through the same code path as the
permutations (one extra refit of one repeat), so the comparison is like with like.
*A degenerate split* (every patient of a subset in one group, e.g. when the model
shrinks to the null model in every fold) has statistic 0: no evidence.
*Per-site p-values* come from the same permutations: the statistic of the site's
patients (their first-repeat groups from the pooled CV). With within-site
permutations each site's outcome multiset is fixed, so each is exact as well.
*Ties* between a permuted and the observed statistic (within 1e-9 relative) count
as ``>=`` (conservative).
*Sequential stopping* (Besag & Clifford 1991) is exact as well: ``P(p <= a) <= a``
for every ``a`` under the null (``tests/analysis/survival/test_survival_permutation.py``
checks it on 200,000 simulated sequences). It changes nothing for a p below about
``h / B`` (all ``B`` permutations are still drawn) and stops a clearly null subset
early: at ``p`` near 0.5 after about ``2 h = 20`` of the ``B = 99`` refits. Each subset's
p depends only on the permutations up to its own stopping point, and the permutations
are drawn up front, so the result does not depend on ``n_jobs``; the permutations drawn
beyond the last stopping point (a parallel wave's remainder) are discarded.

References
----------
Simon RM, Subramanian J, Li MC, Menezes S (2011). Using cross-validation to evaluate
predictive accuracy of survival risk classifiers based on high-dimensional data.
Briefings in Bioinformatics 12(3):203-214.
Besag J, Clifford P (1991). Sequential Monte Carlo p-values. Biometrika 78(2):301-304.
Phipson B, Smyth GK (2010). Permutation p-values should never be zero. Stat Appl
Genet Mol Biol 9(1):39.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from threadpoolctl import threadpool_limits

from neurofeat.analysis.folds import derive_seed
from neurofeat.analysis.survival.logrank import logrank_chisq
from neurofeat.analysis.survival.protocol import survival_fold_plan
from neurofeat.analysis.survival.risk_groups import median_split
from neurofeat.analysis.survival.validation import SurvivalDataError, check_survival_data

__all__ = ["PermutationLogRankResult", "permutation_logrank_test", "permutation_method",
           "is_permutation_method", "permutation_indices", "sequential_p_value",
           "DEFAULT_PERMUTATIONS", "DEFAULT_STOP_AFTER"]

#: Default number of permutations: smallest p 1/100 = 0.01, Monte-Carlo s.e. of a p near
#: 0.05 about 0.022 (the test is exact for any B; a larger B only sharpens p). Chosen
#: for cost: a permutation refits one repeat (k fits), 0.3 s with the default coxnet at
#: n = 156, d = 128 but 6.4 s at n = 240, d = 128 (README, survival section).
DEFAULT_PERMUTATIONS = 99

#: Besag-Clifford ``h``: stop once every subset has this many permuted statistics at
#: least as large as its observed one (None or 0: draw all ``B``). 10 keeps the p of a
#: subset near the 0.05 boundary as precise as the full ``B = 99`` (both draw all 99
#: permutations there) and stops a null subset (p ~ 0.5) after about 20.
DEFAULT_STOP_AFTER = 10

_TIE = 1e-9


def permutation_method(n_permutations: int, within: str | None,
                       stop_after: int | None = None) -> str:
    """The ``ci_method`` text of a permutation log-rank row."""
    where = f"within {within}" if within else "across all patients"
    seq = (f", sequential: stops at {stop_after} exceedances (Besag-Clifford)"
           if stop_after else "")
    return (f"permutation (B={n_permutations}{seq}, outcomes permuted {where}; refits "
            "every fold of repeat 0, fold plan recomputed; exact; Simon et al. 2011)")


def sequential_p_value(exceed: np.ndarray, n_permutations: int,
                       stop_after: int | None) -> tuple[float, int]:
    """Permutation p from the exceedance indicators of the permutations drawn so far.

    Parameters
    ----------
    exceed : ndarray of bool, shape (L,)
        Whether permuted statistic ``b`` (in drawing order) is ``>=`` the observed one.
    n_permutations : int
        ``B``, the most permutations that may be drawn.
    stop_after : int or None
        Besag-Clifford ``h``; None or 0: the plain ``(1 + g) / (B + 1)`` over all ``B``.

    Returns
    -------
    p : float
        ``h / l`` when the ``h``-th exceedance is permutation ``l``; otherwise
        ``(1 + g) / (B + 1)`` (then all ``B`` must have been drawn); NaN when neither
        is known yet.
    used : int
        Permutations the p depends on (``l``, or ``B``).

    Examples
    --------
    >>> sequential_p_value(np.array([1, 0, 1, 1], bool), 99, 3)
    (0.75, 4)
    >>> sequential_p_value(np.zeros(99, bool), 99, 10)
    (0.01, 99)
    """
    exceed = np.asarray(exceed, bool)
    if stop_after:
        hits = np.flatnonzero(exceed)
        if hits.size >= stop_after:
            used = int(hits[stop_after - 1]) + 1
            return stop_after / used, used
    if exceed.size < n_permutations:
        return float("nan"), int(exceed.size)
    return float(1 + exceed[:n_permutations].sum()) / (n_permutations + 1), int(n_permutations)


def is_permutation_method(ci_method: object) -> bool:
    """Whether a stored ``ci_method`` is :func:`permutation_method`'s (a permutation p, not
    the published chi-squared one)."""
    return isinstance(ci_method, str) and ci_method.startswith("permutation")


@dataclass(frozen=True, eq=False)
class PermutationLogRankResult:
    """Permutation test of the median-split log-rank statistic of CV risk groups.

    Attributes
    ----------
    statistic : dict of subset -> float
        Observed log-rank chi-squared: ``'all'`` (pooled) and each requested subset.
    p_value : dict of subset -> float
        ``(1 + #{null >= observed}) / (B + 1)``, in ``[1 / (B + 1), 1]``.
    null_statistics : dict of subset -> ndarray, shape (B,)
        The statistic of each permuted data set.
    n_permutations : int
        ``B``.
    strata : str or None
        What the outcomes were permuted within (e.g. ``'site'``); None = all patients.
    n_strata : int
    seed : int
    stop_after : int or None
        Besag-Clifford ``h`` (None: all ``B`` permutations).
    n_drawn : int
        Permutations drawn (``<= B``): the largest a subset's p depends on.
    """

    statistic: dict[str, float]
    p_value: dict[str, float]
    null_statistics: dict[str, np.ndarray] = field(repr=False)
    n_permutations: int = 0
    strata: str | None = None
    n_strata: int = 1
    seed: int = 0
    stop_after: int | None = None
    n_drawn: int = 0

    @property
    def min_p(self) -> float:
        """The smallest attainable p, ``1 / (B + 1)``."""
        return 1.0 / (self.n_permutations + 1)

    @property
    def method(self) -> str:
        """How the p was obtained (stored as ``ci_method``)."""
        return permutation_method(self.n_permutations, self.strata, self.stop_after)

    def summary(self) -> str:
        """One line per subset: observed chi-squared, permutation p, null quantiles."""
        where = (f"within {self.strata} ({self.n_strata} strata)" if self.strata
                 else "across all patients")
        seq = (f" (sequential, h = {self.stop_after}: {self.n_drawn} drawn)"
               if self.stop_after else "")
        lines = [f"permutation log-rank test of CV risk groups: B = {self.n_permutations}"
                 f"{seq}, outcomes permuted {where}, seed {self.seed}; smallest attainable p "
                 f"{self.min_p:.3g}"]
        for name, stat in self.statistic.items():
            null = self.null_statistics[name]
            q95 = float(np.quantile(null, 0.95)) if null.size else float("nan")
            lines.append(f"  {name}: chi-squared {stat:.3f}, permutation p "
                         f"{self.p_value[name]:.3g} (null 95th percentile {q95:.3f})")
        return "\n".join(lines)

    def to_frame(self) -> pd.DataFrame:
        """One row per subset: subset, statistic, p_value, n_permutations, n_drawn,
        null_q95."""
        return pd.DataFrame({
            "subset": list(self.statistic),
            "statistic": list(self.statistic.values()),
            "p_value": [self.p_value[k] for k in self.statistic],
            "n_permutations": self.n_permutations,
            "n_drawn": self.n_drawn,
            "null_q95": [float(np.quantile(self.null_statistics[k], 0.95))
                         if self.null_statistics[k].size else np.nan for k in self.statistic],
        })


def permutation_indices(strata: np.ndarray | None, n: int, n_permutations: int,
                        rng: np.random.Generator) -> np.ndarray:
    """Random permutations of ``range(n)`` that stay within each stratum.

    Parameters
    ----------
    strata : ndarray, shape (n,), or None
        Labels; None = one stratum (all patients).
    n : int
    n_permutations : int
    rng : numpy Generator

    Returns
    -------
    ndarray of int, shape (n_permutations, n)
        Row ``b``: patient ``i`` receives the outcome of patient ``perm[b, i]``, always a
        patient of the same stratum.
    """
    blocks = ([np.arange(n)] if strata is None else
              [np.flatnonzero(strata == s) for s in np.unique(strata)])
    out = np.empty((int(n_permutations), n), dtype=np.int64)
    for b in range(int(n_permutations)):
        for block in blocks:
            out[b, block] = block[rng.permutation(block.size)]
    return out


def _first_repeat_groups(X, y, time, event, patient_ids, sites, *, model, protocol,
                         n_splits, task, seed, label) -> np.ndarray:
    """High-risk indicator of every patient, first repeat (1 / 0; -1 = not tested).

    The same steps as ``cross_validated_risk`` + ``evaluate_survival`` for repeat 0:
    plan from the (possibly permuted) events, fit on each training fold, split the test
    fold at the training fold's median risk.
    """
    plan = survival_fold_plan(patient_ids, event, sites, protocol=protocol,
                              n_splits=n_splits, n_repeats=1, task=task, seed=seed)
    high = np.full(time.size, -1, dtype=np.int8)
    for split in plan.splits():
        if not event[split.train].any() or not event[split.test].any():
            which = "training" if not event[split.train].any() else "test"
            raise SurvivalDataError(
                f"{label}: fold {split.name} has no events in its {which} set, so the "
                "procedure cannot be repeated on it. Use fewer folds (--folds), or "
                "--permutations 0.")
        fitted = clone(model).fit(X[split.train], y[split.train])
        groups = median_split(fitted.predict(X[split.train]), fitted.predict(X[split.test]))
        high[split.test] = groups.high_risk.astype(np.int8)
    return high


def _statistics(time, event, high, subsets) -> dict[str, float]:
    out = {}
    for name, rows in subsets.items():
        h = high[rows]
        tested = h >= 0
        out[name] = logrank_chisq(time[rows][tested], event[rows][tested], h[tested] == 1)
    return out


def _chunk_statistics(X, time, event, patient_ids, sites, perms, index, rows, common):
    """Statistics of a chunk of permutations: (index, {subset: statistics})."""
    from sksurv.util import Surv

    out = {name: np.empty(len(index)) for name in rows}
    for j, (b, perm) in enumerate(zip(index, perms)):
        t_b, e_b = time[perm], event[perm]
        high_b = _first_repeat_groups(X, Surv.from_arrays(e_b, t_b), t_b, e_b, patient_ids,
                                      sites, label=f"permutation {b + 1}", **common)
        for name, stat in _statistics(t_b, e_b, high_b, rows).items():
            out[name][j] = stat
    return index, out


def _null_chunk(*args):
    """:func:`_chunk_statistics` in a worker process, with one BLAS thread."""
    with threadpool_limits(limits=1, user_api="blas"):
        return _chunk_statistics(*args)


def _check_subsets(subsets, n, event) -> dict[str, np.ndarray]:
    out = {"all": np.arange(n)}
    for name, rows in (subsets or {}).items():
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        rows = rows.astype(np.int64)
        if name == "all":
            raise ValueError("subset name 'all' is reserved for the pooled cohort")
        if rows.size == 0 or rows.min() < 0 or rows.max() >= n:
            raise ValueError(f"subset {name!r}: rows must be non-empty positions in [0, {n})")
        if not event[rows].any():
            raise SurvivalDataError(
                f"subset {name!r}: none of its {rows.size} patients has an event, so its "
                "log-rank test is undefined; drop it from the subsets (neurofeat survival "
                "skips sites without events).")
        out[str(name)] = rows
    return out


def permutation_logrank_test(
    X: np.ndarray,
    time: np.ndarray,
    event: np.ndarray,
    *,
    patient_ids: np.ndarray,
    model: BaseEstimator,
    sites: np.ndarray | None = None,
    strata: np.ndarray | None = None,
    strata_name: str = "site",
    subsets: Mapping[str, np.ndarray] | None = None,
    protocol: str = "cv",
    n_splits: int = 5,
    task: str = "os",
    seed: int = 0,
    n_permutations: int = DEFAULT_PERMUTATIONS,
    stop_after: int | None = DEFAULT_STOP_AFTER,
    n_jobs: int = 1,
    progress: Callable[[int], None] | None = None,
) -> PermutationLogRankResult:
    """Permutation p of the median-split log-rank test of cross-validated risk groups.

    Parameters
    ----------
    X : ndarray, shape (n, n_features)
    time, event : ndarray, shape (n,)
    patient_ids : ndarray of str, shape (n,)
        Rows of ``X``; the fold plan is derived from them (as in ``neurofeat survival``).
    model : estimator
        Unfitted survival model (``fit(X, y_structured)``, ``predict``), cloned for
        every fit; the one the observed analysis used.
    sites : ndarray of str, shape (n,), optional
        Site of each patient (the fold plan's ``loso``/``site`` protocols need them);
        also the default strata.
    strata : ndarray, shape (n,), optional
        Outcomes are permuted within each stratum (default: ``sites`` when given,
        otherwise across all patients).
    strata_name : str
        What the strata are (reported; default ``'site'``).
    subsets : mapping name -> rows (int positions or bool mask), optional
        Subsets whose own statistic is tested too, from the same permutations (e.g.
        each site); ``'all'`` (pooled) is always tested.
    protocol, n_splits, task, seed :
        The fold plan, as :func:`~neurofeat.analysis.survival.protocol.survival_fold_plan`
        (only its first repeat is used).
    n_permutations : int
        ``B >= 1``, the most permutations; the smallest attainable p is ``1 / (B + 1)``.
    stop_after : int or None
        Besag-Clifford sequential stopping (see the module docstring): stop once every
        subset has ``h`` exceedances. None or 0: draw all ``B``.
    n_jobs : int
        Worker processes for the permutations (joblib; each uses one BLAS thread). The
        permutations are drawn before they are shared out, so the result does not
        depend on ``n_jobs``.
    progress : callable, optional
        Called with ``k`` after the observed statistic (``k = 1``) and after each
        permutation, or each chunk of ``k`` permutations with ``n_jobs > 1``, and once
        with the skipped remainder when the test stops early (``B + 1`` in all; for a
        progress bar).

    Returns
    -------
    PermutationLogRankResult

    Raises
    ------
    SurvivalDataError
        Bad survival data; a subset (e.g. a site) without events, named; a fold of the
        plan without events.
    ValueError
        ``n_permutations < 1``; misaligned inputs.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> from neurofeat.analysis.survival.cox import make_cox_model
    >>> X, t = rng.normal(size=(60, 3)), rng.exponential(size=60)
    >>> e = rng.random(60) < 0.7
    >>> res = permutation_logrank_test(X, t, e, patient_ids=np.arange(60).astype(str),
    ...                                model=make_cox_model("pca-cox", n_components=2),
    ...                                n_permutations=19)
    >>> 0.05 <= res.p_value["all"] <= 1
    True
    """
    from sksurv.util import Surv

    if int(n_permutations) < 1:
        raise ValueError(f"n_permutations must be >= 1, got {n_permutations} (0 means no "
                         "permutation test: do not call this function)")
    patient_ids = np.asarray(patient_ids).astype(str)
    time, event = check_survival_data(time, event, patient_ids=patient_ids)
    X = np.asarray(X, dtype=np.float64)
    n = time.size
    if X.shape[0] != n or patient_ids.size != n:
        raise ValueError(f"X has {X.shape[0]} rows, time {n}, patient_ids {patient_ids.size}")
    sites_arr = np.full(n, "all") if sites is None else np.asarray(sites).astype(str)
    if sites_arr.size != n:
        raise ValueError(f"sites has {sites_arr.size} values, time {n}")
    if strata is None and sites is not None:
        strata = sites_arr
    if strata is not None:
        strata = np.asarray(strata).astype(str)
        if strata.size != n:
            raise ValueError(f"strata has {strata.size} values, time {n}")
    rows = _check_subsets(subsets, n, event)
    common = dict(model=model, protocol=protocol, n_splits=n_splits, task=task, seed=seed)
    rng = np.random.default_rng(derive_seed("survival-permutation", seed, task))
    perms = permutation_indices(strata, n, n_permutations, rng)
    n_perm = int(n_permutations)
    stop_after = int(stop_after) if stop_after else None
    null = {name: np.full(n_perm, np.nan) for name in rows}
    args = (X, time, event, patient_ids, sites_arr)

    def exceeds(name: str, upto: int) -> np.ndarray:
        return null[name][:upto] >= observed[name] * (1 - _TIE) - _TIE

    def done(upto: int) -> bool:
        return upto >= n_perm or bool(stop_after and upto and all(
            np.isfinite(sequential_p_value(exceeds(name, upto), n_perm, stop_after)[0])
            for name in rows))

    def record(idx: np.ndarray, stats: dict[str, np.ndarray]) -> None:
        for name in rows:
            null[name][idx] = stats[name]
        if progress is not None:
            progress(len(idx))

    drawn = 0
    # one BLAS thread: the fits are small LAPACK calls (see protocol.py)
    with threadpool_limits(limits=1, user_api="blas"):
        high = _first_repeat_groups(X, Surv.from_arrays(event, time), time, event,
                                    patient_ids, sites_arr, label="the observed data",
                                    **common)
        observed = _statistics(time, event, high, rows)
        if progress is not None:
            progress(1)
        while int(n_jobs) <= 1 and not done(drawn):
            record(*_chunk_statistics(*args, perms[drawn:drawn + 1], np.array([drawn]),
                                      rows, common))
            drawn += 1
    if int(n_jobs) > 1:
        from joblib import Parallel, delayed

        # waves of one chunk per worker, in drawing order, so a settled test stops early
        wave = max(1, min(4 * int(n_jobs), stop_after or n_perm))
        with Parallel(n_jobs=int(n_jobs), return_as="generator_unordered") as parallel:
            while not done(drawn):
                idx_all = np.arange(drawn, min(n_perm, drawn + wave))
                chunks = np.array_split(idx_all, min(idx_all.size, int(n_jobs)))
                for idx, stats in parallel(delayed(_null_chunk)(*args, perms[idx], idx, rows,
                                                                common) for idx in chunks):
                    record(idx, stats)
                drawn = int(idx_all[-1]) + 1
    p_value, used = {}, 0
    for name in rows:
        p_value[name], u = sequential_p_value(exceeds(name, drawn), n_perm, stop_after)
        used = max(used, u)
    if progress is not None and drawn < n_perm:
        progress(n_perm - drawn)
    return PermutationLogRankResult(
        statistic=observed, p_value=p_value,
        null_statistics={name: null[name][:used] for name in rows},
        n_permutations=n_perm,
        strata=None if strata is None else strata_name,
        n_strata=1 if strata is None else int(np.unique(strata).size), seed=int(seed),
        stop_after=stop_after, n_drawn=used)
