"""CLI: ``neurofeat tasks`` — the task registry, with eligible counts per site."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from neurofeat.cli.common import open_store, print_frame, user_errors


def tasks(
    store: Annotated[
        Path | None, typer.Option("--store", "-s", help="Also count eligible patients and positives per site.")
    ] = None,
) -> None:
    """List the prediction tasks (built-in and from neurofeat.toml) with their cohort filters.

    Example: neurofeat tasks --store S
    """
    import pandas as pd

    from neurofeat.tasks import list_tasks

    with user_errors():
        registry = list_tasks()
    frame = pd.DataFrame(
        [
            {
                "task": t.name,
                "kind": t.kind,
                "label": ", ".join(t.label_columns),
                "threshold": t.threshold,
                "cohort": t.cohort or "all",
                "description": t.description,
            }
            for t in registry
        ]
    )
    print_frame(frame, title="tasks")
    if store is None:
        return
    from neurofeat.store import task_counts

    opened = open_store(store)
    with user_errors():
        counts = task_counts(opened, registry)
    print_frame(counts, title=f"eligible patients per site in {opened.root}")


def register(app: typer.Typer) -> None:
    """Add ``neurofeat tasks`` to *app*."""
    app.command("tasks")(tasks)
