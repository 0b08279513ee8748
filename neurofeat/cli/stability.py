"""CLI: ``neurofeat stability`` — a clean-trained probe on perturbed embeddings."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from neurofeat.cli.common import (StoreOption, console, open_store, print_frame, progress_hooks,
                                  user_errors)

__all__ = ["register", "stability"]


def stability(
    backbone: Annotated[list[str], typer.Option(
        help="Backbone (repeat to compare several on the perturbations they share).")],
    task: Annotated[str, typer.Option(help="Task name (neurofeat tasks list), e.g. idh1.")],
    perturbation: Annotated[list[str] | None, typer.Option(
        help="Perturbation label to evaluate, e.g. gibbs-0.2 (repeat; default: every stored "
             "one).")] = None,
    repeats: Annotated[int, typer.Option(help="CV repeats.", min=1)] = 5,
    folds: Annotated[int, typer.Option(help="CV folds.", min=2)] = 5,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples.", min=10)] = 2000,
    seed: Annotated[int, typer.Option(help="Seed of folds and bootstrap.")] = 0,
    site: Annotated[str | None, typer.Option(
        help="Only patients of these sites (comma-separated).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the tables as JSON.")] = False,
    store: StoreOption = None,
) -> None:
    """Perturbation stability (BrainIAC): the probe is trained on clean embeddings and
    evaluated on the stored perturbed embeddings (neurofeat extract --perturb) of the
    same test patients; AUC and balanced accuracy vs perturbation strength for contrast,
    Gibbs and bias field with 95 % calibrated corrected-t intervals, the change from
    clean, and the per-patient embedding drift (cosine distance clean vs perturbed).
    Results and figures go to the store.

    Example: neurofeat stability --backbone dino --backbone dino_dro --task idh1 --store S
    """
    from neurofeat.runs import NoPerturbationsError, json_records, stability_run

    opened = open_store(store)
    progress, on_start, on_step = progress_hooks(not as_json)
    with user_errors(NoPerturbationsError), progress:
        run = stability_run(opened, backbone, task, perturbations=perturbation or None,
                            n_splits=folds, n_repeats=repeats, n_boot=bootstrap, seed=seed,
                            site=site, on_start=on_start, on_split=on_step)
    if as_json:
        typer.echo(json.dumps({"run_id": run.info.run_id, "params": run.params,
                               "stability": json_records(run.tables["stability"])},
                              indent=2, default=str))
        return
    import pandas as pd

    curve = run.tables["stability"]
    curve = curve[~((curve["perturbation"] == "none") & curve.duplicated(
        ["backbone", "metric", "perturbation"]))]
    drift = run.tables["drift"].groupby(["backbone", "perturbation"])["cosine_distance"] \
        .median().rename("median drift")
    table = pd.DataFrame({
        "backbone": curve["backbone"], "perturbation": curve["perturbation"],
        "metric": curve["metric"], "estimate": curve["estimate"],
        "95% CI": [f"{lo:.3f}-{hi:.3f}" for lo, hi in zip(curve["ci_low"], curve["ci_high"])],
        "change vs clean": [("" if p == "none" else f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]")
                            for p, d, lo, hi in zip(curve["perturbation"], curve["delta"],
                                                    curve["delta_ci_low"],
                                                    curve["delta_ci_high"])],
        "median drift": [drift.get((b, p), float("nan")) for b, p in
                         zip(curve["backbone"], curve["perturbation"])]})
    print_frame(table, title=f"probe trained on clean embeddings, evaluated on perturbed ones "
                             f"({run.params['task']}; 95% calibrated corrected-t CIs)")
    console().print("A flat curve (change near 0) and small drift read as stable.")
    console().print(f"wrote run [bold]{run.info.run_id}[/bold] to {run.info.path}")


def register(app: typer.Typer) -> None:
    """Add ``neurofeat stability`` to *app*."""
    app.command("stability")(stability)
