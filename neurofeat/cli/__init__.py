"""The ``neurofeat`` command line.

Each module in this package holds one command group and exposes
``register(app: typer.Typer) -> None``; this file only joins them. Command modules
import heavy libraries (torch, sklearn, duckdb) inside the command bodies so that
``neurofeat --help`` stays fast.
"""

from __future__ import annotations

import importlib

import typer

__all__ = ["app", "main"]

app = typer.Typer(
    name="neurofeat",
    help=(
        "Frozen brain-MRI foundation-model embeddings in a queryable store, and the "
        "statistics neuro-oncology papers ask of them.\n\n"
        "Example: neurofeat synth --out cohort && neurofeat ingest --discover cohort/images "
        "--clinical cohort/clinical.csv --store S"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Order = order in `neurofeat --help`.
_COMMAND_MODULES = (
    "demo",
    "synth",
    "ingest",
    "store_cmds",
    "sql",
    "tasks",
    "pretrain",
    "extract",
    "probe",
    "survival",
    "stats",
)

for _name in _COMMAND_MODULES:
    importlib.import_module(f"neurofeat.cli.{_name}").register(app)


def main() -> None:
    """Entry point of the ``neurofeat`` console script."""
    app()
