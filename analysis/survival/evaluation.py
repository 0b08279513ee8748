"""Score out-of-fold survival predictions: c-indices with CIs, time AUC, IBS, KM/log-rank.

For every subset (``'all'`` = pooled, then each site) this computes

- Harrell's and Uno's c-index (Uno truncated at ``tau``; stated in every row), the
  estimate being the mean over CV repeats of the c-index of that repeat's out-of-fold
  risk, with event-stratified bootstrap intervals (percentile and BCa; the resample
  indices depend only on the seed, the site and the events, so they are identical for
  every backbone: paired);
- the cumulative/dynamic AUC at the requested horizons (default 1, 2, 3 years in days)
  where follow-up allows, and the integrated Brier score (means over repeats);
- Kaplan–Meier curves of the high/low risk groups (split at each training fold's median
  risk; first repeat) and their log-rank test: with a
  :class:`~neurofeat.analysis.survival.permutation.PermutationLogRankResult` the
  permutation p (Simon et al. 2011; exact) is the primary ``logrank_p`` row and the
  asymptotic chi-squared p of the same groups (the published procedure, not
  calibrated) a second, non-primary row, as the c-index rows pair a calibrated and a
  published interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from neurofeat.analysis.paired_tests import DEFAULT_TEST
from neurofeat.analysis.correction_factors import high_dimensional_single_warning
from neurofeat.analysis.bootstrap import (
    bootstrap_ci,
    jackknife_indices,
    stratified_bootstrap_indices,
)
from neurofeat.analysis.folds import derive_seed
from neurofeat.analysis.survival.concordance import (
    bootstrap_concordance,
    concordance_pairs,
    default_tau,
    harrell_c,
    uno_c,
)
from neurofeat.analysis.survival.kaplan_meier import KaplanMeierResult, kaplan_meier
from neurofeat.analysis.survival.logrank import LogRankResult, logrank_test
from neurofeat.analysis.survival.permutation import (PermutationLogRankResult,
                                                     is_permutation_method)
from neurofeat.analysis.survival.protocol import SurvivalCVResult
from neurofeat.analysis.survival.risk_groups import RISK_GROUP_LABELS
from neurofeat.analysis.survival.time_auc import integrated_brier, time_dependent_auc
from neurofeat.analysis.survival.validation import SurvivalDataError

__all__ = ["SurvivalEvaluation", "evaluate_survival", "subset_concordance", "DAYS_PER_YEAR",
           "SubsetConcordance", "LOGRANK_CAVEAT", "LOGRANK_PUBLISHED", "site_subsets"]

DAYS_PER_YEAR = 365.25


@dataclass(frozen=True, eq=False)
class SubsetConcordance:
    """c-indices of one subset with their bootstrap replicates (for paired comparisons).

    Attributes
    ----------
    site : str
    rows : ndarray of int
        Positions of the subset's patients.
    tau : float
    harrell, uno : float
        Mean over repeats.
    harrell_boot, uno_boot : ndarray, shape (n_boot,)
    harrell_jack, uno_jack : ndarray, shape (n,) or None
        Leave-one-out values (for BCa).
    """

    site: str
    rows: np.ndarray
    tau: float
    harrell: float
    uno: float
    harrell_boot: np.ndarray
    uno_boot: np.ndarray
    harrell_jack: np.ndarray | None
    uno_jack: np.ndarray | None


def _tested_repeats(risk: np.ndarray) -> np.ndarray:
    return risk[np.isfinite(risk).all(axis=1)]


def subset_concordance(time: np.ndarray, event: np.ndarray, risk: np.ndarray, *,
                       site: str, rows: np.ndarray, tau: float | None, n_boot: int,
                       seed: int, jackknife: bool = True) -> SubsetConcordance:
    """Harrell/Uno c-index of a subset, with paired bootstrap (and jackknife) replicates.

    Parameters
    ----------
    time, event : ndarray, shape (n_sub,)
    risk : ndarray, shape (n_repeats, n_sub)
    site : str
        Name of the subset; part of the bootstrap seed (``derive_seed(seed, site)``).
    rows : ndarray of int
        Positions of the subset in the full data (kept for reference).
    tau : float or None
        Truncation time (None: :func:`default_tau` of the subset); clipped to the
        subset's own 90th percentile of follow-up so the censoring distribution stays
        positive.
    n_boot : int
    seed : int
    jackknife : bool
        Also compute leave-one-out values (BCa).
    """
    risk = _tested_repeats(np.atleast_2d(risk))
    if risk.shape[0] == 0:
        raise SurvivalDataError(f"{site}: no repeat scored every patient of the subset")
    tau_sub = default_tau(time) if tau is None else min(float(tau), default_tau(time))
    pairs = concordance_pairs(time, event, tau=tau_sub)
    harrell = float(np.mean([harrell_c(time, event, r) for r in risk]))
    uno = float(np.mean([uno_c(time, event, r, tau=pairs.tau) for r in risk]))
    idx = stratified_bootstrap_indices(event, n_boot, derive_seed("survival-boot", seed, site))
    h_boot, u_boot = bootstrap_concordance(pairs, risk, idx)
    h_jack = u_jack = None
    if jackknife:
        h_jack, u_jack = bootstrap_concordance(pairs, risk, jackknife_indices(time.size))
    return SubsetConcordance(site=site, rows=np.asarray(rows), tau=pairs.tau, harrell=harrell,
                             uno=uno, harrell_boot=h_boot, uno_boot=u_boot,
                             harrell_jack=h_jack, uno_jack=u_jack)


@dataclass(frozen=True, eq=False)
class SurvivalEvaluation:
    """Everything `neurofeat survival` reports for one backbone.

    Attributes
    ----------
    metrics : DataFrame
        Long format, columns :data:`SURVIVAL_METRICS_COLUMNS`: site, metric, estimate,
        ci_low, ci_high, bca_low, bca_high, ci_method, primary, level, estimand, n,
        n_pos (events), tau (Uno's truncation time), horizon (time-dependent AUC),
        rare, warning. Harrell/Uno C come twice: ``calibrated-t`` (primary: mean
        per-fold C with the calibrated interval; estimand: expected C of the model
        trained on n_train patients) and the published percentile bootstrap of the
        out-of-fold C (predictions treated as fixed). ``logrank_p`` likewise: the
        permutation p (primary; ``ci_method`` starts with ``permutation``) when a
        permutation test was given, and the asymptotic chi-squared p of the median
        split (``ci_method`` starts with ``median split``; the published procedure,
        primary only when no permutation test was run).
    folds : DataFrame
        Per split: repeat, fold, fold_name, n_train, n_test, n_events_test, threshold,
        harrell_c.
    km : dict of site -> tuple of KaplanMeierResult
        Low- and high-risk curves (first repeat).
    logrank : dict of site -> LogRankResult
    concordance : dict of site -> SubsetConcordance
    tau : float
    permutation : PermutationLogRankResult or None
        The permutation test of the risk groups (None: not run).
    """

    metrics: pd.DataFrame
    folds: pd.DataFrame
    km: dict[str, tuple[KaplanMeierResult, ...]]
    logrank: dict[str, LogRankResult]
    concordance: dict[str, SubsetConcordance] = field(repr=False)
    tau: float = float("nan")
    permutation: PermutationLogRankResult | None = field(default=None, repr=False)

    def summary(self) -> str:
        """A few lines: pooled c-indices with CIs, then one line per site."""
        lines = []
        for site, block in self.metrics.groupby("site", sort=False):
            parts = []
            for _, row in block.iterrows():
                if row["metric"] in ("harrell_c", "uno_c"):
                    parts.append(f"{row['metric']} {row['estimate']:.3f} "
                                 f"[{row['ci_low']:.3f}, {row['ci_high']:.3f}]")
                elif row["metric"] == "logrank_p":
                    kind = ("permutation" if is_permutation_method(row["ci_method"])
                            else "chi-squared, not calibrated")
                    parts.append(f"log-rank p {row['estimate']:.3g} ({kind})")
            lines.append(f"{site}: " + ", ".join(parts))
        return "\n".join(lines)

    def to_frame(self) -> pd.DataFrame:
        """The long metrics table."""
        return self.metrics.copy()


def _row(site, metric, estimate, n, n_pos, *, ci=None, ci_method="", tau=np.nan,
         horizon=np.nan):
    return {"site": site, "metric": metric, "estimate": float(estimate),
            "ci_low": np.nan if ci is None else float(ci.ci_low),
            "ci_high": np.nan if ci is None else float(ci.ci_high),
            "bca_low": np.nan if ci is None else float(ci.bca_low),
            "bca_high": np.nan if ci is None else float(ci.bca_high),
            "ci_method": ci_method, "n": int(n), "n_pos": int(n_pos), "tau": float(tau),
            "horizon": float(horizon)}


#: What the median-split log-rank p of cross-validated risk groups is worth: the groups
#: come from models fitted on the other folds' outcomes, so the statistic has no
#: chi-square null (Simon et al., Brief Bioinform 2011, recommend a permutation test that
#: refits every fold: analysis/survival/permutation.py). Measured by
#: benchmarks/bench_calibration.py on the survival null.
LOGRANK_CAVEAT = ("published procedure, not calibrated: rejected 12.6 % of true nulls at "
                  "alpha = 0.05 in simulation; use the permutation log-rank p (primary "
                  "row, neurofeat survival --permutations) or the calibrated c-index rows")

#: ``ci_method`` prefix of the published (asymptotic chi-squared) log-rank row.
LOGRANK_PUBLISHED = "median split at training-fold median"

#: Columns of the survival metrics table, in order.
SURVIVAL_METRICS_COLUMNS = ("site", "metric", "estimate", "ci_low", "ci_high", "bca_low",
                            "bca_high", "ci_method", "primary", "level", "estimand", "n",
                            "n_pos", "tau", "horizon", "rare", "warning")


def _calibrated_rows(cv, site, rows, tau, ci_level) -> list[dict]:
    """Mean per-fold Harrell/Uno C with the calibrated corrected interval: primary rows."""
    from neurofeat.analysis.paired_tests import (DEFAULT_TEST, METRIC_BOUNDS,
                                                 corrected_resampled_interval)
    from neurofeat.analysis.correction_factors import single_extra_variance
    from neurofeat.analysis.scoring import score_folds
    from neurofeat.analysis.survival.compare import HARRELL, UNO, survival_target

    splits = cv.splits
    if not {"n_train", "n_test"} <= set(splits.columns) or len(splits) < 2:
        return []
    n_train, n_test = float(splits["n_train"].mean()), float(splits["n_test"].mean())
    try:
        target = survival_target(cv.time, cv.event, rows=rows, tau=tau)
    except (SurvivalDataError, ValueError):
        return []
    in_rows = np.zeros(cv.time.size, bool)
    in_rows[rows] = True
    fold_ids = np.where(in_rows[None], cv.plan.fold_ids, -1)
    scores = np.where(np.isfinite(cv.risk), cv.risk, 0.0)
    out = []
    k = cv.plan.n_folds
    events = int(cv.event[rows].sum())
    for scorer in (HARRELL, UNO):
        with np.errstate(invalid="ignore", divide="ignore"):
            per_fold = score_folds(scorer, target, scores, fold_ids, k)
        extra = single_extra_variance(per_fold, metric=scorer.name, kind="survival",
                                      n=rows.size, n_pos=events, n_folds=k)
        ci = corrected_resampled_interval(per_fold, n_train=n_train, n_test=n_test,
                                          level=ci_level, metric=scorer.name,
                                          kind="survival", n_folds=k,
                                          bounds=METRIC_BOUNDS.get(scorer.name), single=True,
                                          extra_variance=extra,
                                          n_features=cv.n_features or None)
        row = _row(site, scorer.name, ci.estimate, rows.size, int(cv.event[rows].sum()),
                   ci_method=DEFAULT_TEST, tau=target.tau if scorer is UNO else np.nan)
        row.update({"ci_low": ci.ci_low, "ci_high": ci.ci_high, "n_train": n_train})
        out.append(row)
    return out


_SURV_ESTIMAND = {
    DEFAULT_TEST: "expected {metric} of the model trained on {n_train:.0f} patients "
                       "(mean over the R x k test folds)",
    "percentile": "{metric} of the out-of-fold risk, mean over repeats (predictions "
                  "treated as fixed)",
    "permutation": "p of no association between survival and the cross-validated "
                   "median-split risk groups (repeat 0), against the permutation null",
}


def _finish(frame: pd.DataFrame, level: float, cv) -> pd.DataFrame:
    """Add primary/level/estimand/rare-endpoint columns (one primary row per site x metric)."""
    from neurofeat.analysis.compare import RARE_ENDPOINT, join_warnings

    if frame.empty:
        return pd.DataFrame(columns=list(SURVIVAL_METRICS_COLUMNS))
    n_train = float(cv.splits["n_train"].mean()) if "n_train" in cv.splits else np.nan
    kind = frame["ci_method"].str.split(" ").str[0]
    frame["level"] = np.where(frame["ci_low"].notna(), level, np.nan)
    frame["estimand"] = [_SURV_ESTIMAND.get(k, "").format(metric=m, n_train=n_train)
                         for k, m in zip(kind, frame["metric"])]
    frame["rare"] = frame["n_pos"] < RARE_ENDPOINT
    frame["warning"] = np.where(
        frame["rare"], [f"rare endpoint: {k} events (< {RARE_ENDPOINT}); per-fold "
                        "estimates are noisy and intervals wide" for k in frame["n_pos"]], "")
    high_dim = high_dimensional_single_warning(cv.n_features, n_train)
    if high_dim:
        interval = (frame["metric"].isin(["harrell_c", "uno_c"])
                    & (frame["ci_method"] == DEFAULT_TEST) & frame["ci_low"].notna())
        frame.loc[interval, "warning"] = [join_warnings(rare, high_dim)
                                          for rare in frame.loc[interval, "warning"]]
    frame["primary"] = False
    for _, group in frame.groupby(["site", "metric"], sort=False):
        calibrated = group[((group["ci_method"] == DEFAULT_TEST) & group["ci_low"].notna())
                           | group["ci_method"].map(is_permutation_method)]
        pick = calibrated if len(calibrated) else group
        frame.loc[pick.index[0], "primary"] = True
    return frame[list(SURVIVAL_METRICS_COLUMNS)]


def evaluate_survival(
    cv: SurvivalCVResult,
    *,
    tau: float | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    ci_level: float = 0.95,
    horizons: Sequence[float] = (DAYS_PER_YEAR, 2 * DAYS_PER_YEAR, 3 * DAYS_PER_YEAR),
    horizon_names: Sequence[str] = ("1y", "2y", "3y"),
    by_site: bool = True,
    min_site_patients: int = 10,
    bca_max_n: int = 1000,
    permutation: PermutationLogRankResult | None = None,
) -> SurvivalEvaluation:
    """Score a :class:`SurvivalCVResult` pooled and per site.

    Parameters
    ----------
    cv : SurvivalCVResult
    tau : float, optional
        Truncation time of Uno's C (default: 90th percentile of follow-up); per site it
        is clipped to that site's 90th percentile. Reported in every row (``tau``).
    n_boot : int
        Bootstrap resamples (stratified by event).
    seed : int
    ci_level : float
    horizons, horizon_names : sequences
        Time-dependent AUC horizons (same unit as the times) and their metric suffixes.
    by_site : bool
        Also score each site (sites with fewer than ``min_site_patients`` patients or no
        events are skipped).
    bca_max_n : int
        Skip the jackknife (BCa bounds NaN) above this many patients.
    permutation : PermutationLogRankResult, optional
        Permutation test of the same risk groups
        (:func:`~neurofeat.analysis.survival.permutation.permutation_logrank_test` on
        the data, model and fold settings of ``cv``): its p of each subset it tested
        (``'all'``, sites) becomes the primary ``logrank_p`` row of that subset.

    Returns
    -------
    SurvivalEvaluation

    Raises
    ------
    ValueError
        ``permutation`` was computed on other risk groups (its observed statistic differs
        from this CV's).
    """
    with threadpool_limits(limits=1, user_api="blas"):  # see protocol.py
        return _evaluate(cv, tau=tau, n_boot=n_boot, seed=seed, ci_level=ci_level,
                         horizons=horizons, horizon_names=horizon_names, by_site=by_site,
                         min_site_patients=min_site_patients, bca_max_n=bca_max_n,
                         permutation=permutation)


def site_subsets(sites: np.ndarray, event: np.ndarray, *,
                 min_site_patients: int = 10) -> dict[str, np.ndarray]:
    """The sites :func:`evaluate_survival` scores on their own (rows per site).

    Sites with at least ``min_site_patients`` patients and an event, when there is more
    than one site; a permutation test's per-site subsets should be these.
    """
    sites = np.asarray(sites).astype(str)
    event = np.asarray(event, bool)
    out: dict[str, np.ndarray] = {}
    if np.unique(sites).size < 2:
        return out
    for site in np.unique(sites):
        rows = np.flatnonzero(sites == site)
        if rows.size >= min_site_patients and event[rows].any():
            out[str(site)] = rows
    return out


def _evaluate(cv, *, tau, n_boot, seed, ci_level, horizons, horizon_names, by_site,
              min_site_patients, bca_max_n, permutation=None) -> SurvivalEvaluation:
    alpha = 1.0 - ci_level
    subsets = [("all", np.arange(cv.time.size))]
    if by_site:
        subsets += list(site_subsets(cv.sites, cv.event,
                                     min_site_patients=min_site_patients).items())
    rows_out, km, lr, conc = [], {}, {}, {}
    pooled_tau = default_tau(cv.time) if tau is None else float(tau)
    ci_method = f"percentile (event-stratified bootstrap, B={n_boot})"
    for site, rows in subsets:
        time, event = cv.time[rows], cv.event[rows]
        risk = cv.risk[:, rows]
        n, n_ev = rows.size, int(event.sum())
        try:
            sc = subset_concordance(time, event, risk, site=site, rows=rows, tau=pooled_tau,
                                    n_boot=n_boot, seed=seed, jackknife=n <= bca_max_n)
        except SurvivalDataError:
            if site == "all":
                raise
            continue  # e.g. a small site without an event before tau: skipped
        conc[site] = sc
        rows_out.append(_row(site, "harrell_c", sc.harrell, n, n_ev, ci=bootstrap_ci(
            sc.harrell, sc.harrell_boot, sc.harrell_jack, alpha), ci_method=ci_method))
        rows_out.append(_row(site, "uno_c", sc.uno, n, n_ev, ci=bootstrap_ci(
            sc.uno, sc.uno_boot, sc.uno_jack, alpha), ci_method=ci_method, tau=sc.tau))
        rows_out.extend(_calibrated_rows(cv, site, rows, pooled_tau, ci_level))
        repeats = np.flatnonzero(np.isfinite(risk).all(axis=1))
        aucs = [time_dependent_auc(time, event, risk[r], horizons) for r in repeats]
        for k, name in enumerate(horizon_names):
            values = np.array([a.auc[k] for a in aucs])
            if np.isfinite(values).any():
                rows_out.append(_row(site, f"td_auc_{name}", np.nanmean(values), n, n_ev,
                                     ci_method="mean over repeats", horizon=horizons[k]))
        try:
            ibs = [integrated_brier(time, event, cv.survival[r][rows], cv.grid).ibs
                   for r in repeats]
            rows_out.append(_row(site, "ibs", np.mean(ibs), n, n_ev,
                                 ci_method="mean over repeats"))
        except SurvivalDataError:
            pass
        first = repeats[0]
        high = cv.high_risk[first, rows] == 1
        groups = np.where(high, RISK_GROUP_LABELS[1], RISK_GROUP_LABELS[0])
        curves = tuple(kaplan_meier(time[groups == g], event[groups == g], label=g)
                       for g in RISK_GROUP_LABELS if (groups == g).any())
        km[site] = curves
        if len(curves) == 2:
            test = logrank_test(time, event, groups)
            lr[site] = test
            if permutation is not None and site in permutation.p_value:
                stat = permutation.statistic[site]
                if not np.isclose(stat, test.statistic, rtol=1e-6, atol=1e-9):
                    raise ValueError(
                        f"{site}: the permutation test's observed log-rank chi-squared "
                        f"({stat:.6g}) is not this CV's ({test.statistic:.6g}); run it on "
                        "the same data, model, protocol, folds, task and seed as the CV")
                rows_out.append(_row(site, "logrank_p", permutation.p_value[site], n, n_ev,
                                     ci_method=permutation.method))
            rows_out.append(_row(site, "logrank_p", test.p_value, n, n_ev,
                                 ci_method=f"{LOGRANK_PUBLISHED}, repeat {first}, "
                                           f"chi-squared; {LOGRANK_CAVEAT}"))
            rows_out.append(_row(site, "logrank_chisq", test.statistic, n, n_ev))
    metrics = _finish(pd.DataFrame(rows_out), ci_level, cv)
    return SurvivalEvaluation(metrics=metrics, folds=cv.splits.copy(), km=km, logrank=lr,
                              concordance=conc, tau=pooled_tau, permutation=permutation)
