"""The metadata tables (patients, scans, clinical, ingest_rejects, extract_failures).

Each table is a folder of ``part-<uuid>.parquet`` files that are only ever added,
never rewritten. :func:`write_tables` adds parts to several tables in one
all-or-nothing commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds

from neurofeat.store.layout import Store, StoreError, storage_error
from neurofeat.store.schema import TABLE_SCHEMAS
from neurofeat.store.transaction import Transaction

__all__ = ["conform", "read_table", "write_tables"]


def conform(table: pa.Table, schema: pa.Schema, name: str) -> pa.Table:
    """Cast ``table`` to ``schema`` (columns in schema order; missing nullable columns
    become NULL).

    Raises
    ------
    StoreError
        Naming the table and column when a required column is missing, an extra
        column is present, or a value cannot be cast.
    """
    extra = [c for c in table.column_names if c not in schema.names]
    if extra:
        raise StoreError(f"table '{name}': unexpected column(s) {extra}; allowed: {schema.names}")
    columns = []
    for field in schema:
        if field.name in table.column_names:
            column = table[field.name]
            try:
                column = column.cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
                raise StoreError(
                    f"table '{name}', column '{field.name}': cannot store values as {field.type} ({error})"
                ) from None
        elif field.nullable:
            column = pa.nulls(table.num_rows, field.type)
        else:
            raise StoreError(f"table '{name}': required column '{field.name}' is missing")
        if not field.nullable and column.null_count:
            raise StoreError(f"table '{name}', column '{field.name}': {column.null_count} missing value(s) not allowed")
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)


def read_table(store: Store, name: str, columns: list[str] | None = None) -> pa.Table:
    """All committed rows of metadata table ``name`` (an empty table if none)."""
    schema = TABLE_SCHEMAS[name]
    folder = store.table_dir(name)
    files = sorted(str(p) for p in folder.glob("*.parquet")) if folder.is_dir() else []
    if not files:
        table = schema.empty_table()
    else:
        table = ds.dataset(files, schema=schema, format="parquet").to_table()
    return table.select(columns) if columns else table


# Commit order: a reader that starts from ``patients`` (every view and analysis does)
# never sees a patient whose scans or labels are still to come.
_COMMIT_ORDER = ("ingest_rejects", "extract_failures", "scans", "clinical", "patients")
# How long a commit waits for another writer of the metadata tables to finish.
LOCK_WAIT_S = 30.0


def write_tables(store: Store, tables: Mapping[str, pa.Table | None], *, lock_held: bool = False) -> None:
    """Add rows to several metadata tables in one all-or-nothing commit.

    Parameters
    ----------
    store : Store
    tables : mapping of table name to pyarrow.Table
        Keys among ``patients``, ``scans``, ``clinical``, ``ingest_rejects``,
        ``extract_failures``; ``None`` or empty tables are skipped.

    lock_held : bool
        The caller already holds :meth:`Store.write_lock` (ingest holds it from its
        "already registered?" check to the commit); otherwise it is taken here, for
        the check and the commit, waiting up to 30 s for another writer.

    Raises
    ------
    StoreError
        If a table does not fit its schema, new patients are already registered
        (nothing is written then), or the store cannot be written (read-only, disk
        full: the message names the file).
    neurofeat.store.StoreLockedError
        If another process keeps the store's write lock for more than 30 s.
    """
    unknown = sorted(set(tables) - set(TABLE_SCHEMAS))
    if unknown:
        raise StoreError(f"unknown table(s) {unknown}; known: {sorted(TABLE_SCHEMAS)}")
    conformed = {
        name: conform(table, TABLE_SCHEMAS[name], name)
        for name, table in tables.items()
        if table is not None and table.num_rows
    }
    if not conformed:
        return
    try:
        lock = None if lock_held else store.write_lock("a commit of patients/scans/clinical").acquire(LOCK_WAIT_S)
    except OSError as error:
        raise storage_error(error, f"write to the store at {store.root}") from None
    try:
        _check_and_commit(store, conformed)
    finally:
        if lock is not None:
            lock.release()


def _check_and_commit(store: Store, conformed: dict[str, pa.Table]) -> None:
    if "patients" in conformed:
        new_ids = conformed["patients"]["patient_id"].to_numpy(zero_copy_only=False)
        unique, counts = np.unique(new_ids, return_counts=True)
        if (counts > 1).any():
            raise StoreError(f"duplicate patient_id(s) in the new rows: {list(unique[counts > 1][:10])}")
        stored = read_table(store, "patients", ["patient_id"])["patient_id"].to_numpy(zero_copy_only=False)
        clash = np.intersect1d(new_ids, stored)
        if clash.size:
            raise StoreError(
                f"{clash.size} patient(s) are already registered in {store.root}: {list(clash[:10])}; "
                "nothing was written. Remove them from the input, or ingest into a new store."
            )
    order = sorted(conformed, key=lambda name: _COMMIT_ORDER.index(name) if name in _COMMIT_ORDER else -1)
    try:
        with Transaction(store.root) as txn:
            for name in order:
                txn.write_parquet(conformed[name], f"{name}/part-{uuid.uuid4().hex}.parquet")
    except OSError as error:
        raise storage_error(error, f"write to the store at {store.root}") from None
