"""Shared pieces of the command line: the --store option, user errors, tables."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

__all__ = ["StoreOption", "fail", "user_errors", "print_frame", "console", "open_store",
           "progress_hooks"]

StoreOption = Annotated[
    Path | None,
    typer.Option(
        "--store",
        "-s",
        help="Store directory (default: $NEUROFEAT_STORE or ./neurofeat-store).",
        show_default=False,
    ),
]


def console() -> Any:
    from rich.console import Console

    return Console()


def fail(message: str) -> NoReturn:
    """Print a user error (no traceback) and exit with status 1."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


@contextlib.contextmanager
def user_errors(*kinds: type[BaseException]) -> Iterator[None]:
    """Turn the given exception types (plus the store's own) into clean user errors."""
    from neurofeat.store import StoreError, StoreLockedError

    try:
        yield
    except PermissionError as error:
        where = error.filename or "a file"
        fail(f"permission denied writing {where}: make it writable (or choose another "
             "--store / --out / --models-dir); nothing was half-written there")
    except (StoreError, StoreLockedError, ValueError, FileNotFoundError, *kinds) as error:
        fail(str(error))


def open_store(path: Path | None, create: bool = False) -> Any:
    from neurofeat.store import Store

    with user_errors():
        return Store.open(path, create=create)


def print_frame(frame: Any, title: str | None = None, float_format: str = "{:.4g}") -> None:
    """Print a pandas DataFrame as a rich table."""
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for column in frame.columns:
        table.add_column(str(column), overflow="fold")
    for row in frame.itertuples(index=False):
        table.add_row(*(_cell(value, float_format) for value in row))
    console().print(table)


def _cell(value: Any, float_format: str) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if value != value else float_format.format(value)
    return str(value)


def progress_hooks(enabled: bool, description: str = "fitting probes"):
    """A progress bar (or a no-op) and the ``on_start(total)``/``on_step()`` hooks of a run."""
    from neurofeat.progress import progress_bar

    progress = progress_bar(enabled, transient=True)
    state: dict = {}

    def on_start(total: int) -> None:
        if "id" in state:
            progress.update(state["id"], total=progress.tasks[state["id"]].total + total)
        else:
            state["id"] = progress.add_task(description, total=total)

    def on_step(k: int = 1) -> None:
        if "id" in state:
            progress.advance(state["id"], k)

    return progress, on_start, on_step
