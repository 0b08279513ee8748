"""CLI: ``neurofeat probe`` — linear and kNN probes of one backbone on one task."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from neurofeat.cli.common import (StoreOption, console, fail, open_store, print_frame,
                                  progress_hooks, user_errors)

__all__ = ["register", "probe"]


def _parse_fractions(text: str) -> tuple[float, ...]:
    if not text.strip() or text.strip().lower() == "none":
        return ()
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        fail(f"--fractions must be comma-separated numbers in (0, 1], got {text!r}")
    bad = [v for v in values if not 0 < v <= 1]
    if bad:
        fail(f"--fractions must lie in (0, 1]; got {bad}")
    return values


def probe(
    backbone: Annotated[str, typer.Option(help="Backbone whose embeddings are probed, e.g. dino_dro.")],
    task: Annotated[str, typer.Option(help="Task name (neurofeat tasks list), e.g. idh1.")],
    protocol: Annotated[str, typer.Option(
        help="cv = repeated stratified k-fold; loso = leave one site out; site = k-fold "
             "within each site.")] = "cv",
    repeats: Annotated[int, typer.Option(help="CV repeats.", min=1)] = 5,
    folds: Annotated[int, typer.Option(help="CV folds.", min=2)] = 5,
    bootstrap: Annotated[int, typer.Option(help="Stratified bootstrap resamples for CIs.",
                                           min=10)] = 2000,
    seed: Annotated[int, typer.Option(help="Seed of folds and bootstrap (with the task name).")] = 0,
    fractions: Annotated[str, typer.Option(
        help="Training fractions of the data-fraction curve (cv only); 'none' skips it.")]
    = "0.1,0.25,0.5,0.75,1.0",
    knn: Annotated[bool, typer.Option("--knn/--no-knn", help="Also run the kNN probe.")] = True,
    neighbors: Annotated[int, typer.Option(help="k of the kNN probe.", min=1)] = 15,
    perturbation: Annotated[str, typer.Option(help="Embeddings of this perturbation.")] = "none",
    site: Annotated[str | None, typer.Option(
        help="Only patients of these sites (comma-separated), e.g. CUIMC.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full result as JSON.")] = False,
    store: StoreOption = None,
) -> None:
    """Linear probe (class-balanced L2 logistic, C by inner CV; ridge for continuous
    tasks) and kNN probe on stored embeddings: AUC, balanced accuracy, sensitivity and
    specificity with the calibrated 95 % interval (primary: the expected performance of
    the probe trained on n(k-1)/k patients) next to the published stratified-bootstrap
    (percentile, BCa) and DeLong intervals of the out-of-fold predictions; per-site
    breakdown and a data-fraction curve. Results go to the store (results view).

    Example: neurofeat probe --backbone dino_dro --task idh1 --protocol loso --store S
    """
    from neurofeat.runs import PROBE_PROTOCOLS, FoldError, probe_run

    if protocol not in PROBE_PROTOCOLS:
        fail(f"--protocol must be one of {', '.join(PROBE_PROTOCOLS)}, got {protocol!r}")
    opened = open_store(store)
    progress, on_start, on_step = progress_hooks(not as_json)
    with user_errors(FoldError), progress:
        run = probe_run(opened, backbone, task, protocol=protocol, n_repeats=repeats,
                        n_splits=folds, n_boot=bootstrap, seed=seed,
                        fractions=_parse_fractions(fractions), knn=knn,
                        knn_neighbors=neighbors, perturbation=perturbation, site=site,
                        on_start=on_start, on_split=on_step)
    if as_json:
        typer.echo(json.dumps(dict(run.result.to_dict(), run_id=run.info.run_id), indent=2))
        return
    _print_probe(run.result)
    console().print(f"wrote run [bold]{run.info.run_id}[/bold] to {run.info.path}")


def _print_probe(result) -> None:
    import pandas as pd

    m = result.metrics
    console().print(result.plan.summary())
    full = m[m["fraction"] == 1.0]
    pooled = full[full["site"] == "all"]
    rows, estimands, warnings = [], set(), set()
    for (probe_name, metric), group in pooled.groupby(["probe", "metric"], sort=False):
        by = {r.ci_method: r for r in group.itertuples()}
        primary = next((r for r in group.itertuples() if r.primary), None)
        if primary is None:
            continue
        row = {"probe": probe_name, "metric": metric, "estimate": primary.estimate,
               "95% CI": f"{primary.ci_low:.3f}-{primary.ci_high:.3f}"}
        for method, label in (("percentile", "bootstrap (OOF)"), ("delong", "DeLong (OOF)")):
            if method in by:
                row[label] = (f"{by[method].estimate:.3f} "
                              f"[{by[method].ci_low:.3f}-{by[method].ci_high:.3f}]")
        row.update({"n": primary.n, "pos": primary.n_pos})
        rows.append(row)
        estimands.add(primary.estimand)
        if isinstance(primary.warning, str) and primary.warning:
            warnings.add(primary.warning)
    primary_methods = ", ".join(dict.fromkeys(pooled.loc[pooled["primary"].astype(bool), "ci_method"]))
    print_frame(pd.DataFrame(rows).fillna(""),
                title=f"{result.backbone} on {result.task} ({result.protocol}), pooled; "
                      f"estimate and 95% CI: {primary_methods or 'none'} (primary); published "
                      "procedures on the out-of-fold predictions beside it")
    first = next((e for e in sorted(e for e in estimands if isinstance(e, str))), None)
    if first:
        console().print(f"primary rows: {first}; the other metrics alike")
    for warning in sorted(warnings):
        console().print(f"[yellow]{warning}[/yellow]")
    main = "ridge" if result.kind == "continuous" else "linear"
    primary_rows = full[full["primary"].astype(bool)]
    sites = primary_rows[(primary_rows["site"] != "all") & (primary_rows["probe"] == main)
                         & primary_rows["metric"].isin(["auc", "ba"])]
    if not sites.empty:
        table = sites.pivot_table(index=["site", "n", "n_pos"], columns="metric",
                                  values="estimate", aggfunc="first").reset_index()
        title = ("held-out site (leave-one-site-out)" if result.protocol == "loso"
                 else "per site")
        print_frame(table, title=f"{main} probe, {title}")
    curve = m[(m["site"] == "all") & m["primary"].astype(bool) & (m["probe"] == main)
              & m["metric"].isin(["auc", "ba"])]
    if curve["fraction"].nunique() > 1:
        curve = curve.assign(value=[f"{e:.3f} [{lo:.3f}-{hi:.3f}]" for e, lo, hi in
                                    zip(curve["estimate"], curve["ci_low"], curve["ci_high"])])
        table = curve.pivot_table(index="fraction", columns="metric", values="value",
                                  aggfunc="first").reset_index().sort_values("fraction")
        print_frame(table, title="data-fraction curve (share of each training fold)")


def register(app: typer.Typer) -> None:
    """Add ``neurofeat probe`` to *app*."""
    app.command("probe")(probe)
