"""Paired comparison of backbones on a survival task (the survival branch of `stats compare`).

Reuses the generic engine of :mod:`neurofeat.analysis.compare`: every backbone is
fitted on the same fold plan (stratified by event, derived from task + seed + patient
ids), its out-of-fold risk scores go through two :class:`~neurofeat.analysis.scoring.Scorer`
objects — Harrell's C and Uno's C — and :func:`~neurofeat.analysis.compare.compare_scores`
gives each side's c-index with percentile/BCa CIs, the paired difference with CIs
(identical event-stratified resamples for both sides), the per-fold Wilcoxon/t test
(Shapiro rule) and the Nadeau–Bengio corrected t-test. This is done pooled and per
site, and Holm/BH adjust the p-values across sites.

The c-index scorers evaluate all resamples at once with pair matrices
(:func:`~neurofeat.analysis.survival.concordance.concordance_replicates`), equal to
scikit-survival's ``concordance_index_censored``/``concordance_index_ipcw`` on each
resampled data set. Uno's censoring distribution is the Kaplan–Meier estimate of the
patients being compared (pooled, or the site), and its truncation time ``tau`` is
clipped per subset to that subset's 90th percentile of follow-up.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from neurofeat.analysis.compare import ComparisonResult, adjust_across, compare_scores
from neurofeat.analysis.paired_tests import DEFAULT_TEST
from neurofeat.analysis.correction_factors import high_dimensional_single_warning
from neurofeat.analysis.scoring import Scorer
from neurofeat.analysis.survival.concordance import (  # Uno: 1 / G(T_i-)^2, as R
    _check_tau,
    _uno_weights,
    concordance_replicates,
    default_tau,
)
from neurofeat.analysis.survival.cox import make_cox_model
from neurofeat.analysis.survival.protocol import (
    SurvivalCVResult,
    cross_validated_risk,
    survival_fold_plan,
)
from neurofeat.analysis.survival.validation import check_survival_data

__all__ = ["SurvivalTarget", "survival_target", "HARRELL", "UNO", "SurvivalComparison",
           "compare_survival_backbones", "compare_survival_scores"]


@dataclass(frozen=True, eq=False)
class SurvivalTarget:
    """The outcome a c-index scorer needs, precomputed once per subset.

    Attributes
    ----------
    time, event : ndarray, shape (n,)
    comparable : ndarray of bool, shape (n, n)
    uno_weight : ndarray, shape (n,)
        Squared IPCW weights (0 outside the subset and beyond tau).
    tau : float
    """

    time: np.ndarray
    event: np.ndarray
    comparable: np.ndarray
    uno_weight: np.ndarray
    tau: float


def survival_target(time: np.ndarray, event: np.ndarray, *, rows: np.ndarray | None = None,
                    tau: float | None = None) -> SurvivalTarget:
    """Build a :class:`SurvivalTarget` for all patients, Uno weights from ``rows``.

    Parameters
    ----------
    time, event : ndarray, shape (n,)
    rows : ndarray of int, optional
        The subset being compared (default: everyone); its Kaplan–Meier censoring
        distribution gives the IPCW weights.
    tau : float, optional
        Truncation time (default: 90th percentile of the subset's follow-up; a larger
        value is clipped to it).
    """
    time, event = check_survival_data(time, event)
    rows = np.arange(time.size) if rows is None else np.asarray(rows)
    sub_t, sub_e = time[rows], event[rows]
    tau_sub = default_tau(sub_t) if tau is None else min(float(tau), default_tau(sub_t))
    tau_sub = _check_tau(sub_t, sub_e, tau_sub)
    later = time[None, :] > time[:, None]
    same_censored = (time[None, :] == time[:, None]) & ~event[None, :]
    comparable = event[:, None] & (later | same_censored)
    weight = np.zeros(time.size)
    weight[rows] = _uno_weights(sub_t, sub_e, tau_sub, None, None)
    return SurvivalTarget(time, event, comparable, weight, tau_sub)


def _harrell_fn(target: SurvivalTarget, scores: np.ndarray, index: np.ndarray) -> np.ndarray:
    return concordance_replicates(target.comparable, np.ones(target.time.size), scores, index)


def _uno_fn(target: SurvivalTarget, scores: np.ndarray, index: np.ndarray) -> np.ndarray:
    return concordance_replicates(target.comparable, target.uno_weight, scores, index)


#: Harrell's concordance index (target: :class:`SurvivalTarget`).
HARRELL = Scorer("harrell_c", _harrell_fn, True, None)
#: Uno's IPCW concordance index truncated at ``target.tau``.
UNO = Scorer("uno_c", _uno_fn, True, None)


@dataclass(frozen=True, eq=False)
class SurvivalComparison:
    """A survival comparison: per-subset results and the combined tests table.

    Attributes
    ----------
    task : str
    results : dict of site -> ComparisonResult
        ``'all'`` (pooled) first, then each site.
    tests : DataFrame
        Long ``tests`` table (comparisons view) with ``tau`` and Holm/BH across sites.
    taus : dict of site -> float
    cv : dict of backbone -> SurvivalCVResult
    params : dict
    """

    task: str
    results: dict[str, ComparisonResult]
    tests: pd.DataFrame
    taus: dict[str, float]
    cv: dict[str, SurvivalCVResult] = field(repr=False)
    params: dict = field(default_factory=dict)

    def summary_frame(self) -> pd.DataFrame:
        """One row per site x pair x metric (both sides, difference, p-values)."""
        frames = [r.summary_frame() for r in self.results.values()]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def summary(self) -> str:
        """Readable lines per site."""
        return "\n".join(f"[{site}, tau={self.taus[site]:g}] " + r.summary()
                         for site, r in self.results.items())

    def to_frame(self) -> pd.DataFrame:
        """The tests table."""
        return self.tests.copy()


def compare_survival_scores(
    risk: Mapping[str, np.ndarray],
    time: np.ndarray,
    event: np.ndarray,
    fold_ids: np.ndarray,
    pairs: Sequence[tuple[str, str]],
    *,
    sites: np.ndarray | None = None,
    task: str = "os",
    n_train: float,
    n_test: float,
    n_folds: int | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    test: str = DEFAULT_TEST,
    tau: float | None = None,
    side_a: str = "",
    side_b: str = "",
    by_site: bool = True,
    min_site_patients: int = 10,
    n_features: Mapping[str, int] | None = None,
) -> tuple[dict[str, ComparisonResult], pd.DataFrame, dict[str, float]]:
    """Compare out-of-fold risk scores (R, n) of backbones, pooled and per site.

    ``n_features`` (backbone -> the Cox model's input dimension) selects the
    high-dimensional c-index factors (see :func:`~neurofeat.analysis.compare.compare_scores`),
    and beyond their measured range puts
    :func:`~neurofeat.analysis.correction_factors.high_dimensional_single_warning` into the
    ``warning`` of every row that backbone is behind
    (:meth:`ComparisonResult.with_backbone_warnings`).

    Returns
    -------
    results : dict site -> ComparisonResult
    tests : DataFrame (Holm/BH across sites, ``tau`` column)
    taus : dict site -> float
    """
    time, event = check_survival_data(time, event)
    sites = np.full(time.size, "all") if sites is None else np.asarray(sites).astype(str)
    subsets: list[tuple[str, np.ndarray | None]] = [("all", None)]
    if by_site and np.unique(sites).size > 1:
        for site in np.unique(sites):
            rows = np.flatnonzero(sites == site)
            # a site needs events before its own truncation time to have a Uno C
            if rows.size >= min_site_patients and \
                    (event[rows] & (time[rows] < default_tau(time[rows]))).any():
                subsets.append((str(site), rows))
    backbone_warnings = {name: high_dimensional_single_warning(d, n_train)
                         for name, d in (n_features or {}).items()}
    results, taus, frames = {}, {}, []
    with threadpool_limits(limits=1, user_api="blas"):
        scored = [_compare_subset(site, rows, risk, time, event, fold_ids, pairs, task=task,
                                  n_train=n_train, n_test=n_test, n_folds=n_folds,
                                  n_boot=n_boot, seed=seed, test=test, tau=tau,
                                  side_a=side_a, side_b=side_b,
                                  backbone_warnings=backbone_warnings,
                                  n_features=n_features)
                  for site, rows in subsets]
    for site, res, tau_site, frame in scored:
        results[site] = res
        taus[site] = tau_site
        frames.append(frame)
    tests = adjust_across(pd.concat(frames, ignore_index=True), across="site")
    return results, tests, taus


def _compare_subset(site, rows, risk, time, event, fold_ids, pairs, *, task, n_train, n_test,
                    n_folds, n_boot, seed, test, tau, side_a, side_b, backbone_warnings,
                    n_features):
    """Compare one subset (site or pooled); returns (site, result, tau, tests frame)."""
    target = survival_target(time, event, rows=rows, tau=tau)
    res = compare_scores([HARRELL, UNO], target, event, risk, pairs, fold_ids, task=task,
                         n_train=n_train, n_test=n_test, n_boot=n_boot, seed=seed,
                         test=test, side_a=side_a, side_b=side_b, site=site, rows=rows,
                         n_folds=n_folds, n_pos=int(event[rows if rows is not None
                                                          else slice(None)].sum()),
                         rare_count=int(event[rows if rows is not None
                                              else slice(None)].sum()), kind="survival",
                         n_features=n_features)
    if any(backbone_warnings.values()):
        res = res.with_backbone_warnings(backbone_warnings)
    frame = res.to_frame()
    frame["tau"] = np.where(frame["metric"] == "uno_c", target.tau, np.nan)
    return site, res, target.tau, frame


def compare_survival_backbones(
    embeddings: Mapping[str, np.ndarray],
    time: np.ndarray,
    event: np.ndarray,
    *,
    patient_ids: np.ndarray,
    pairs: Sequence[tuple[str, str]],
    sites: np.ndarray | None = None,
    task: str = "os",
    model: str = "coxnet",
    model_params: dict | None = None,
    protocol: str = "cv",
    n_splits: int = 5,
    n_repeats: int = 5,
    n_boot: int = 1000,
    seed: int = 0,
    test: str = DEFAULT_TEST,
    tau: float | None = None,
    side_a: str = "",
    side_b: str = "",
    by_site: bool = True,
    on_split: Callable[[int], None] | None = None,
) -> SurvivalComparison:
    """Fit the survival model of every backbone on the same folds, then compare c-indices.

    Parameters
    ----------
    embeddings : mapping backbone -> ndarray (n, d)
        Same patients in the same order for every backbone.
    time, event : ndarray, shape (n,)
    patient_ids : ndarray of str, shape (n,)
    pairs : sequence of (backbone_a, backbone_b)
        E.g. from :func:`neurofeat.analysis.pairing.pair_backbones`.
    sites : ndarray of str, shape (n,), optional
    task, model, model_params, protocol, n_splits, n_repeats, seed :
        As in `neurofeat survival`.
    n_boot : int
        Paired bootstrap resamples (stratified by event).
    test : str
        Primary test (see :func:`~neurofeat.analysis.compare.compare_scores`); default
        the calibrated 'calibrated-t'.
    tau : float, optional
        Uno's truncation time.
    on_split : callable, optional
        Progress callback (called once per fitted split).

    Returns
    -------
    SurvivalComparison
    """
    time, event = check_survival_data(time, event, patient_ids=patient_ids)
    patient_ids = np.asarray(patient_ids).astype(str)
    sites_arr = np.full(time.size, "all") if sites is None else np.asarray(sites).astype(str)
    plan = survival_fold_plan(patient_ids, event, sites_arr, protocol=protocol,
                              n_splits=n_splits, n_repeats=n_repeats, task=task, seed=seed)
    names = sorted({x for pair in pairs for x in pair})
    estimator = make_cox_model(model, **(model_params or {}))
    cv = {name: cross_validated_risk(embeddings[name], time, event, plan, model=estimator,
                                     model_name=model, sites=sites_arr, backbone=name,
                                     progress=on_split)
          for name in names}
    n_train, n_test = plan.mean_train_test_sizes()
    results, tests, taus = compare_survival_scores(
        {name: cv[name].risk for name in names}, time, event, plan.fold_ids, pairs,
        sites=sites_arr, task=task, n_train=n_train, n_test=n_test, n_folds=plan.n_folds,
        n_boot=n_boot, seed=seed, test=test, tau=tau, side_a=side_a, side_b=side_b,
        by_site=by_site and protocol != "loso",
        n_features={name: cv[name].n_features for name in names})
    params = {"task": task, "model": model, "model_params": model_params or {},
              "protocol": protocol, "n_splits": n_splits, "n_repeats": n_repeats,
              "n_boot": n_boot, "seed": seed, "test": test, "taus": taus,
              "pairs": [list(p) for p in pairs]}
    return SurvivalComparison(task, results, tests, taus, cv, params)
