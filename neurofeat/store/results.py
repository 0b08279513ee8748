"""Writing analysis results into ``runs/<run_id>/``, where the catalog's views find them.

A run folder holds ``run.json`` (command, parameters, provenance), one Parquet file
per result table and the run's figures (PNG + SVG). It is assembled under
``.staging/`` and renamed into place in one step, so a reader sees all of it or none.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

import neurofeat
from neurofeat.store.embeddings import new_run_id
from neurofeat.store.layout import Store, StoreError, storage_error
from neurofeat.store.schema import RUN_AUTO_COLUMNS, run_table_schema
from neurofeat.store.transaction import release_run_lock, run_staging_lock

__all__ = ["RunInfo", "write_run", "conform_run_table"]


@dataclass(frozen=True)
class RunInfo:
    """Where a run's results were written."""

    run_id: str
    path: Path
    tables: tuple[str, ...]
    figures: tuple[str, ...]


def _to_arrow(table: Any, name: str) -> pa.Table:
    if isinstance(table, pa.Table):
        return table
    if hasattr(table, "to_arrow") and not hasattr(table, "to_parquet"):  # polars
        return table.to_arrow()
    try:
        return pa.Table.from_pandas(table, preserve_index=False)
    except Exception as error:  # noqa: BLE001 - re-raised with the table's name
        raise StoreError(f"result table '{name}' cannot be stored as Parquet: {error}") from None


def conform_run_table(command: str, name: str, table: Any) -> pa.Table:
    """``table`` cast to the declared schema of ``command``'s run table ``name``.

    The columns must be exactly the schema's (in any order); ``run_id``,
    ``neurofeat_version`` and ``created_at`` may be left out (``write_run`` adds them).

    Raises
    ------
    StoreError
        The table is not declared, a column is missing or unknown, or a column's values
        do not fit its declared type; the message names the command, table and columns.
    """
    try:
        schema = run_table_schema(command, name)
    except KeyError as error:
        raise StoreError(str(error.args[0])) from None
    arrow = _to_arrow(table, name)
    auto = {field.name for field in RUN_AUTO_COLUMNS}
    declared = [field for field in schema if field.name not in auto]
    present = set(arrow.column_names)
    if len(arrow.column_names) != len(present):
        dupes = sorted({c for c in arrow.column_names if arrow.column_names.count(c) > 1})
        raise StoreError(f"{command} run table '{name}' has duplicate columns {dupes}")
    missing = [f.name for f in declared if f.name not in present]
    unknown = sorted(present - {f.name for f in schema})
    if missing or unknown:
        parts = ([f"missing {missing}"] if missing else []) + \
            ([f"undeclared {unknown}"] if unknown else [])
        raise StoreError(f"{command} run table '{name}' does not match its schema: "
                         f"{'; '.join(parts)}. Declare new columns in "
                         "neurofeat/store/schema.py (RUN_TABLE_SCHEMAS).")
    columns = []
    for field in schema:
        if field.name not in present:
            continue
        column = arrow.column(field.name)
        try:
            columns.append(column.cast(field.type) if column.type != field.type else column)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
            raise StoreError(f"{command} run table '{name}', column '{field.name}': values of "
                             f"type {column.type} do not fit the declared {field.type} "
                             f"({error})") from None
    names = [f.name for f in schema if f.name in present]
    return pa.Table.from_arrays(columns, names=names)


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def write_run(
    store: Store,
    command: str,
    tables: Mapping[str, Any],
    *,
    params: Mapping[str, Any] | None = None,
    figures: Mapping[str, Any] | None = None,
    run_id: str | None = None,
    files: Mapping[str, Callable[[Path], None]] | None = None,
) -> RunInfo:
    """Store an analysis run's tables and figures atomically.

    Parameters
    ----------
    store : Store
    command : str
        The producing command (``probe``, ``survival``, ``stats-compare``...).
    tables : mapping of name to pandas/polars DataFrame or pyarrow.Table
        ``metrics`` feeds the ``results`` view, ``tests`` the ``comparisons`` view,
        any other name the ``run_<name>`` view. Each must match its declared schema
        (``RUN_TABLE_SCHEMAS[command][name]`` in :mod:`neurofeat.store.schema`);
        ``run_id``, ``neurofeat_version`` and ``created_at`` are added.
    params : mapping, optional
        Parameters of the run (seed, folds...), stored in ``run.json``.
    figures : mapping of name to matplotlib Figure, optional
        Saved as ``<name>.png`` and ``<name>.svg``.
    run_id : str, optional
    files : mapping of file name to writer, optional
        Other files of the run (e.g. a NIfTI heatmap): ``writer(path)`` writes the file
        at ``path`` inside the staged run folder, so it appears with the rest of the run
        or not at all. Names must be plain file names (no folder, no leading dot).

    Returns
    -------
    RunInfo
    """
    conformed = {name: conform_run_table(command, name, table) for name, table in tables.items()}
    run_id = run_id or new_run_id(command)
    created = datetime.now(timezone.utc)
    staging = store.staging_dir / f"run-{run_id}"
    lock = run_staging_lock(staging)  # recovery removes the folder of a killed run only
    staging.mkdir(parents=True, exist_ok=False)
    try:
        for name, arrow in conformed.items():
            n = arrow.num_rows
            for column, value, kind in (
                ("run_id", run_id, pa.string()),
                ("neurofeat_version", neurofeat.__version__, pa.string()),
            ):
                if column not in arrow.column_names:
                    arrow = arrow.append_column(column, pa.array([value] * n, kind))
            if "created_at" not in arrow.column_names:
                arrow = arrow.append_column(
                    "created_at", pa.array([created] * n, pa.timestamp("us", tz="UTC"))
                )
            pq.write_table(arrow, staging / f"{name}.parquet")
        for name, figure in (figures or {}).items():
            for suffix in ("png", "svg"):
                figure.savefig(staging / f"{name}.{suffix}", dpi=150, bbox_inches="tight")
        for name, writer in (files or {}).items():
            if Path(name).name != name or name.startswith(".") or name in ("run.json",):
                raise StoreError(f"run file name {name!r} must be a plain file name")
            writer(staging / name)
        info = {
            "run_id": run_id,
            "command": command,
            "created_at": created.isoformat(timespec="seconds"),
            "neurofeat_version": neurofeat.__version__,
            "tables": sorted(tables),
            "figures": sorted(figures or {}),
            "files": sorted(files or {}),
            "params": dict(params or {}),
        }
        (staging / "run.json").write_text(json.dumps(info, indent=2, default=_json_default))
        store.runs_dir.mkdir(parents=True, exist_ok=True)
        final = store.runs_dir / run_id
        os.rename(staging, final)
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(error, OSError):
            raise storage_error(error, f"write analysis run {run_id} into {store.root}") from None
        raise
    finally:
        release_run_lock(lock)
    return RunInfo(run_id=run_id, path=final, tables=tuple(sorted(tables)), figures=tuple(sorted(figures or {})))
