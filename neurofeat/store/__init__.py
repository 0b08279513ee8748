"""The neurofeat store: Hive-partitioned Parquet plus a DuckDB catalog (DESIGN.md section 3).

Public API::

    Store.open(path, create=False)          open/create a store
    write_tables(store, {...})              add patients/scans/clinical rows atomically
    EmbeddingWriter / append_embeddings     streaming, resumable, atomic embedding writes
    read_xy / read_labels                   (X, y) for a task and backbone as numpy
    write_run                               analysis results into runs/<run_id>/
    connect / run_query                     DuckDB catalog (views of sql/views.sql)
    connect_sandboxed                       the catalog for untrusted SQL (no file/URL/extension)
    Store.recover                           finish interrupted commits, remove leftovers
"""

from neurofeat.store.catalog import (
    ReadOnlyQueryError,
    connect,
    connect_sandboxed,
    example_queries,
    run_query,
    view_name,
)
from neurofeat.store.embeddings import (
    CheckpointMismatchError,
    EmbeddingWriter,
    append_embeddings,
    backbone_provenance,
    identity_clash,
    new_run_id,
)
from neurofeat.store.layout import Store, StoreError, resolve_store_path
from neurofeat.store.locks import StoreLock, StoreLockedError
from neurofeat.store.reading import (
    TaskData,
    read_embeddings,
    read_labels,
    read_xy,
    task_counts,
)
from neurofeat.store.results import RunInfo, write_run
from neurofeat.store.tables import read_table, write_tables

__all__ = [
    "CheckpointMismatchError",
    "EmbeddingWriter",
    "ReadOnlyQueryError",
    "RunInfo",
    "Store",
    "StoreError",
    "StoreLock",
    "StoreLockedError",
    "TaskData",
    "append_embeddings",
    "backbone_provenance",
    "connect",
    "connect_sandboxed",
    "example_queries",
    "identity_clash",
    "new_run_id",
    "read_embeddings",
    "read_labels",
    "read_table",
    "read_xy",
    "resolve_store_path",
    "run_query",
    "task_counts",
    "view_name",
    "write_run",
    "write_tables",
]
