"""CLI: `neurofeat survival` — Cox models on stored embeddings, c-indices, KM/log-rank.

Parses options, calls :func:`neurofeat.runs.survival_run` (which reads the cohort,
fits the model, evaluates it and writes the run with its Kaplan–Meier figures) and
prints rich tables (or JSON).
"""

from __future__ import annotations

from typing import Annotated

import typer

from neurofeat.cli.common import (StoreOption, console, fail, open_store, print_frame,
                                  progress_hooks, user_errors)

__all__ = ["register"]

_EXAMPLE = (
    "Example: neurofeat survival --backbone dino_dro --task os --model coxnet "
    "--protocol cv --bootstrap 1000 --permutations 99 --by mgmt"
)


def register(app: typer.Typer) -> None:
    """Add the ``survival`` command to *app*."""

    @app.command("survival", help="Cox model on stored embeddings: out-of-fold risk, Harrell "
                 "and Uno c-index with bootstrap CIs, time-dependent AUC, IBS, and "
                 "median-split Kaplan–Meier curves with log-rank tests (permutation p, "
                 "exact; the published chi-squared p next to it), pooled and per "
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
        permutations: Annotated[int, typer.Option(
            help="Permutations of the log-rank test of the risk groups (outcomes permuted "
                 "within site, every fold of the first repeat refitted: an exact p, "
                 "smallest 1/(B+1)); costs up to B x folds model fits. 0 = off: only the "
                 "published chi-squared p (not calibrated).", min=0)] = 99,
        stop_after: Annotated[int, typer.Option(
            help="Sequential permutation p (Besag-Clifford): stop once each tested subset "
                 "has this many permuted statistics >= its observed one (p = h / draws; "
                 "still exact). A clearly null subset stops after about 2h permutations; a "
                 "p near 0.05 still draws all B. 0 = always draw all B.", min=0)] = 10,
        jobs: Annotated[int, typer.Option(
            "--jobs", help="Worker processes for the permutations (same result for any "
                           "value).", min=1)] = 1,
        as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON.")] = False,
        store_path: StoreOption = None,
    ) -> None:
        import json

        from neurofeat.runs import SURVIVAL_PROTOCOLS, SurvivalDataError, survival_run

        if protocol not in SURVIVAL_PROTOCOLS:
            fail(f"--protocol must be cv, loso or site, got '{protocol}'")
        store = open_store(store_path)
        progress, on_start, on_step = progress_hooks(not as_json, f"{backbone}: fitting {model}")
        with user_errors(SurvivalDataError), progress:
            run = survival_run(store, backbone, task, model=model, protocol=protocol, site=site,
                               n_splits=folds, n_repeats=repeats, n_boot=bootstrap, seed=seed,
                               tau=tau, by=by, within=within, n_components=n_components,
                               l1_ratio=l1_ratio, min_patients=min_patients,
                               n_permutations=permutations, stop_after=stop_after,
                               n_jobs=jobs, on_start=on_start,
                               progress=on_step)
        if as_json:
            payload = {"run_id": run.info.run_id, "path": str(run.info.path),
                       "params": run.params,
                       "metrics": json.loads(run.metrics.to_json(orient="records",
                                                                 double_precision=15)),
                       "folds": json.loads(run.cv.splits.to_json(orient="records",
                                                                 double_precision=15))}
            typer.echo(json.dumps(payload, indent=2, default=str))
            return
        _print_results(run)
        typer.echo(f"run {run.info.run_id}: {run.info.path} ({len(run.figures)} figure(s), "
                   "PNG + SVG)")


def _print_results(run) -> None:
    import numpy as np
    import pandas as pd

    from neurofeat.runs.survival import is_permutation_method

    metrics, cv, backbone, data, model, tau = (run.metrics, run.cv, run.backbone, run.data,
                                               run.model, run.tau)

    discrimination, timewise, extra = [], [], []
    n_perm = int(run.params.get("permutations") or 0)
    stop_after = int(run.params.get("stop_after") or 0)
    for site, block in metrics.groupby("site", sort=False):
        by_metric = {m.metric: m for _, m in block[block["primary"]].iterrows()}
        published = {m.metric: m for _, m in block[~block["primary"]].iterrows()
                     if m.metric.startswith("logrank_p")}
        row = {"site": site, "n": int(block["n"].iloc[0]),
               "events": int(block["n_pos"].iloc[0])}
        for key, name in (("harrell_c", "Harrell C [95% CI]"), ("uno_c", "Uno C [95% CI]")):
            if key in by_metric:
                m = by_metric[key]
                row[name] = f"{m.estimate:.3f} [{m.ci_low:.3f}, {m.ci_high:.3f}]"
        discrimination.append(row)
        row = {"site": site}
        lr = by_metric.get("logrank_p")
        permuted = lr is not None and is_permutation_method(lr.ci_method)
        chisq = published.get("logrank_p", None if permuted else lr)
        for key, name in (("td_auc_1y", "AUC 1y"), ("td_auc_2y", "AUC 2y"),
                          ("td_auc_3y", "AUC 3y"), ("ibs", "IBS")):
            row[name] = (f"{by_metric[key].estimate:.3g}" if key in by_metric else "-")
        row["log-rank p"] = f"{lr.estimate:.3g}" if permuted else "-"
        row["published p*"] = "-" if chisq is None else f"{chisq.estimate:.3g}"
        timewise.append(row)
        for k, m in by_metric.items():
            if not k.startswith("logrank_p_"):
                continue
            line = f"{site}: {k} = {m.estimate:.3g} (n={int(m.n)})"
            if is_permutation_method(m.ci_method):
                line += " permutation p"
                if k in published:
                    line += f"; published chi-squared p* {published[k].estimate:.3g}"
            elif k.startswith("logrank_p_within_"):
                line += " chi-squared p* (not calibrated)"
            extra.append(line)
    print_frame(pd.DataFrame(discrimination),
                title=f"{backbone} / {data.task.name} / {model}: out-of-fold c-index "
                      f"(Uno truncated at {tau:g} days)")
    print_frame(pd.DataFrame(timewise),
                title="time-dependent AUC, integrated Brier score, median-split log-rank")
    if "logrank_p" in set(metrics["metric"]):
        if n_perm:
            seq = (f", sequential: stopped at {stop_after} exceedances, "
                   f"{run.params.get('permutations_drawn')} drawn" if stop_after else "")
            typer.echo(f"log-rank p: permutation test of the high/low risk groups (B = "
                       f"{n_perm}{seq}; outcomes permuted within site, every fold refitted; "
                       f"exact, smallest p {1 / (n_perm + 1):.3g})")
        typer.echo("* published p: asymptotic chi-squared log-rank of the same cross-validated "
                   "groups, as the papers report it; not calibrated (12.6 % type-I at alpha "
                   "0.05 in simulation)" + ("" if n_perm else "; --permutations B gives the "
                                            "calibrated p"))
    for line in extra:
        typer.echo(line)
    for warning in sorted({w for w in metrics["warning"] if isinstance(w, str) and w}):
        console().print(f"[yellow]warning: {warning}[/yellow]")
    c = cv.splits["harrell_c"]
    typer.echo(f"fold Harrell C: {np.nanmean(c):.3f} ± {np.nanstd(c, ddof=1):.3f} "
               f"over {int(c.notna().sum())} folds ({cv.plan.summary()})")
