"""Out-of-fold risk scores under a fold plan (cv, leave-one-site-out, per-site CV).

The fold plan comes from :mod:`neurofeat.analysis.folds` and depends only on the task,
the seed and the patient ids (stratified by event), so every backbone gets the same
folds and per-patient, per-fold results pair across backbones. For each split the
model is fitted on the training fold only (standardisation included), and for the
test fold we keep: the risk score, the high/low group from the TRAINING fold's median
risk, the survival curve on a time grid (Breslow), and Harrell's C of the fold.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from threadpoolctl import threadpool_limits

from neurofeat.analysis.folds import (
    FoldError,
    FoldPlan,
    leave_one_site_out_plan,
    survival_kfold_plan,
)
from neurofeat.analysis.survival.risk_groups import RISK_GROUP_LABELS, median_split
from neurofeat.analysis.survival.validation import SurvivalDataError, check_survival_data

__all__ = ["SurvivalCVResult", "survival_fold_plan", "cross_validated_risk", "default_grid"]

PROTOCOLS = ("cv", "loso", "site")


def default_grid(time: np.ndarray, n_points: int = 100) -> np.ndarray:
    """Time grid for survival curves: ``n_points`` between the 1st and 99th percentile."""
    low, high = np.quantile(np.asarray(time, np.float64), [0.01, 0.99])
    return np.linspace(low, high, n_points)


def _check_site_events(sites: np.ndarray, event: np.ndarray, protocol: str) -> None:
    bad = [f"{s} ({int((sites == s).sum())} patients)" for s in np.unique(sites)
           if not event[sites == s].any()]
    if bad:
        raise SurvivalDataError(
            f"protocol {protocol}: no events at site(s) " + "; ".join(bad) + ". A c-index "
            "cannot be computed there; use --protocol cv, or exclude the site.")


def survival_fold_plan(patient_ids: np.ndarray, event: np.ndarray, sites: np.ndarray, *,
                       protocol: str = "cv", n_splits: int = 5, n_repeats: int = 5,
                       task: str = "os", seed: int = 0) -> FoldPlan:
    """Fold plan for a survival task, stratified by event.

    Parameters
    ----------
    patient_ids, sites : ndarray of str, shape (n,)
    event : ndarray of bool, shape (n,)
    protocol : {'cv', 'loso', 'site'}
        ``cv``: repeated k-fold over everyone; ``loso``: train on the other sites, test on
        each held-out site; ``site``: repeated k-fold within each site (train and test in
        the same site).
    n_splits, n_repeats, task, seed :
        As in :func:`neurofeat.analysis.folds.survival_kfold_plan`.

    Returns
    -------
    FoldPlan

    Raises
    ------
    SurvivalDataError
        No events overall, in a site (loso/site), or fewer events than folds (says how
        many and suggests fewer folds).
    """
    patient_ids = np.asarray(patient_ids).astype(str)
    event = np.asarray(event).astype(bool)
    sites = np.asarray(sites).astype(str)
    try:
        if protocol == "cv":
            return survival_kfold_plan(patient_ids, event, n_splits=n_splits,
                                       n_repeats=n_repeats, task=task, seed=seed)
        if protocol == "loso":
            _check_site_events(sites, event, protocol)
            return leave_one_site_out_plan(patient_ids, sites, task=task, seed=seed)
        if protocol == "site":
            _check_site_events(sites, event, protocol)
            site_names, codes = np.unique(sites, return_inverse=True)
            fold_ids = np.empty((n_repeats, patient_ids.size), dtype=np.int64)
            for s, site in enumerate(site_names):
                rows = np.flatnonzero(codes == s)
                try:
                    sub = survival_kfold_plan(patient_ids[rows], event[rows], n_splits=n_splits,
                                              n_repeats=n_repeats, task=f"{task}@{site}",
                                              seed=seed)
                except FoldError as err:
                    raise SurvivalDataError(f"site {site}: {err}") from None
                fold_ids[:, rows] = s * n_splits + sub.fold_ids
            names = tuple(f"{site}/fold{f}" for site in site_names for f in range(n_splits))
            return FoldPlan(patient_ids, fold_ids, names, "site", task, int(seed),
                            codes.astype(np.int64), tuple(site_names.tolist()))
    except FoldError as err:
        raise SurvivalDataError(str(err)) from None
    raise ValueError(f"unknown protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}")


@dataclass(frozen=True, eq=False)
class SurvivalCVResult:
    """Out-of-fold predictions of one backbone under one fold plan.

    Attributes
    ----------
    patient_ids, sites : ndarray of str, shape (n,)
    time : ndarray, shape (n,)
    event : ndarray of bool, shape (n,)
    risk : ndarray, shape (n_repeats, n)
        Out-of-fold risk score (NaN where the patient was not tested in that repeat).
    high_risk : ndarray of int8, shape (n_repeats, n)
        1 = above its training fold's median risk, 0 = not, -1 = not tested.
    grid : ndarray, shape (n_grid,)
    survival : ndarray, shape (n_repeats, n, n_grid)
        Out-of-fold survival curves S(grid | x).
    splits : DataFrame
        One row per split: repeat, fold, fold_name, n_train, n_test, n_events_test,
        threshold (training median risk), harrell_c (test fold).
    plan : FoldPlan
    model : str
    backbone : str
    n_features : int
        Columns of the embedding the model was fitted on (0: not recorded).
    """

    patient_ids: np.ndarray
    sites: np.ndarray
    time: np.ndarray
    event: np.ndarray
    risk: np.ndarray
    high_risk: np.ndarray
    grid: np.ndarray
    survival: np.ndarray
    splits: pd.DataFrame
    plan: FoldPlan
    model: str
    backbone: str = ""
    n_features: int = 0

    @property
    def n_repeats(self) -> int:
        """Repeats of the fold plan."""
        return int(self.risk.shape[0])

    def summary(self) -> str:
        """One line: model, protocol, splits, mean fold c-index."""
        c = self.splits["harrell_c"]
        return (f"{self.backbone or 'features'} / {self.model}: {self.plan.summary()}; "
                f"fold Harrell C {np.nanmean(c):.3f} ± {np.nanstd(c, ddof=1):.3f} "
                f"over {c.notna().sum()} folds")

    def to_frame(self) -> pd.DataFrame:
        """Long table of out-of-fold predictions (one row per patient and repeat)."""
        rows = []
        for r in range(self.n_repeats):
            tested = self.high_risk[r] >= 0
            rows.append(pd.DataFrame({
                "patient_id": self.patient_ids[tested], "site": self.sites[tested],
                "repeat": r, "fold": self.plan.fold_ids[r][tested],
                "time": self.time[tested], "event": self.event[tested],
                "risk": self.risk[r][tested],
                "risk_group": np.where(self.high_risk[r][tested] == 1, RISK_GROUP_LABELS[1],
                                       RISK_GROUP_LABELS[0]),
            }))
        return pd.concat(rows, ignore_index=True)


def _fit_split(split, X, y, time, event, model, grid, risk, high, surv, rows) -> None:
    """Fit one training fold, fill the test fold's risk/group/survival, append a row."""
    from sksurv.metrics import concordance_index_censored

    where = f"fold {split.name} of repeat {split.repeat}"
    if not event[split.test].any():
        raise SurvivalDataError(
            f"{where} has no events among its {split.test.size} test patients; its "
            "c-index is undefined. Use fewer folds (--folds), or --protocol cv.")
    if not event[split.train].any():
        raise SurvivalDataError(
            f"{where}: the training fold ({split.train.size} patients) has no events; "
            "a Cox model cannot be fitted. Use fewer folds or more sites.")
    fitted = clone(model).fit(X[split.train], y[split.train])
    test_risk = fitted.predict(X[split.test])
    train_risk = fitted.predict(X[split.train])
    groups = median_split(train_risk, test_risk)
    risk[split.repeat, split.test] = test_risk
    high[split.repeat, split.test] = groups.high_risk.astype(np.int8)
    surv[split.repeat, split.test] = fitted.predict_survival(X[split.test], grid)
    try:
        c_fold = concordance_index_censored(event[split.test], time[split.test],
                                            test_risk)[0]
    except Exception:  # noqa: BLE001 - no comparable pair in a tiny fold
        c_fold = np.nan
    rows.append({"repeat": split.repeat, "fold": split.fold, "fold_name": split.name,
                 "n_train": split.train.size, "n_test": split.test.size,
                 "n_events_test": int(event[split.test].sum()),
                 "threshold": groups.threshold, "harrell_c": float(c_fold)})


def cross_validated_risk(
    X: np.ndarray,
    time: np.ndarray,
    event: np.ndarray,
    plan: FoldPlan,
    *,
    model: BaseEstimator,
    model_name: str = "",
    sites: np.ndarray | None = None,
    grid: np.ndarray | None = None,
    backbone: str = "",
    progress: Callable[[int], None] | None = None,
) -> SurvivalCVResult:
    """Fit ``model`` on every training fold and score its test fold.

    Parameters
    ----------
    X : ndarray, shape (n, n_features)
        Rows aligned with ``plan.patient_ids``.
    time, event : ndarray, shape (n,)
    plan : FoldPlan
    model : estimator
        Unfitted survival model with ``fit(X, y_structured)``, ``predict`` and
        ``predict_survival(X, times)`` (see :mod:`neurofeat.analysis.survival.cox`);
        cloned for every split.
    model_name : str
    sites : ndarray of str, shape (n,), optional
    grid : ndarray, optional
        Times for the survival curves (default :func:`default_grid`).
    backbone : str
    progress : callable, optional
        Called with 1 after each split (for a progress bar).

    Returns
    -------
    SurvivalCVResult

    Raises
    ------
    SurvivalDataError
        A training or test fold without events (named, with the fix).
    """
    from sksurv.util import Surv

    time, event = check_survival_data(time, event, patient_ids=plan.patient_ids)
    X = np.asarray(X)
    n = time.size
    if X.shape[0] != n or plan.patient_ids.size != n:
        raise ValueError(f"X has {X.shape[0]} rows, time {n}, plan {plan.patient_ids.size}")
    sites = np.full(n, "all") if sites is None else np.asarray(sites).astype(str)
    grid = default_grid(time) if grid is None else np.asarray(grid, np.float64)
    y = Surv.from_arrays(event, time)
    risk = np.full((plan.n_repeats, n), np.nan)
    high = np.full((plan.n_repeats, n), -1, dtype=np.int8)
    surv = np.full((plan.n_repeats, n, grid.size), np.nan)
    rows = []
    # one BLAS thread: small LAPACK calls (eigh, Cox Newton steps) are 10-100x slower
    # when OpenBLAS threads compete on a busy machine
    with threadpool_limits(limits=1, user_api="blas"):
        for split in plan.splits():
            _fit_split(split, X, y, time, event, model, grid, risk, high, surv, rows)
            if progress is not None:
                progress(1)
    return SurvivalCVResult(
        patient_ids=plan.patient_ids, sites=sites, time=time, event=event, risk=risk,
        high_risk=high, grid=grid, survival=surv, splits=pd.DataFrame(rows), plan=plan,
        model=model_name or type(model).__name__, backbone=backbone,
        n_features=int(X.shape[1]))
