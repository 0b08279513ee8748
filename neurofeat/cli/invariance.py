"""CLI: ``neurofeat invariance`` — how well each backbone's embeddings tell the sites apart."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from neurofeat.cli.common import (StoreOption, console, open_store, print_frame, progress_hooks,
                                  user_errors)

__all__ = ["register", "invariance"]


def invariance(
    backbone: Annotated[list[str] | None, typer.Option(
        help="Backbone to analyse (repeat for several; default: every backbone in the store).")]
    = None,
    family: Annotated[str | None, typer.Option(
        help="base (byol, dino, mae, moco), dro (their _dro twins) or all.")] = None,
    by: Annotated[str, typer.Option(
        help="Grouping whose separability is measured: site, or a clinical column such as "
             "cohort.")] = "site",
    label: Annotated[str | None, typer.Option(
        help="Clinical column that colours a second set of scatters (e.g. idh1): biology "
             "next to acquisition.")] = None,
    components: Annotated[int, typer.Option(
        help="Principal components of PCA-silhouette and Davies-Bouldin.", min=1)] = 10,
    probe_components: Annotated[int, typer.Option(
        help="Principal components the site probe and t-SNE see.", min=1)] = 50,
    folds: Annotated[int, typer.Option(help="Site-probe CV folds.", min=2)] = 5,
    repeats: Annotated[int, typer.Option(help="Site-probe CV repeats.", min=1)] = 1,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples.", min=10)] = 2000,
    seed: Annotated[int, typer.Option(help="Seed of folds, bootstrap and t-SNE.")] = 0,
    tsne: Annotated[bool, typer.Option("--tsne/--no-tsne", help="Compute t-SNE scatters.")] = True,
    perturbation: Annotated[str, typer.Option(help="Embeddings of this perturbation.")] = "none",
    as_json: Annotated[bool, typer.Option("--json", help="Print the tables as JSON.")] = False,
    store: StoreOption = None,
) -> None:
    """Site invariance: PCA-silhouette and Davies-Bouldin by site (in the first
    --components principal components), a site-classifier probe (balanced accuracy vs
    chance 1/k with a 95 % corrected-t interval) and PCA/t-SNE scatters coloured by site
    (and by --label). Lower site separability reads as better. Results and figures go
    to the store.

    Example: neurofeat invariance --family all --label idh1 --store S
    """
    from neurofeat.runs import invariance_run, json_records

    opened = open_store(store)
    progress, on_start, on_step = progress_hooks(not as_json, "site probes")
    with user_errors(), progress:
        run = invariance_run(opened, backbone or None, family=family, by=by, label=label,
                             perturbation=perturbation, n_components=components,
                             probe_components=probe_components, n_splits=folds,
                             n_repeats=repeats, n_boot=bootstrap, seed=seed, tsne=tsne,
                             on_start=on_start, on_split=on_step)
    if as_json:
        typer.echo(json.dumps({"run_id": run.info.run_id, "params": run.params,
                               "invariance": json_records(run.tables["invariance"])},
                              indent=2, default=str))
        return
    first = next(iter(run.results.values()))
    print_frame(run.side_by_side(),
                title=f"separability of {first.n_groups} {by}s: silhouette and Davies-Bouldin "
                      f"in {first.n_components} PCs; site probe on {first.probe.n_components} "
                      "PCs, 95% corrected-t CI")
    console().print("Lower silhouette, higher Davies-Bouldin and a site-probe accuracy "
                    "closer to chance read as more site-invariant.")
    console().print(f"wrote run [bold]{run.info.run_id}[/bold] to {run.info.path}")


def register(app: typer.Typer) -> None:
    """Add ``neurofeat invariance`` to *app*."""
    app.command("invariance")(invariance)
