"""The one progress-bar factory that long-running work shares (rich, on stderr)."""

from __future__ import annotations

from typing import Any

__all__ = ["progress_bar", "NoProgress"]


class NoProgress:
    """Stands in for a rich ``Progress`` when progress is off: every call is a no-op."""

    def __enter__(self) -> "NoProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def add_task(self, *args: Any, **kwargs: Any) -> int:
        return 0

    def advance(self, *args: Any, **kwargs: Any) -> None:
        return None

    def update(self, *args: Any, **kwargs: Any) -> None:
        return None

    def start(self) -> None:
        return None

    def stop(self) -> None:
        return None


def progress_bar(enabled: bool = True, *, unit: str | None = None, eta: bool = False,
                 transient: bool = False) -> Any:
    """A rich ``Progress`` (description, bar, n/total, elapsed) or a :class:`NoProgress`.

    Parameters
    ----------
    enabled : bool
        False returns a :class:`NoProgress` (``--json`` output, tests, non-zero ranks).
    unit : str, optional
        Adds a ``{task.fields[rate]} <unit>/s`` column; tasks must then be added with a
        ``rate`` field.
    eta : bool
        Adds an ETA column.
    transient : bool
        Clears the bar when it finishes.
    """
    if not enabled:
        return NoProgress()
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    columns: list[Any] = [TextColumn("[bold]{task.description}"), BarColumn(),
                          MofNCompleteColumn()]
    if unit:
        columns.append(TextColumn("{task.fields[rate]} " + unit + "/s"))
    columns.append(TimeElapsedColumn())
    if eta:
        columns += [TextColumn("ETA"), TimeRemainingColumn()]
    return Progress(*columns, console=Console(stderr=True), transient=transient)
