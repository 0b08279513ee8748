"""CLI: ``neurofeat store info | validate | import``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from neurofeat.cli.common import (
    StoreOption,
    console,
    open_store,
    print_frame,
    user_errors,
)

store_app = typer.Typer(help="Inspect, check and extend a store.", no_args_is_help=True)


@store_app.command("info")
def info(store: StoreOption = None) -> None:
    """Counts per backbone and site, dimensions, checkpoint hashes and size on disk.

    Example: neurofeat store info --store S
    """
    from neurofeat.store.info import store_info

    opened = open_store(store)
    with user_errors():
        result = store_info(opened)
    console().print(
        f"[bold]{result.root}[/]: {result.n_patients} patients, {result.n_scans} scans, "
        f"{result.n_runs} analysis runs, {result.size_bytes / 1e6:.1f} MB"
    )
    if len(result.patients_per_site):
        print_frame(result.patients_per_site, title="patients per site")
    if len(result.backbones):
        frame = result.backbones.copy()
        frame["checkpoint_sha256"] = frame["checkpoint_sha256"].str.slice(0, 12)
        frame["preprocess_sha256"] = frame["preprocess_sha256"].str.slice(0, 12)
        print_frame(frame, title="embeddings per backbone, perturbation and site")
    else:
        console().print("no embeddings yet (neurofeat extract, or neurofeat store import)")


@store_app.command("validate")
def validate(store: StoreOption = None) -> None:
    """Check schemas, duplicate keys, dangling patients and mixed checkpoints.

    Exits with status 1 when an error is found.

    Example: neurofeat store validate --store S
    """
    from neurofeat.store.validate import validate_store

    opened = open_store(store)
    with user_errors():
        report = validate_store(opened)
    if report.problems:
        print_frame(report.to_frame(), title="problems")
    console().print(report.summary())
    if not report.ok:
        raise typer.Exit(1)


@store_app.command("recover")
def recover(store: StoreOption = None) -> None:
    """Finish commits that a killed process left half done, and remove what killed
    processes left in .staging (uncommitted transactions, analysis runs being written,
    lock files, empty pending folders).

    Any neurofeat command does this when it opens the store; run it after a crash to
    make the store whole for readers that do not use neurofeat (DuckDB, Polars, Spark).
    Work of live processes is left alone. Exits with status 1 if the store cannot be
    written.

    Example: neurofeat store recover --store S
    """
    from neurofeat.store import Store

    with user_errors():
        opened = Store.open(store, recover=False)
        report = opened.recover()
    console().print(f"{opened.root}: {report.summary()}", markup=False, highlight=False)
    if report.error:
        raise typer.Exit(1)


@store_app.command("import")
def import_(
    backbone: Annotated[str, typer.Option(help="Name the features get in the store, e.g. radiomics.")],
    table: Annotated[
        Path, typer.Option(exists=True, dir_okay=False, help="Features: .csv/.tsv/.parquet, one row per patient.")
    ],
    id_column: Annotated[str, typer.Option(help="Column holding the patient id.")] = "patient_id",
    drop_columns: Annotated[
        bool, typer.Option("--drop-columns", help="Drop columns with non-numeric or missing values instead of failing.")
    ] = False,
    replace: Annotated[bool, typer.Option(help="Replace a backbone of the same name imported from another file.")] = False,
    store: StoreOption = None,
) -> None:
    """Import features computed elsewhere (pyradiomics, another model) as a backbone.

    Example: neurofeat store import --backbone radiomics --table radiomics.csv --drop-columns --store S
    """
    from neurofeat.store.importing import import_features

    opened = open_store(store)
    with user_errors():
        report = import_features(
            opened, backbone, table, id_column=id_column, drop_columns=drop_columns, replace=replace
        )
    console().print(report.summary())


def register(app: typer.Typer) -> None:
    """Add ``neurofeat store ...`` to *app*."""
    app.add_typer(store_app, name="store")
