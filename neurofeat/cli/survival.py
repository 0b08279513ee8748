"""CLI: `neurofeat survival` — Cox models on stored embeddings, c-indices, KM/log-rank.

Parses options, reads the task's patients from the store, calls the pure functions of
:mod:`neurofeat.analysis.survival`, prints rich tables (or JSON) and writes metrics,
predictions and Kaplan–Meier figures to the store with ``write_run``.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from neurofeat.cli.common import StoreOption, fail, open_store, print_frame, user_errors

__all__ = ["register", "load_survival_data", "km_by_label"]

_EXAMPLE = (
    "Example: neurofeat survival --backbone dino_dro --task os --model coxnet "
    "--protocol cv --bootstrap 1000 --by mgmt"
)


def load_survival_data(store: Any, backbone: str, task_name: str, *, site: str | None = None,
                       min_patients: int = 20) -> Any:
    """Read X, time, event of a survival task (optionally one site) and validate them.

    Returns the store's TaskData (rows sorted by patient id), restricted to ``site``.

    Raises
    ------
    ValueError
        Not a survival task, unknown site, too few patients, bad times.
    """
    import dataclasses

    import numpy as np

    from neurofeat.analysis.survival import check_min_patients, check_survival_data
    from neurofeat.store import read_xy
    from neurofeat.tasks import get_task

    task = get_task(task_name)
    if task.kind != "survival":
        raise ValueError(f"task '{task.name}' is a {task.kind} task; `neurofeat survival` "
                         "needs a survival task such as 'os' (see `neurofeat tasks`)")
    data = read_xy(store, backbone, task)
    if site is not None:
        known = sorted(set(data.sites.tolist()))
        if site not in known:
            raise ValueError(f"site '{site}' has no patients in task '{task.name}' for "
                             f"backbone '{backbone}'; sites: {', '.join(known) or 'none'}")
        keep = data.sites == site
        data = dataclasses.replace(data, X=data.X[keep], y=data.y[keep],
                                   event=data.event[keep], patient_ids=data.patient_ids[keep],
                                   sites=data.sites[keep])
    what = f"task '{task.name}' (cohort: {task.cohort or 'everyone'})" + \
        (f" at site {site}" if site else "") + f" with backbone '{backbone}'"
    check_min_patients(data.n, min_patients=min_patients, what=what)
    check_survival_data(data.y, np.asarray(data.event, bool), patient_ids=data.patient_ids,
                        what=what)
    return data


def _clinical_column(store: Any, column: str, patient_ids: Any) -> Any:
    """Values of a clinical-view column for the given patients (None where unknown)."""
    import pandas as pd

    from neurofeat.store import connect

    con = connect(store)
    try:
        columns = [row[0] for row in con.sql("DESCRIBE clinical").fetchall()]
        if column not in columns:
            import difflib

            guess = difflib.get_close_matches(column, columns, n=1)
            hint = f" Did you mean '{guess[0]}'?" if guess else ""
            raise ValueError(f"'{column}' is not a column of the clinical view.{hint} "
                             f"Columns: {', '.join(columns)}")
        frame = con.sql(f'SELECT patient_id, "{column}" AS value FROM clinical').df()
    finally:
        con.close()
    return pd.Series(frame["value"].to_numpy(), index=frame["patient_id"].astype(str)) \
        .reindex(pd.Index(patient_ids)).to_numpy()


def km_by_label(time: Any, event: Any, values: Any, label: str) -> tuple[list, Any]:
    """KM curves and log-rank test of patients grouped by ``values`` (unknown dropped)."""
    import numpy as np
    import pandas as pd

    from neurofeat.analysis.survival import SurvivalDataError, kaplan_meier, logrank_test

    known = ~pd.isna(values)
    if known.sum() == 0:
        raise SurvivalDataError(f"'{label}' is unknown for every patient of the cohort")
    groups = np.array([f"{label}={v}" for v in values[known]])
    t, e = time[known], event[known]
    curves = [kaplan_meier(t[groups == g], e[groups == g], label=g) for g in np.unique(groups)]
    test = logrank_test(t, e, groups) if len(curves) > 1 else None
    return curves, test


def register(app: typer.Typer) -> None:
    """Add the ``survival`` command to *app*."""

    @app.command("survival", help="Cox model on stored embeddings: out-of-fold risk, Harrell "
                 "and Uno c-index with bootstrap CIs, time-dependent AUC, IBS, and "
                 "median-split Kaplan–Meier curves with log-rank tests, pooled and per "
                 f"site.\n\n{_EXAMPLE}")
    def survival(
        backbone: Annotated[str, typer.Option("--backbone", "-b", help="Backbone in the store.")],
        task: Annotated[str, typer.Option(help="Survival task.")] = "os",
        model: Annotated[str, typer.Option(help="coxnet (elastic-net Cox, penalty by inner "
                                           "CV) or pca-cox.")] = "coxnet",
        protocol: Annotated[str, typer.Option(help="cv (repeated k-fold), loso (leave one "
                                              "site out) or site (CV within each site).")] = "cv",
        site: Annotated[str | None, typer.Option(help="Analyse one site only.")] = None,
        folds: Annotated[int, typer.Option(help="Folds per repeat.")] = 5,
        repeats: Annotated[int, typer.Option(help="CV repeats.")] = 5,
        bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for CIs.")] = 1000,
        seed: Annotated[int, typer.Option(help="Seed of folds and resamples.")] = 0,
        tau: Annotated[float | None, typer.Option(help="Truncation time of Uno's C in days "
                                                  "(default: 90th percentile of "
                                                  "follow-up).")] = None,
        by: Annotated[str | None, typer.Option(help="Also plot KM curves stratified by this "
                                               "clinical column (e.g. mgmt).")] = None,
        within: Annotated[str | None, typer.Option(help="Also plot risk-group KM curves "
                                                   "within patients where this binary "
                                                   "column is true (e.g. cdkn2a).")] = None,
        n_components: Annotated[int, typer.Option(help="PCA components (pca-cox).")] = 10,
        l1_ratio: Annotated[float, typer.Option(help="Elastic-net mixing (coxnet).")] = 0.5,
        min_patients: Annotated[int, typer.Option(help="Refuse cohorts smaller than "
                                                  "this.")] = 20,
        as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON.")] = False,
        store_path: StoreOption = None,
    ) -> None:
        import json

        import numpy as np
        import pandas as pd

        from neurofeat.analysis.survival import (
            SurvivalDataError,
            cross_validated_risk,
            evaluate_survival,
            make_cox_model,
            survival_fold_plan,
        )
        from neurofeat.analysis.survival.plots import plot_km
        from neurofeat.store import write_run

        if protocol not in ("cv", "loso", "site"):
            fail(f"--protocol must be cv, loso or site, got '{protocol}'")
        if site is not None and protocol == "loso":
            fail("--protocol loso holds out every site in turn; drop --site, or use "
                 "--protocol site --site SITE")
        store = open_store(store_path)
        with user_errors(SurvivalDataError):
            if backbone not in store.backbones():
                import difflib

                guess = difflib.get_close_matches(backbone, store.backbones(), n=1)
                hint = f" Did you mean '{guess[0]}'?" if guess else ""
                raise ValueError(f"unknown backbone '{backbone}'.{hint} Backbones in the "
                                 f"store: {', '.join(store.backbones()) or 'none'}")
            params = ({"n_components": n_components} if model == "pca-cox"
                      else {"l1_ratio": l1_ratio, "random_state": seed})
            estimator = make_cox_model(model, **params)
            data = load_survival_data(store, backbone, task, site=site,
                                      min_patients=min_patients)
            time, event = data.y, np.asarray(data.event, bool)
            plan_protocol = "cv" if (site is not None and protocol == "site") else protocol
            plan = survival_fold_plan(data.patient_ids, event, data.sites,
                                      protocol=plan_protocol, n_splits=folds,
                                      n_repeats=repeats, task=data.task.name, seed=seed)
            n_splits_total = sum(1 for _ in plan.splits())
            cv = _run_with_progress(
                lambda progress: cross_validated_risk(
                    data.X, time, event, plan, model=estimator, model_name=model,
                    sites=data.sites, backbone=backbone, progress=progress),
                total=n_splits_total, label=f"{backbone}: fitting {model}", quiet=as_json)
            ev = evaluate_survival(cv, tau=tau, n_boot=bootstrap, seed=seed)
            figures = {}
            for name, curves in ev.km.items():
                figures[f"km_{_slug(name)}"] = plot_km(
                    curves, logrank=ev.logrank.get(name),
                    title=f"{backbone} / {data.task.name}: risk groups ({name})")
            extra_tables = {}
            if by is not None:
                values = _clinical_column(store, by, data.patient_ids)
                curves, test = km_by_label(time, event, values, by)
                figures[f"km_by_{_slug(by)}"] = plot_km(curves, logrank=test,
                                                       title=f"{data.task.name} by {by}")
                extra_tables["km_by"] = pd.concat([c.to_frame() for c in curves])
                if test is not None:
                    ev.metrics.loc[len(ev.metrics)] = _extra_row(
                        "all", f"logrank_p_by_{by}", test.p_value, data.n, int(event.sum()))
            if within is not None:
                values = _clinical_column(store, within, data.patient_ids)
                inside = np.array([v is True or v == 1 for v in values])
                if inside.sum() < 2:
                    raise SurvivalDataError(f"only {int(inside.sum())} patient(s) with "
                                            f"{within} = true in the cohort; nothing to plot")
                groups = np.where(cv.high_risk[0] == 1, "high risk", "low risk")
                curves, test = km_by_label(time[inside], event[inside], groups[inside],
                                           "risk")
                figures[f"km_within_{_slug(within)}"] = plot_km(
                    curves, logrank=test, title=f"risk groups within {within} = true")
                if test is not None:
                    ev.metrics.loc[len(ev.metrics)] = _extra_row(
                        "all", f"logrank_p_within_{within}", test.p_value,
                        int(inside.sum()), int(event[inside].sum()))
        metrics = ev.metrics.assign(
            command="survival", backbone=backbone, perturbation="none",
            task=data.task.name, protocol=protocol if site is None else f"{protocol}:{site}",
            seed=seed, model=model, checkpoint_sha256=data.checkpoint_sha256,
            preprocess_sha256=data.preprocess_sha256)
        run_params = {"backbone": backbone, "task": data.task.name, "model": model,
                      "model_params": params, "protocol": protocol, "site": site,
                      "folds": folds, "repeats": repeats, "bootstrap": bootstrap, "seed": seed,
                      "tau": ev.tau, "by": by, "within": within,
                      "checkpoint_sha256": data.checkpoint_sha256,
                      "preprocess_sha256": data.preprocess_sha256,
                      "n_patients": data.n, "n_events": int(event.sum()),
                      "n_missing_embedding": data.n_missing_embedding}
        provenance = {"backbone": backbone, "task": data.task.name, "model": model,
                      "seed": seed, "checkpoint_sha256": data.checkpoint_sha256,
                      "preprocess_sha256": data.preprocess_sha256}
        km_frame = pd.concat([c.to_frame().assign(site=name) for name, curves in ev.km.items()
                              for c in curves], ignore_index=True)
        with user_errors():
            run = write_run(store, "survival",
                            {"metrics": metrics,
                             "predictions": cv.to_frame().assign(**provenance),
                             "folds": cv.splits.assign(**provenance),
                             "km": km_frame.assign(**provenance), **extra_tables},
                            params=run_params, figures=figures)
        if as_json:
            payload = {"run_id": run.run_id, "path": str(run.path), "params": run_params,
                       "metrics": json.loads(metrics.to_json(orient="records",
                                                             double_precision=15)),
                       "folds": json.loads(cv.splits.to_json(orient="records",
                                                             double_precision=15))}
            typer.echo(json.dumps(payload, indent=2, default=str))
            return
        _print_results(metrics, cv, backbone, data, model, ev.tau)
        typer.echo(f"run {run.run_id}: {run.path} ({len(figures)} figure(s), PNG + SVG)")


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in str(name)).strip("_").lower() or "x"


def _extra_row(site: str, metric: str, estimate: float, n: int, n_pos: int) -> dict:
    import numpy as np

    return {"site": site, "metric": metric, "estimate": float(estimate), "ci_low": np.nan,
            "ci_high": np.nan, "bca_low": np.nan, "bca_high": np.nan, "ci_method": "",
            "n": n, "n_pos": n_pos, "tau": np.nan, "horizon": np.nan}


def _run_with_progress(fn, *, total: int, label: str, quiet: bool):
    if quiet:
        return fn(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), transient=True) as bar:
        handle = bar.add_task(label, total=total)
        return fn(lambda k: bar.advance(handle, k))


def _print_results(metrics, cv, backbone, data, model, tau) -> None:
    import numpy as np
    import pandas as pd

    discrimination, timewise, extra = [], [], []
    for site, block in metrics.groupby("site", sort=False):
        by_metric = {m.metric: m for _, m in block.iterrows()}
        row = {"site": site, "n": int(block["n"].iloc[0]),
               "events": int(block["n_pos"].iloc[0])}
        for key, name in (("harrell_c", "Harrell C [95% CI]"), ("uno_c", "Uno C [95% CI]")):
            if key in by_metric:
                m = by_metric[key]
                row[name] = f"{m.estimate:.3f} [{m.ci_low:.3f}, {m.ci_high:.3f}]"
        discrimination.append(row)
        row = {"site": site}
        for key, name in (("td_auc_1y", "AUC 1y"), ("td_auc_2y", "AUC 2y"),
                          ("td_auc_3y", "AUC 3y"), ("ibs", "IBS"),
                          ("logrank_p", "log-rank p")):
            row[name] = (f"{by_metric[key].estimate:.3g}" if key in by_metric else "-")
        timewise.append(row)
        extra += [f"{site}: {k} = {m.estimate:.3g} (n={int(m.n)})" for k, m in by_metric.items()
                  if k.startswith("logrank_p_")]
    print_frame(pd.DataFrame(discrimination),
                title=f"{backbone} / {data.task.name} / {model}: out-of-fold c-index "
                      f"(Uno truncated at {tau:g} days)")
    print_frame(pd.DataFrame(timewise),
                title="time-dependent AUC, integrated Brier score, median-split log-rank")
    for line in extra:
        typer.echo(line)
    c = cv.splits["harrell_c"]
    typer.echo(f"fold Harrell C: {np.nanmean(c):.3f} ± {np.nanstd(c, ddof=1):.3f} "
               f"over {int(c.notna().sum())} folds ({cv.plan.summary()})")
