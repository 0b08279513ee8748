"""CLI: ``neurofeat ingest`` (register scans and clinical labels in a store)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from neurofeat.cli.common import StoreOption, console, fail, print_frame

__all__ = ["register", "ingest_command"]

_HELP = (
    "Register a cohort's scans and clinical labels in the store (all or nothing).\n\n"
    "Scans come from a manifest (--manifest: patient_id, site, t1, t1ce, t2, flair; paths "
    "relative to the manifest's folder) or from a BraTS-style folder tree (--discover: "
    "<root>/<patient>/<patient>-t1n.nii.gz, -t1c, -t2w, -t2f, or _t1, _t1ce, _t2, _flair). "
    "--clinical alone registers patients and labels without scans (for features computed "
    "elsewhere, see `neurofeat store import`).\n\n"
    "Clinical column names and values are mapped onto the canonical columns (idh1, mgmt, "
    "codel_1p19q, egfr, atrx, tp53, cdkn2a, tert, ki67, p53_ihc, os_days, os_event, age, "
    "sex, grade, histology) by a default mapping that knows BraTS, UCSF-PDGM, UPenn-GBM and "
    "TCGA-style names; --mapping my.toml extends it.\n\n"
    "Any problem (unreadable or truncated scan, missing sequence, shapes or affines that "
    "differ within a patient, duplicate ids, a value that cannot be read, os_days <= 0, a "
    "clinical row for an unknown patient, a patient already in the store) stops the ingest "
    "and nothing is written; --skip-bad registers the other patients and records each "
    "rejected one, with the reason, in the store's ingest_rejects table.\n\n"
    "Examples:\n\n"
    "neurofeat ingest --manifest cohort/manifest.csv --clinical cohort/clinical.csv --store S"
    "\n\n"
    "neurofeat ingest --discover BraTS2021_Training_Data --site brats --store S\n\n"
    "neurofeat ingest --clinical ucsf_pdgm_metadata.csv --site ucsf --mapping my.toml "
    "--store S"
)


def ingest_command(
    manifest: Annotated[Path | None, typer.Option(
        "--manifest", "-m", help="CSV: patient_id, site, t1, t1ce, t2, flair [, seg (tumour label map; empty cells allowed), cohort].",
        show_default=False)] = None,
    clinical: Annotated[Path | None, typer.Option(
        "--clinical", "-c", help="CSV/TSV of clinical labels (any known column names).",
        show_default=False)] = None,
    discover: Annotated[Path | None, typer.Option(
        "--discover", "-d", help="Folder tree to search for BraTS-style scan files.",
        show_default=False)] = None,
    site: Annotated[str | None, typer.Option(
        help="Site of patients whose manifest/clinical row names none.",
        show_default=False)] = None,
    cohort: Annotated[str | None, typer.Option(
        help="Cohort of patients whose manifest row names none.", show_default=False)] = None,
    mapping: Annotated[Path | None, typer.Option(
        help="TOML column/value mapping that extends the default one.",
        show_default=False)] = None,
    skip_bad: Annotated[bool, typer.Option(
        "--skip-bad", help="Register the good patients; record the bad ones in ingest_rejects.",
    )] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Check everything (scans included) but write nothing.")] = False,
    workers: Annotated[int | None, typer.Option(
        help="Threads reading and hashing scans (default: up to 4).", show_default=False,
        min=1)] = None,
    store: StoreOption = None,
) -> None:
    from neurofeat.ingest import (
        DiscoveryError,
        IngestError,
        InputTableError,
        MappingError,
        ingest,
    )
    from neurofeat.progress import progress_bar
    from neurofeat.store import StoreError, StoreLockedError, resolve_store_path

    if manifest is None and discover is None and clinical is None:
        fail("nothing to ingest: pass --manifest FILE, --discover FOLDER or --clinical FILE "
             "(see neurofeat ingest --help)")
    store_path = resolve_store_path(store)
    progress = progress_bar(eta=True, transient=True)
    task_id = None

    def on_count(n_scans: int) -> None:
        nonlocal task_id
        if n_scans:
            progress.start()
            task_id = progress.add_task("reading scans", total=n_scans)

    def advance(step: int) -> None:
        if task_id is not None:
            progress.advance(task_id, step)

    try:
        report = ingest(store_path, manifest=manifest, clinical=clinical, discover=discover,
                        site=site, cohort=cohort, mapping=mapping, skip_bad=skip_bad,
                        dry_run=dry_run, workers=workers, progress=advance,
                        on_scan_count=on_count)
    except (IngestError, InputTableError, MappingError, DiscoveryError, StoreError,
            StoreLockedError) as error:
        progress.stop()
        fail(str(error))
    progress.stop()
    _print_report(report)


def _print_report(report) -> None:  # noqa: ANN001 - IngestReport, imported lazily
    import pandas as pd

    out = console()
    if report.column_map:
        print_frame(pd.DataFrame(list(report.column_map),
                                 columns=["clinical column", "canonical column"]),
                    title="clinical columns used")
    per_site = report.per_site()
    if per_site:
        print_frame(pd.DataFrame({"site": list(per_site), "patients": list(per_site.values())}),
                    title="patients " + ("accepted (dry run)" if report.dry_run else "registered"))
    if report.rejects:
        frame = pd.DataFrame([{"patient_id": p.patient_id or "", "source": Path(p.source).name,
                               "row": "" if p.row is None else str(p.row),
                               "column": p.column or "", "reason": p.reason}
                              for p in report.rejects])
        print_frame(frame, title="rejected (recorded in ingest_rejects)"
                    if not report.dry_run else "would be rejected")
    out.print(report.summary(list_rejects=False), markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``neurofeat ingest`` to *app*."""
    app.command("ingest", help=_HELP, no_args_is_help=True)(ingest_command)
