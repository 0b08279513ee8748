"""The ``survival`` run: a Cox model on one backbone's embeddings -> the store.

Out-of-fold risk scores (coxnet or PCA + Cox), Harrell's and Uno's c-index with
bootstrap intervals, time-dependent AUC, integrated Brier score and median-split
Kaplan–Meier curves with log-rank tests, pooled and per site; optionally KM curves by
a clinical label (``by``) and risk groups within a subgroup (``within``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from neurofeat.analysis.survival import (
    DEFAULT_PERMUTATIONS,
    SurvivalCVResult,
    SurvivalDataError,
    SurvivalEvaluation,
    cross_validated_risk,
    evaluate_survival,
    kaplan_meier,
    logrank_test,
    make_cox_model,
    permutation_logrank_test,
    site_subsets,
    survival_fold_plan,
)
from neurofeat.analysis.survival.evaluation import LOGRANK_CAVEAT
from neurofeat.analysis.survival.permutation import DEFAULT_STOP_AFTER, is_permutation_method
from neurofeat.analysis.survival.plots import plot_km
from neurofeat.runs.inputs import clinical_column, load_survival_data
from neurofeat.runs.tables import inference_columns, provenance_columns, shape
from neurofeat.store import RunInfo, Store, TaskData, write_run
from neurofeat.tasks import get_task

__all__ = ["SURVIVAL_PROTOCOLS", "SurvivalRun", "survival_run", "km_by_label",
           "is_permutation_method"]

SURVIVAL_PROTOCOLS: tuple[str, ...] = ("cv", "loso", "site")


@dataclass(frozen=True, eq=False)
class SurvivalRun:
    """A finished survival run.

    Attributes
    ----------
    backbone, model, protocol : str
    data : TaskData
        The cohort analysed (time in ``y``, ``event``).
    cv : SurvivalCVResult
        Out-of-fold risks, risk groups and the fold plan.
    evaluation : SurvivalEvaluation
        c-indices, time-dependent AUC, IBS, KM curves and log-rank tests.
    tables : dict name -> DataFrame
        Exactly the tables written to ``runs/<run_id>/`` (``metrics`` -> results view).
    figures : tuple of str
        Names of the stored figures (PNG + SVG).
    params : dict
    info : RunInfo or None
    """

    backbone: str
    model: str
    protocol: str
    data: TaskData
    cv: SurvivalCVResult
    evaluation: SurvivalEvaluation
    tables: dict[str, pd.DataFrame]
    figures: tuple[str, ...]
    params: dict
    info: RunInfo | None

    @property
    def metrics(self) -> pd.DataFrame:
        """The stored ``metrics`` table."""
        return self.tables["metrics"]

    @property
    def tau(self) -> float:
        """Truncation time of Uno's C (days)."""
        return float(self.evaluation.tau)


def km_by_label(time: np.ndarray, event: np.ndarray, values: np.ndarray,
                label: str) -> tuple[list, Any]:
    """KM curves and log-rank test of patients grouped by ``values`` (unknown dropped).

    Raises
    ------
    SurvivalDataError
        ``values`` is unknown for every patient.
    """
    known = ~pd.isna(values)
    if known.sum() == 0:
        raise SurvivalDataError(f"'{label}' is unknown for every patient of the cohort")
    groups = np.array([f"{label}={v}" for v in values[known]])
    t, e = time[known], event[known]
    curves = [kaplan_meier(t[groups == g], e[groups == g], label=g) for g in np.unique(groups)]
    test = logrank_test(t, e, groups) if len(curves) > 1 else None
    return curves, test


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in str(name)).strip("_").lower() or "x"


def _extra_row(metric: str, estimate: float, n: int, n_pos: int, estimand: str, *,
               ci_method: str = "", primary: bool = True) -> dict:
    nan = float("nan")
    return {"site": "all", "metric": metric, "estimate": float(estimate), "ci_low": nan,
            "ci_high": nan, "bca_low": nan, "bca_high": nan, "ci_method": ci_method, "n": n,
            "n_pos": n_pos, "tau": nan, "horizon": nan, "primary": primary,
            "estimand": estimand, "rare": n_pos < 30, "warning": ""}


def survival_run(store: Store, backbone: str, task: str = "os", *, model: str = "coxnet",
                 protocol: str = "cv", site: str | None = None, n_splits: int = 5,
                 n_repeats: int = 5, n_boot: int = 1000, seed: int = 0,
                 tau: float | None = None, by: str | None = None, within: str | None = None,
                 n_components: int = 10, l1_ratio: float = 0.5, min_patients: int = 20,
                 n_permutations: int = DEFAULT_PERMUTATIONS,
                 stop_after: int | None = DEFAULT_STOP_AFTER, n_jobs: int = 1,
                 write: bool = True, on_start: Callable[[int], None] | None = None,
                 progress: Callable[[int], None] | None = None) -> SurvivalRun:
    """Fit the Cox model of one backbone on a survival task and store the run.

    Parameters
    ----------
    store : Store
    backbone, task : str
    model : {'coxnet', 'pca-cox'}
    protocol : {'cv', 'loso', 'site'}
    site : str, optional
        Analyse one site only (not with ``loso``).
    n_splits, n_repeats, n_boot, seed : CV and bootstrap settings.
    tau : float, optional
        Truncation time of Uno's C (default: 90th percentile of follow-up).
    by : str, optional
        Clinical column: KM curves and log-rank test by its values.
    within : str, optional
        Binary clinical column: risk-group KM curves within the patients where it is true.
    n_components, l1_ratio : model settings (pca-cox, coxnet).
    min_patients : int
        Refuse smaller cohorts.
    n_permutations : int
        Permutations of the log-rank test of the risk groups (outcomes permuted within
        site, every fold of the first repeat refitted;
        :mod:`~neurofeat.analysis.survival.permutation`);
        its p is the primary ``logrank_p`` row, pooled and per site (and of
        ``within``). 0 = off: only the published (asymptotic, not calibrated) p.
    stop_after : int or None
        Besag-Clifford sequential stopping of the permutations (exact too; None or 0:
        draw all ``n_permutations``).
    n_jobs : int
        Worker processes for the permutations (the result does not depend on it).
    write : bool
    on_start, progress : callables, optional
        Progress hooks: the number of fits, then ``progress(k)`` after k more fits.

    Raises
    ------
    ValueError
        Bad protocol/site combination, unknown backbone/site/column, too few patients,
        bad survival times (:class:`SurvivalDataError` is a ValueError).
    """
    if protocol not in SURVIVAL_PROTOCOLS:
        raise ValueError(f"protocol must be cv, loso or site, got '{protocol}'")
    if site is not None and protocol == "loso":
        raise ValueError("protocol loso holds out every site in turn; drop --site, or use "
                         "--protocol site --site SITE")
    task_def = get_task(task)
    model_params = ({"n_components": n_components} if model == "pca-cox"
                    else {"l1_ratio": l1_ratio, "random_state": seed})
    estimator = make_cox_model(model, **model_params)
    data = load_survival_data(store, backbone, task_def, site=site, min_patients=min_patients)
    time, event = data.y, np.asarray(data.event, bool)
    plan_protocol = "cv" if (site is not None and protocol == "site") else protocol
    plan = survival_fold_plan(data.patient_ids, event, data.sites, protocol=plan_protocol,
                              n_splits=n_splits, n_repeats=n_repeats, task=task_def.name,
                              seed=seed)
    if n_permutations < 0:
        raise ValueError(f"n_permutations must be >= 0 (0 = no permutation test), got "
                         f"{n_permutations}")
    within_rows = None
    if within is not None:
        values = clinical_column(store, within, data.patient_ids)
        inside = np.array([v is True or v == 1 for v in values])
        if inside.sum() < 2:
            raise SurvivalDataError(f"only {int(inside.sum())} patient(s) with {within} = true "
                                    "in the cohort; nothing to plot")
        within_rows = np.flatnonzero(inside)
    fits_per_permutation = int(sum(1 for s in plan.splits() if s.repeat == 0))
    n_perm_tests = 0 if n_permutations == 0 else (
        1 + int(within_rows is not None and bool(event[within_rows].any())))
    if on_start is not None:
        on_start(sum(1 for _ in plan.splits())
                 + n_perm_tests * (n_permutations + 1) * fits_per_permutation)
    cv = cross_validated_risk(data.X, time, event, plan, model=estimator, model_name=model,
                              sites=data.sites, backbone=backbone, progress=progress)
    perm_progress = (None if progress is None
                     else (lambda k: progress(k * fits_per_permutation)))
    perm_settings = dict(patient_ids=data.patient_ids, model=estimator, sites=data.sites,
                         protocol=plan_protocol, n_splits=n_splits, task=task_def.name,
                         seed=seed, n_permutations=n_permutations,
                         stop_after=stop_after, n_jobs=n_jobs,
                         progress=perm_progress)
    permutation = None
    if n_permutations > 0:
        permutation = permutation_logrank_test(data.X, time, event,
                                               subsets=site_subsets(data.sites, event),
                                               **perm_settings)
    ev = evaluate_survival(cv, tau=tau, n_boot=n_boot, seed=seed, permutation=permutation)

    def km_title(name: str, result) -> str:
        p = "" if result is None or name not in result.p_value else (
            f"; permutation p = {result.p_value[name]:.3g} (B = {result.n_permutations})")
        return f"{backbone} / {task_def.name}: risk groups ({name}){p}"

    figures = {f"km_{_slug(name)}": plot_km(
        curves, logrank=ev.logrank.get(name), title=km_title(name, permutation))
        for name, curves in ev.km.items()}
    extra_rows: list[dict] = []
    km_by_frame = None
    if by is not None:
        curves, test = km_by_label(time, event, clinical_column(store, by, data.patient_ids), by)
        figures[f"km_by_{_slug(by)}"] = plot_km(curves, logrank=test,
                                               title=f"{task_def.name} by {by}")
        km_by_frame = pd.concat([c.to_frame() for c in curves], ignore_index=True)
        if test is not None:
            extra_rows.append(_extra_row(f"logrank_p_by_{by}", test.p_value, data.n,
                                         int(event.sum()),
                                         f"log-rank p of survival by {by} (groups fixed)"))
    if within_rows is not None:
        inside = np.zeros(time.size, bool)
        inside[within_rows] = True
        groups = np.where(cv.high_risk[0] == 1, "high risk", "low risk")
        curves, test = km_by_label(time[inside], event[inside], groups[inside], "risk")
        within_perm = None
        if test is not None and n_perm_tests == 2:
            # CV risk groups again, so a permutation p; outcomes permuted within site x
            # the subgroup label, since survival may differ between the subgroup and the
            # rest (pooled across them the outcomes are not exchangeable)
            strata = np.char.add(np.asarray(data.sites).astype(str),
                                 np.where(inside, f"|{within}", f"|not {within}"))
            within_perm = permutation_logrank_test(
                data.X, time, event, strata=strata, strata_name=f"site x {within}",
                subsets={"within": within_rows}, **perm_settings)
        title = f"risk groups within {within} = true"
        if within_perm is not None:
            title += (f"; permutation p = {within_perm.p_value['within']:.3g} "
                      f"(B = {within_perm.n_permutations})")
        figures[f"km_within_{_slug(within)}"] = plot_km(curves, logrank=test, title=title)
        if test is not None:
            what = f"log-rank p of the cross-validated risk groups within {within}"
            n_in, ev_in = int(inside.sum()), int(event[inside].sum())
            if within_perm is not None:
                extra_rows.append(_extra_row(
                    f"logrank_p_within_{within}", within_perm.p_value["within"], n_in, ev_in,
                    f"{what}, against the permutation null",
                    ci_method=within_perm.method))
            extra_rows.append(_extra_row(
                f"logrank_p_within_{within}", test.p_value, n_in, ev_in, what,
                ci_method=f"chi-squared; {LOGRANK_CAVEAT}", primary=within_perm is None))
    metrics = ev.metrics
    if extra_rows:
        metrics = pd.concat([metrics, pd.DataFrame(extra_rows)], ignore_index=True)

    provenance = provenance_columns(seed, data.checkpoint_sha256, data.preprocess_sha256)
    keys = {"backbone": backbone, "task": task_def.name, "model": model}
    tables = {
        "metrics": shape(inference_columns(metrics, "survival", "metrics"), "survival",
                         "metrics", command="survival", backbone=backbone,
                         perturbation="none", task=task_def.name,
                         protocol=protocol if site is None else f"{protocol}:{site}",
                         probe=None, model=model, fraction=None,
                         cohort_sites=site or "all", **provenance),
        "predictions": shape(cv.to_frame(), "survival", "predictions", **keys, **provenance),
        "folds": shape(cv.splits, "survival", "folds", **keys, **provenance),
        "km": shape(pd.concat([c.to_frame().assign(site=name) for name, curves in ev.km.items()
                               for c in curves], ignore_index=True),
                    "survival", "km", **keys, **provenance),
    }
    if km_by_frame is not None:
        tables["km_by"] = shape(km_by_frame, "survival", "km_by", label=by, **keys, **provenance)
    params = {"backbone": backbone, "task": task_def.name, "model": model,
              "model_params": model_params, "protocol": protocol, "site": site,
              "folds": n_splits, "repeats": n_repeats, "bootstrap": n_boot, "seed": seed,
              "permutations": n_permutations, "stop_after": stop_after or 0,
              "permutations_drawn": None if permutation is None else permutation.n_drawn,
              "tau": ev.tau, "by": by, "within": within,
              "checkpoint_sha256": data.checkpoint_sha256,
              "preprocess_sha256": data.preprocess_sha256, "n_patients": data.n,
              "n_events": int(event.sum()), "n_missing_embedding": data.n_missing_embedding}
    info = (write_run(store, "survival", tables, params=params, figures=figures)
            if write else None)
    return SurvivalRun(backbone=backbone, model=model, protocol=protocol, data=data, cv=cv,
                       evaluation=ev, tables=tables, figures=tuple(sorted(figures)),
                       params=params, info=info)
