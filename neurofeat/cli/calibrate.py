"""CLI: ``neurofeat calibrate`` — calibration and decision curves of a probe."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from neurofeat.cli.common import (StoreOption, console, open_store, print_frame, progress_hooks,
                                  user_errors)

__all__ = ["register", "calibrate"]


def calibrate(
    backbone: Annotated[str, typer.Option(help="Backbone whose probe is calibrated.")],
    task: Annotated[str, typer.Option(help="Binary task (neurofeat tasks list), e.g. idh1.")],
    repeats: Annotated[int, typer.Option(help="CV repeats.", min=1)] = 5,
    folds: Annotated[int, typer.Option(help="CV folds.", min=2)] = 5,
    seed: Annotated[int, typer.Option(help="Seed of folds and bootstrap.")] = 0,
    balanced: Annotated[bool, typer.Option(
        "--balanced/--unweighted",
        help="Class-balanced probe (as neurofeat probe; calibrated to a 50 % prevalence by "
             "construction) or the plain L2 logistic probe (default).")] = False,
    bins: Annotated[int, typer.Option(help="Reliability-diagram bins.", min=2)] = 10,
    bin_strategy: Annotated[str, typer.Option(
        help="quantile (equal patients per bin) or uniform.")] = "quantile",
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples (Brier CI).",
                                           min=10)] = 2000,
    site: Annotated[str | None, typer.Option(
        help="Only patients of these sites (comma-separated).")] = None,
    perturbation: Annotated[str, typer.Option(help="Embeddings of this perturbation.")] = "none",
    as_json: Annotated[bool, typer.Option("--json", help="Print the tables as JSON.")] = False,
    store: StoreOption = None,
) -> None:
    """Calibration of the probe's out-of-fold probabilities, pooled and per site:
    calibration slope (1 = ideal) and intercept (0 = ideal) with 95 % Wald intervals
    from logistic recalibration, Brier score, reliability diagram, and decision-curve net
    benefit against treat-all and treat-none. Results and figures go to the store.

    Example: neurofeat calibrate --backbone dino_dro --task idh1 --store S
    """
    from neurofeat.runs import calibrate_run, json_records

    opened = open_store(store)
    progress, on_start, on_step = progress_hooks(not as_json)
    with user_errors(), progress:
        run = calibrate_run(opened, backbone, task, n_splits=folds, n_repeats=repeats,
                            seed=seed, balanced=balanced, n_bins=bins,
                            bin_strategy=bin_strategy, n_boot=bootstrap, site=site,
                            perturbation=perturbation, on_start=on_start, on_split=on_step)
    if as_json:
        typer.echo(json.dumps({"run_id": run.info.run_id, "params": run.params,
                               "calibration": json_records(run.tables["calibration"]),
                               "reliability": json_records(run.tables["reliability"])},
                              indent=2, default=str))
        return
    import pandas as pd

    cal = run.tables["calibration"]
    table = pd.DataFrame({
        "site": cal["site"], "n": cal["n"], "pos": cal["n_pos"],
        "slope": cal["slope"],
        "slope 95% CI": [f"{lo:.2f}-{hi:.2f}" for lo, hi in
                         zip(cal["slope_ci_low"], cal["slope_ci_high"])],
        "intercept": cal["intercept"],
        "intercept 95% CI": [f"{lo:.2f}-{hi:.2f}" for lo, hi in
                             zip(cal["intercept_ci_low"], cal["intercept_ci_high"])],
        "Brier": cal["brier"], "Brier (prevalence only)": cal["brier_null"],
        "scaled Brier": cal["brier_scaled"]})
    print_frame(table, title=f"{backbone} on {run.params['task']}: calibration of out-of-fold "
                             f"probabilities ({run.params['probe']} probe); slope 1 and "
                             "intercept 0 are ideal")
    curve = run.tables["decision_curve"]
    pooled = curve[(curve["site"] == "all")
                   & curve["threshold"].round(2).isin([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])]
    print_frame(pooled[["threshold", "net_benefit", "net_benefit_all", "net_benefit_none"]],
                title="decision curve (pooled): net benefit of the model, treat all, treat none")
    for name, dc in run.curves.items():
        console().print(f"{name}: {dc.summary()}")
    console().print(f"wrote run [bold]{run.info.run_id}[/bold] to {run.info.path}")


def register(app: typer.Typer) -> None:
    """Add ``neurofeat calibrate`` to *app*."""
    app.command("calibrate")(calibrate)
