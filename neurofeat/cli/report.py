"""CLI: ``neurofeat report`` — one self-contained HTML page of everything in the store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from neurofeat.cli.common import StoreOption, console, open_store, user_errors

__all__ = ["register", "report"]


def report(
    out: Annotated[Path, typer.Option(help="HTML file to write (outside the store).")]
    = Path("report.html"),
    title: Annotated[str | None, typer.Option(
        help="Page title (default: 'neurofeat report: <store folder>').")] = None,
    store: StoreOption = None,
) -> None:
    """One self-contained HTML report of what the store holds: cohort per site, AUC/BA
    with intervals for every backbone (base beside DRO) with the primary paired test,
    forest plots, ROC and data-fraction curves, c-index per site with Kaplan-Meier
    curves, site invariance, stability, Grad-CAM montages, calibration, and the
    provenance of every number (run, seed, version, checkpoint and preprocessing
    hashes). Figures are inlined; the page loads nothing from the network and holds
    aggregates only (no patient identifier, scan path or clinical row). Analyses the
    store lacks are listed with the command that adds them.

    Example: neurofeat report --store S --out report.html
    """
    from neurofeat.runs.report import report_run

    opened = open_store(store)
    with user_errors(), console().status("building the report from the store"):
        run = report_run(opened, out, title=title)
    size = run.path.stat().st_size / 1e6
    console().print(f"wrote [bold]{run.path}[/bold] ({size:.1f} MB): "
                    f"{', '.join(run.sections)}")
    for item in run.report.absent:
        console().print(f"  not in the store: {item.title} ({item.reason}); add it with "
                        f"[cyan]{item.command}[/cyan]")


def register(app: typer.Typer) -> None:
    """Add ``neurofeat report`` to *app*."""
    app.command("report")(report)
