"""The ``neurofeat`` command line.

Each module in this package holds one command group and exposes
``register(app: typer.Typer) -> None``; this file only joins them. Command modules
import heavy libraries (torch, sklearn, duckdb) inside the command bodies so that
``neurofeat --help`` stays fast.
"""

from __future__ import annotations

import importlib
import inspect

import typer

__all__ = ["app", "main", "reflow_help"]

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
    "invariance",
    "calibrate",
    "stability",
    "explain",
    "report",
)

for _name in _COMMAND_MODULES:
    importlib.import_module(f"neurofeat.cli.{_name}").register(app)


_VERBATIM = ("neurofeat ", "torchrun ", "python ", "  ")


def reflow_help(text: str) -> str:
    """Help text with hard-wrapped lines joined into paragraphs.

    Rich renders every newline after a command's first paragraph as a line break, so
    docstrings wrapped at 90 columns break mid-sentence in a wider or narrower terminal.
    Lines are joined within a paragraph, except lines that are meant to stand alone:
    command lines (``neurofeat ...``, ``torchrun ...``, ``python ...``) and indented ones.
    """
    paragraphs = []
    for paragraph in inspect.cleandoc(text).split("\n\n"):
        lines: list[str] = []
        for line in paragraph.split("\n"):
            alone = line.startswith(_VERBATIM)
            if lines and not alone and not lines[-1].startswith(_VERBATIM[3]):
                lines[-1] = f"{lines[-1].rstrip()} {line.strip()}"
            else:
                lines.append(line.rstrip())
        paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs)


def _reflow_commands(typer_app: typer.Typer) -> None:
    for info in typer_app.registered_commands:
        text = info.help or inspect.getdoc(info.callback) or ""
        if text:
            info.help = reflow_help(text)
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _reflow_commands(group.typer_instance)


_reflow_commands(app)


def main() -> None:
    """Entry point of the ``neurofeat`` console script."""
    app()
