"""Evaluation protocols: out-of-fold predictions over a fold plan, and probe reports.

- :func:`out_of_fold` fits a fresh estimator on every split of a
  :class:`~neurofeat.analysis.folds.FoldPlan` (cv, loso or per-site) and collects the
  test-fold predictions: one row of scores per repeat (:class:`OutOfFold`). With
  ``fraction < 1`` each training fold is first subsampled (stratified, nested,
  identical for every backbone) for data-fraction curves.
- :func:`evaluate_probe` turns out-of-fold scores into the probe report: AUC, balanced
  accuracy, sensitivity and specificity (continuous tasks: also Spearman and MAE),
  pooled and per site, each with stratified-bootstrap percentile and BCa CIs (and a
  DeLong CI for AUC), plus per-fold values.
- :func:`run_probe` does both for the linear probe, the kNN probe and the data-fraction
  curve, and returns a :class:`ProbeResult`.

Each row of the metrics table states its estimate, interval and the quantity both refer
to (``estimand``); ``primary`` marks the row to show:

- ``ci_method='calibrated-t'`` (primary): the mean over the R x k test folds of the
  per-fold metric, with the corrected resampled t interval whose correction factor is
  calibrated per metric by simulation
  (:data:`~neurofeat.analysis.correction_factors.CALIBRATED_CORRECTION`). Estimand: the
  expected performance of the probe trained on ``n_train`` patients of this population
  (Bates, Hastie & Tibshirani 2023). Calibrated by simulation
  (``benchmarks/bench_calibration.py``).
- ``percentile``, ``bca`` (published): the metric of all out-of-fold predictions of a
  repeat, averaged over repeats, with a patient bootstrap that keeps the predictions
  fixed (ignores that the probe was trained on these patients: intervals too narrow).
- ``delong`` (published, AUC): the AUC of the repeat-averaged scores with DeLong's CI
  (same caveat).

Under leave-one-site-out (``plan.protocol == 'loso'``) the K folds are the K sites, so
the corrected resampled t has K - 1 degrees of freedom (2 in a 3-site cohort: an
interval of [0, 1]) and its correction was calibrated for repeated k-fold CV. There:

- ``loso-z`` (primary, pooled ``site='all'``): the mean over the K held-out sites of the
  per-site metric, +- z sqrt(2 sum_s v_s) / K with ``v_s`` the stratified-bootstrap
  variance of the metric at site s (the rule of
  :func:`~neurofeat.analysis.loso.loso_pooled_test`; the doubling because each site's
  patients also trained the other sites' probes), clipped to the metric's range.
  Estimand: the mean over the K held-out sites of the metric at each site of the probe
  trained on the other sites, conditional on those fits. Coverage checked by
  simulation (``tests/calibration/test_loso_probe_calibration.py``).
- per held-out site, ``percentile`` (primary): the site's patients did not train its
  probe, so the fixed-prediction bootstrap is valid conditional on that one fit.
- the pooled ``calibrated-t`` row is kept for reference, never primary (none per site:
  one fold has no resampled-t interval).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from neurofeat.analysis.bootstrap import stratified_bootstrap_indices
from neurofeat.analysis.paired_tests import (DEFAULT_TEST, METRIC_BOUNDS,
                                             corrected_resampled_interval)
from neurofeat.analysis.correction_factors import (predicted_minority_per_fold,
                                                   single_variance_terms)
from neurofeat.analysis.loso import LOSO_DEFAULT_TEST, loso_pooled_test
from neurofeat.analysis.folds import (FoldPlan, derive_seed, fraction_subsample,
                                      leave_one_site_out_plan, per_site_kfold_plan,
                                      stratified_kfold_plan)
from neurofeat.analysis.scoring import (AUC, MAE, SPEARMAN, Scorer, balanced_accuracy_scorer,
                                        estimate, predicted_share_folds, score_folds,
                                        sensitivity_scorer,
                                        specificity_scorer)

__all__ = [
    "PROTOCOLS",
    "DEFAULT_FRACTIONS",
    "OutOfFold",
    "out_of_fold",
    "make_plan",
    "binary_scorers",
    "METRICS_COLUMNS",
    "evaluate_probe",
    "ProbeResult",
    "run_probe",
]

PROTOCOLS = ("cv", "loso", "site")
DEFAULT_FRACTIONS = (0.1, 0.25, 0.5, 0.75, 1.0)


@dataclass(frozen=True, eq=False)
class OutOfFold:
    """Out-of-fold predictions of one model on one fold plan.

    Attributes
    ----------
    scores : ndarray, shape (R, n)
        Test-fold prediction of every patient in every repeat (NaN = not tested).
    plan : FoldPlan
    fraction : float
        Fraction of each training fold used.
    fitted_params : tuple of dict
        Per split: repeat, fold, n_train and the estimator's chosen hyperparameters
        (``C_``, ``alpha_``).
    """

    scores: np.ndarray
    plan: FoldPlan
    fraction: float = 1.0
    fitted_params: tuple[dict, ...] = field(default=())

    @property
    def mean_scores(self) -> np.ndarray:
        """Per-patient mean over repeats, shape (n,)."""
        return np.nanmean(self.scores, axis=0)

    def train_test_sizes(self) -> tuple[float, float]:
        """Mean (n_train, n_test) over splits, as fitted."""
        n_train = np.mean([p["n_train"] for p in self.fitted_params])
        n_test = np.mean([p["n_test"] for p in self.fitted_params])
        return float(n_train), float(n_test)

    def to_frame(self) -> pd.DataFrame:
        """Long table: patient_id, repeat, fold, fold_name, score."""
        frame = self.plan.to_frame()
        frame["score"] = self.scores.reshape(-1)
        frame["fraction"] = self.fraction
        return frame[frame["fold"] >= 0].reset_index(drop=True)


def out_of_fold(X: np.ndarray, y: np.ndarray, plan: FoldPlan,
                make_estimator: Callable[[], Any], *, output: str = "proba",
                fraction: float = 1.0, strata: np.ndarray | None = None,
                on_split: Callable[[], None] | None = None) -> OutOfFold:
    """Fit on every split's training rows, predict its test rows.

    Parameters
    ----------
    X : ndarray, shape (n, d)
    y : ndarray, shape (n,)
        Training target (bool for classifiers, float for regressors).
    plan : FoldPlan
        Rows of the plan must be the rows of ``X``.
    make_estimator : callable
        Returns a fresh unfitted estimator.
    output : {'proba', 'predict', 'decision'}
        ``predict_proba[:, 1]``, ``predict`` or ``decision_function``.
    fraction : float in (0, 1]
        Stratified subsample of each training fold (see
        :func:`~neurofeat.analysis.folds.fraction_subsample`).
    strata : ndarray, shape (n,), optional
        Strata for the subsample (default: ``y``).
    on_split : callable, optional
        Called after every split (progress bars).
    """
    X = np.asarray(X)
    y = np.asarray(y)
    if X.shape[0] != plan.patient_ids.size or y.shape[0] != X.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows, y {y.shape[0]}, the fold plan "
                         f"{plan.patient_ids.size}; they must be the same patients")
    strata = y if strata is None else np.asarray(strata)
    scores = np.full(plan.fold_ids.shape, np.nan)
    params = []
    # one BLAS thread: the fits are small (n <= a few thousand), and OpenBLAS threads that
    # wait for a busy core (torch's threads, another command) made `stats compare --task
    # all` on the demo's 240 patients take > 10 min instead of ~40 s of CPU
    with threadpool_limits(limits=1, user_api="blas"):
        for split in plan.splits():
            train = split.train
            if fraction < 1.0:
                train = fraction_subsample(train, strata, fraction, patient_ids=plan.patient_ids,
                                           task=plan.task, seed=plan.seed, repeat=split.repeat,
                                           fold=split.fold)
            model = make_estimator().fit(X[train], y[train])
            if output == "proba":
                pred = model.predict_proba(X[split.test])[:, 1]
            elif output == "decision":
                pred = model.decision_function(X[split.test])
            elif output == "predict":
                pred = model.predict(X[split.test])
            else:
                raise ValueError(f"output must be 'proba', 'predict' or 'decision', got {output!r}")
            scores[split.repeat, split.test] = pred
            info = {"repeat": split.repeat, "fold": split.fold, "fold_name": split.name,
                    "n_train": int(train.size), "n_test": int(split.test.size)}
            for attr in ("C_", "alpha_"):
                if hasattr(model, attr):
                    info[attr.rstrip("_")] = float(getattr(model, attr))
            params.append(info)
            if on_split is not None:
                on_split()
    return OutOfFold(scores, plan, float(fraction), tuple(params))


def make_plan(protocol: str, patient_ids: np.ndarray, strata: np.ndarray, sites: np.ndarray,
              *, task: str, n_splits: int = 5, n_repeats: int = 5, seed: int = 0) -> FoldPlan:
    """The fold plan of a protocol ('cv', 'loso' or 'site')."""
    if protocol == "cv":
        return stratified_kfold_plan(patient_ids, strata, n_splits=n_splits,
                                     n_repeats=n_repeats, task=task, seed=seed)
    if protocol == "loso":
        return leave_one_site_out_plan(patient_ids, sites, task=task, seed=seed, y=strata)
    if protocol == "site":
        return per_site_kfold_plan(patient_ids, sites, strata, n_splits=n_splits,
                                   n_repeats=n_repeats, task=task, seed=seed)
    raise ValueError(f"unknown protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}")


def binary_scorers(threshold: float = 0.5) -> list[Scorer]:
    """AUC, balanced accuracy, sensitivity, specificity at ``threshold``."""
    return [AUC, balanced_accuracy_scorer(threshold), sensitivity_scorer(threshold),
            specificity_scorer(threshold)]


def _site_groups(sites: np.ndarray) -> list[tuple[str, np.ndarray]]:
    groups = [("all", np.arange(sites.size))]
    for site in np.unique(sites):
        groups.append((str(site), np.flatnonzero(sites == site)))
    return groups


#: Columns of the probe's metrics table (:func:`evaluate_probe`), in order.
METRICS_COLUMNS = ("probe", "site", "metric", "n", "n_pos", "fraction", "estimate", "ci_low",
                   "ci_high", "ci_method", "primary", "level", "estimand", "rare", "warning")

_ESTIMAND = {
    DEFAULT_TEST: "expected {metric} of the probe trained on {n_train:.0f} patients (mean "
                  "over the R x k test folds)",
    "percentile": "{metric} of the out-of-fold scores, mean over repeats (predictions "
                  "treated as fixed)",
    "bca": "{metric} of the out-of-fold scores, mean over repeats (predictions treated as "
           "fixed)",
    "delong": "{metric} of the repeat-averaged out-of-fold scores (predictions treated as "
              "fixed)",
    LOSO_DEFAULT_TEST: "mean over the {k} held-out sites of the {metric} at each site of the "
                       "probe trained on the other sites, conditional on those fits",
}

#: Estimand of a held-out site's rows under LOSO (any CI method).
_LOSO_SITE_ESTIMAND = ("{metric} at held-out site {site} of the probe trained on the other "
                       "sites, conditional on that fit")


def _rare_warning(n: int, n_pos: int) -> str:
    from neurofeat.analysis.compare import rare_endpoint_warning

    return rare_endpoint_warning(min(n_pos, n - n_pos), smallest="class")


def _finish_metrics(rows: list[dict], level: float, n_train: float,
                    protocol: str = "cv", n_sites: int = 0) -> pd.DataFrame:
    """Shape the metrics table: primary flag (one per probe/site/metric/fraction), estimand.

    Primary: 'loso-z' (LOSO, pooled), else 'calibrated-t' with a finite interval (not
    under LOSO), else 'percentile'.
    """
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=list(METRICS_COLUMNS))
    loso = protocol == "loso"
    frame["level"] = level
    frame["estimand"] = [
        _LOSO_SITE_ESTIMAND.format(metric=metric, site=site) if loso and site != "all"
        else _ESTIMAND.get(m, "").format(metric=metric, n_train=n_train, k=n_sites)
        for m, metric, site in zip(frame["ci_method"], frame["metric"], frame["site"])]
    warn = [_rare_warning(n, k) for n, k in zip(frame["n"], frame["n_pos"])]
    frame["warning"] = warn
    frame["rare"] = [bool(w) for w in warn]
    frame["primary"] = False
    for _, group in frame.groupby(["probe", "site", "metric", "fraction"], sort=False):
        finite = np.isfinite(group["ci_low"].astype(float))
        preferred = LOSO_DEFAULT_TEST if loso else DEFAULT_TEST
        calibrated = group[(group["ci_method"] == preferred) & finite]
        pick = calibrated if len(calibrated) else group[group["ci_method"] == "percentile"]
        if len(pick):
            frame.loc[pick.index[0], "primary"] = True
    return frame[list(METRICS_COLUMNS)]


def _loso_pooled_rows(rows: list[dict], held_out: dict[str, list[tuple[float, float]]],
                      alpha: float) -> list[dict]:
    """The ``loso-z`` row of every metric: mean of the per-site metrics, z interval.

    ``se = sqrt(2 sum_s v_s) / K`` (:func:`~neurofeat.analysis.loso.loso_pooled_test`),
    ``v_s`` the stratified-bootstrap variance of the metric at held-out site s; NaN when a
    site has no value (one class) or no bootstrap variance.
    """
    out = []
    for metric, per_site in held_out.items():
        base = next((r for r in rows if r["site"] == "all" and r["metric"] == metric), None)
        if base is None:
            continue
        values = np.array([v for v, _ in per_site], float)
        variances = np.array([v for _, v in per_site], float)
        if values.size and np.isfinite(values).all() and np.isfinite(variances).all():
            mean, low, high, _, _ = loso_pooled_test(values, variances, alpha=alpha)
            bounds = METRIC_BOUNDS.get(metric)
            if bounds is not None:
                low, high = float(np.clip(low, *bounds)), float(np.clip(high, *bounds))
        else:
            mean = low = high = np.nan
        out.append({**{k: base[k] for k in ("probe", "site", "metric", "n", "n_pos",
                                             "fraction")},
                    "estimate": mean, "ci_low": low, "ci_high": high,
                    "ci_method": LOSO_DEFAULT_TEST})
    return out


def evaluate_probe(oof: OutOfFold, labels: np.ndarray, sites: np.ndarray, *,
                   scorers: Sequence[Scorer], targets: dict[str, Any] | None = None,
                   n_boot: int = 2000, seed: int = 0, alpha: float = 0.05,
                   probe: str = "linear", per_site: bool = True,
                   delong: bool = True, kind: str = "binary"
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Metrics with bootstrap CIs, pooled and per site, and per-fold values.

    Parameters
    ----------
    oof : OutOfFold
    labels : ndarray of bool, shape (n,)
        Binary label (bootstrap strata, AUC/BA target).
    sites : ndarray of str, shape (n,)
    scorers : sequence of Scorer
    targets : dict, optional
        Target per scorer name when it is not ``labels`` (continuous ``y`` for Spearman
        and MAE).
    n_boot, seed, alpha : bootstrap settings; indices derive from ``seed`` and the task
        so every backbone gets the same resamples.
    probe : str
        Label of the probe in the output ('linear', 'knn', 'ridge').
    kind : {'binary', 'continuous'}
        Task kind: selects the calibrated correction of the primary interval.

    Returns
    -------
    metrics : DataFrame
        Long, columns :data:`METRICS_COLUMNS`: one row per CI method
        ('calibrated-t', primary; 'percentile', 'bca'; 'delong' for AUC; under LOSO
        also 'loso-z', primary for the pooled rows, and 'percentile' primary per
        held-out site), with the interval level, the estimand of the row and a
        rare-endpoint warning.
    folds : DataFrame
        probe, metric, repeat, fold, fold_name, value.
    """
    from neurofeat.analysis.delong import delong_auc

    labels = np.asarray(labels, bool)
    sites = np.asarray(sites).astype(str)
    targets = targets or {}
    rows = []
    loso = oof.plan.protocol == "loso"
    # LOSO's pooled row needs every held-out site's metric even without per-site rows
    groups = _site_groups(sites) if per_site or loso else [("all", np.arange(sites.size))]
    tested = np.isfinite(oof.scores).any(axis=0)
    n_train, n_test = oof.train_test_sizes() if oof.fitted_params else (np.nan, np.nan)
    held_out: dict[str, list[tuple[float, float]]] = {}   # metric -> (estimate, v_s) per site
    n_sites = 0
    for site, members in groups:
        members = members[tested[members]]
        if members.size == 0:
            continue
        emit = site == "all" or per_site
        n_sites += int(site != "all")
        group_start = len(rows)
        site_labels = labels[members]
        n_pos = int(site_labels.sum())
        one_class = n_pos == 0 or n_pos == members.size
        rng_seed = derive_seed("bootstrap", oof.plan.task, seed, site)
        local = stratified_bootstrap_indices(site_labels, n_boot, rng_seed)
        boot_index = members[local]
        for scorer in scorers:
            target = targets.get(scorer.name, labels)
            base = {"probe": probe, "site": site, "metric": scorer.name, "n": int(members.size),
                    "n_pos": n_pos, "fraction": oof.fraction}
            if one_class and scorer.name in ("auc", "ba", "sensitivity", "specificity"):
                rows.append({**base, "estimate": np.nan, "ci_low": np.nan, "ci_high": np.nan,
                             "ci_method": "percentile"})
                if site != "all":
                    held_out.setdefault(scorer.name, []).append((np.nan, np.nan))
                continue
            est = estimate(scorer, target, oof.scores, boot_index, rows=members, alpha=alpha)
            if site != "all":
                held_out.setdefault(scorer.name, []).append((est.estimate, est.se ** 2))
            rows.append({**base, "estimate": est.estimate, "ci_low": est.ci_low,
                         "ci_high": est.ci_high, "ci_method": "percentile"})
            rows.append({**base, "estimate": est.estimate, "ci_low": est.bca_low,
                         "ci_high": est.bca_high, "ci_method": "bca"})
            if delong and scorer.name == "auc" and not one_class:
                mean_scores = oof.mean_scores[members]
                dl = delong_auc(site_labels, mean_scores, alpha)
                rows.append({**base, "estimate": dl.auc, "ci_low": dl.ci_low,
                             "ci_high": dl.ci_high, "ci_method": "delong"})
            # LOSO: a held-out site is one fold, no resampled-t interval to give
            if np.isfinite(n_train) and n_test > 0 and not (loso and site != "all"):
                in_site = np.zeros(sites.size, bool)
                in_site[members] = True
                fold_ids = np.where(in_site[None], oof.plan.fold_ids, -1)
                per_fold = score_folds(scorer, target, oof.scores, fold_ids, oof.plan.n_folds)
                shares = (None if scorer.threshold is None else predicted_share_folds(
                    oof.scores, fold_ids, scorer.threshold, oof.plan.n_folds))
                k = oof.plan.n_folds
                extra, floor = single_variance_terms(per_fold, shares, metric=scorer.name,
                                                     kind=kind, n=members.size, n_pos=n_pos,
                                                     n_folds=k)
                cal = corrected_resampled_interval(
                    per_fold, n_train=n_train, n_test=n_test, level=1 - alpha,
                    metric=scorer.name, kind=kind, n_folds=k,
                    bounds=METRIC_BOUNDS.get(scorer.name),
                    minority_per_fold=min(n_pos, members.size - n_pos) / k, single=True,
                    extra_variance=extra, variance_floor=floor,
                    predicted_minority_per_fold=predicted_minority_per_fold(
                        shares, n=members.size, n_folds=k))
                rows.append({**base, "estimate": cal.estimate, "ci_low": cal.ci_low,
                             "ci_high": cal.ci_high, "ci_method": DEFAULT_TEST})
        if not emit:
            del rows[group_start:]
    if loso:
        rows.extend(_loso_pooled_rows(rows, held_out, alpha))
    metrics = _finish_metrics(rows, 1 - alpha, n_train, oof.plan.protocol, n_sites)
    fold_rows = []
    for scorer in scorers:
        target = targets.get(scorer.name, labels)
        values = score_folds(scorer, target, oof.scores, oof.plan.fold_ids, oof.plan.n_folds)
        for r in range(values.shape[0]):
            for f in range(values.shape[1]):
                if np.isfinite(values[r, f]) or (oof.plan.fold_ids[r] == f).any():
                    fold_rows.append({"probe": probe, "metric": scorer.name, "repeat": r,
                                      "fold": f, "fold_name": oof.plan.fold_names[f],
                                      "value": values[r, f], "fraction": oof.fraction})
    return metrics, pd.DataFrame(fold_rows)


@dataclass(frozen=True, eq=False)
class ProbeResult:
    """Everything `neurofeat probe` reports for one backbone and task.

    Attributes
    ----------
    backbone, task, kind, protocol : str
    metrics : DataFrame
        Long metrics table (see :func:`evaluate_probe`), all probes and fractions.
    folds : DataFrame
        Per-fold values.
    predictions : DataFrame
        Out-of-fold predictions of the linear (or ridge) probe: patient_id, site,
        label, repeat, fold, score.
    fitted : DataFrame
        Per split: chosen C (or alpha), n_train, n_test.
    plan : FoldPlan
    """

    backbone: str
    task: str
    kind: str
    protocol: str
    metrics: pd.DataFrame
    folds: pd.DataFrame
    predictions: pd.DataFrame
    fitted: pd.DataFrame
    plan: FoldPlan
    params: dict = field(default_factory=dict)

    def headline(self, probe: str | None = None) -> pd.DataFrame:
        """Pooled rows of the main probe at fraction 1 (percentile and BCa CIs side by side)."""
        m = self.metrics
        probe = probe or ("ridge" if self.kind == "continuous" else "linear")
        m = m[(m["probe"] == probe) & (m["site"] == "all") & (m["fraction"] == 1.0)]
        return m.reset_index(drop=True)

    def summary(self) -> str:
        """A few lines: protocol, n, and AUC/BA with CIs."""
        head = self.headline()
        pct = head[head["primary"]] if "primary" in head else \
            head[head["ci_method"] == "percentile"]
        lines = [f"{self.backbone} on {self.task} ({self.kind}, protocol {self.protocol}): "
                 f"{self.plan.summary()}"]
        for _, row in pct.iterrows():
            lines.append(f"  {row['metric']:<12} {row['estimate']:.3f} "
                         f"[{row['ci_low']:.3f}, {row['ci_high']:.3f}]  n={row['n']} "
                         f"pos={row['n_pos']}")
        return "\n".join(lines)

    def to_frame(self) -> pd.DataFrame:
        """The long metrics table with backbone, task and protocol columns."""
        frame = self.metrics.copy()
        frame.insert(0, "backbone", self.backbone)
        frame.insert(1, "task", self.task)
        frame.insert(2, "protocol", self.protocol)
        return frame

    def to_dict(self) -> dict:
        """JSON-ready dict of every table."""
        def records(df: pd.DataFrame) -> list[dict]:
            return json_records(df)

        return {"backbone": self.backbone, "task": self.task, "kind": self.kind,
                "protocol": self.protocol, "params": self.params,
                "metrics": records(self.to_frame()), "folds": records(self.folds),
                "fitted": records(self.fitted), "predictions": records(self.predictions)}


def json_records(df: pd.DataFrame) -> list[dict]:
    """DataFrame rows as dicts with NaN -> None and numpy scalars -> Python."""
    out = []
    for rec in df.to_dict(orient="records"):
        clean = {}
        for k, v in rec.items():
            if isinstance(v, (np.floating, float)):
                v = None if not np.isfinite(v) else float(v)
            elif isinstance(v, np.integer):
                v = int(v)
            elif isinstance(v, np.bool_):
                v = bool(v)
            clean[k] = v
        out.append(clean)
    return out


def run_probe(X: np.ndarray, y: np.ndarray, *, patient_ids: np.ndarray, sites: np.ndarray,
              task: str, kind: str = "binary", threshold: float | None = None,
              backbone: str = "", protocol: str = "cv", n_splits: int = 5,
              n_repeats: int = 5, n_boot: int = 2000, seed: int = 0,
              fractions: Sequence[float] | None = DEFAULT_FRACTIONS, knn: bool = True,
              knn_neighbors: int = 15, linear_params: dict | None = None,
              on_split: Callable[[], None] | None = None) -> ProbeResult:
    """Linear (or ridge) probe + kNN probe + data-fraction curve on one embedding matrix.

    Parameters
    ----------
    X : ndarray, shape (n, d)
    y : ndarray, shape (n,)
        0/1 for binary tasks; the raw value for continuous tasks.
    patient_ids, sites : ndarray of str, shape (n,)
    task : str
        Task name (folds and bootstrap indices derive from it and ``seed``).
    kind : {'binary', 'continuous'}
    threshold : float, optional
        Continuous tasks: the label is positive when ``y >= threshold``.
    protocol : {'cv', 'loso', 'site'}
    fractions : sequence of float or None
        Data-fraction curve (cv protocol only); None or () skips it.
    knn : bool
        Also run the kNN probe.

    Returns
    -------
    ProbeResult
    """
    from neurofeat.analysis.probes import KNNProbe, LinearProbe, RidgeProbe

    X = np.asarray(X)
    y = np.asarray(y, dtype=float)
    sites = np.asarray(sites).astype(str)
    patient_ids = np.asarray(patient_ids).astype(str)
    if kind == "continuous":
        if threshold is None:
            raise ValueError(f"task {task!r} is continuous: give the threshold that binarises it")
        labels = y >= threshold
    elif kind == "binary":
        labels = y.astype(bool)
    else:
        raise ValueError(f"run_probe handles binary and continuous tasks, not {kind!r}")
    plan = make_plan(protocol, patient_ids, labels, sites, task=task, n_splits=n_splits,
                     n_repeats=n_repeats, seed=seed)
    linear_params = dict(linear_params or {})

    if kind == "binary":
        main_name, main_output, cut = "linear", "proba", 0.5
        main_factory = lambda: LinearProbe(**linear_params)  # noqa: E731
        main_y = labels
        scorers = binary_scorers(0.5)
        targets = None
    else:
        main_name, main_output, cut = "ridge", "predict", float(threshold)
        main_factory = RidgeProbe
        main_y = y
        scorers = binary_scorers(cut) + [SPEARMAN, MAE]
        targets = {"spearman": y, "mae": y}

    def evaluate(oof, name, scs, tg):
        return evaluate_probe(oof, labels, sites, scorers=scs, targets=tg, n_boot=n_boot,
                              seed=seed, probe=name,
                              kind=kind if name in ("linear", "ridge") else "binary")

    oof = out_of_fold(X, main_y, plan, main_factory, output=main_output, strata=labels,
                      on_split=on_split)
    metric_frames, fold_frames = [], []
    m, f = evaluate(oof, main_name, scorers, targets)
    metric_frames.append(m)
    fold_frames.append(f)
    predictions = oof.to_frame()
    predictions.insert(1, "site", np.tile(sites, plan.n_repeats)[
        (plan.fold_ids.reshape(-1) >= 0)])
    predictions.insert(2, "label", np.tile(y, plan.n_repeats)[(plan.fold_ids.reshape(-1) >= 0)])
    predictions["probe"] = main_name
    fitted = pd.DataFrame(list(oof.fitted_params)).assign(probe=main_name, fraction=1.0)

    if knn:
        knn_oof = out_of_fold(X, labels, plan, lambda: KNNProbe(knn_neighbors),
                              output="proba", strata=labels, on_split=on_split)
        m, f = evaluate(knn_oof, "knn", binary_scorers(0.5), None)
        metric_frames.append(m)
        fold_frames.append(f)

    fitted_frames = [fitted]
    if fractions and protocol == "cv":
        for fraction in fractions:
            if fraction >= 1.0:
                continue
            frac_oof = out_of_fold(X, main_y, plan, main_factory, output=main_output,
                                   fraction=float(fraction), strata=labels, on_split=on_split)
            m, f = evaluate_probe(frac_oof, labels, sites, scorers=scorers[:2], targets=targets,
                                  n_boot=n_boot, seed=seed, probe=main_name, per_site=False,
                                  delong=False, kind=kind)
            metric_frames.append(m)
            fold_frames.append(f)
            fitted_frames.append(pd.DataFrame(list(frac_oof.fitted_params))
                                 .assign(probe=main_name, fraction=float(fraction)))
    params = {"protocol": protocol, "n_splits": n_splits, "n_repeats": n_repeats,
              "n_boot": n_boot, "seed": seed, "threshold": cut, "kind": kind,
              "fractions": list(fractions or []), "knn": knn, "knn_neighbors": knn_neighbors,
              "linear_params": {k: (list(v) if isinstance(v, (tuple, np.ndarray)) else v)
                                for k, v in linear_params.items()}}
    return ProbeResult(backbone, task, kind, protocol, pd.concat(metric_frames, ignore_index=True),
                       pd.concat(fold_frames, ignore_index=True), predictions,
                       pd.concat(fitted_frames, ignore_index=True), plan, params)
