"""Reading (X, y) for a task and backbone as numpy, without per-row Python loops.

Labels come from the ``clinical`` view filtered by the task's cohort (DuckDB); the
embedding column is read with pyarrow straight from the backbone's partition folder
and scattered into one preallocated float32 matrix, so peak memory stays near twice
the bytes of X (the Arrow buffers plus X) and no row passes through Python.
"""

from __future__ import annotations

import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from neurofeat.store.embeddings import backbone_provenance
from neurofeat.store.layout import Store, StoreError
from neurofeat.store.tables import read_table
from neurofeat.tasks import Task, get_task

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["TaskData", "read_xy", "read_labels", "read_embeddings", "task_counts"]


@dataclass(frozen=True)
class TaskData:
    """Aligned arrays for one task (and backbone).

    Attributes
    ----------
    X : ndarray of shape (n_patients, n_dims), float32, or None for label-only reads
    y : ndarray of shape (n_patients,), float64
        0/1 for binary tasks, the raw value for continuous tasks, the time for survival.
    event : ndarray of shape (n_patients,), bool, or None
        Survival tasks only.
    patient_ids, sites : ndarray of shape (n_patients,), str
        Rows are sorted by patient_id, so two backbones align row by row.
    task : Task
    backbone : str or None
    perturbation : str
    checkpoint_sha256, preprocess_sha256 : str or None
    n_missing_embedding : int
        Eligible labelled patients without an embedding for this backbone.
    """

    X: np.ndarray | None
    y: np.ndarray
    event: np.ndarray | None
    patient_ids: np.ndarray
    sites: np.ndarray
    task: Task
    backbone: str | None = None
    perturbation: str = "none"
    checkpoint_sha256: str | None = None
    preprocess_sha256: str | None = None
    n_missing_embedding: int = 0
    missing_patient_ids: tuple[str, ...] = field(default=(), repr=False)

    @property
    def n(self) -> int:
        return int(self.y.shape[0])

    @property
    def y_binary(self) -> np.ndarray:
        """0/1 labels: the label itself for binary tasks, value >= threshold for continuous ones."""
        if self.task.kind == "binary":
            return self.y.astype(np.int8)
        if self.task.kind == "continuous":
            return (self.y >= self.task.threshold).astype(np.int8)
        raise ValueError(f"task '{self.task.name}' is a survival task; it has no binary label")


_CONNECTION: duckdb.DuckDBPyConnection | None = None


def _cursor() -> duckdb.DuckDBPyConnection:
    # Creating a DuckDB connection costs ~50 ms; cursors of one shared in-memory
    # connection are cheap and each has its own registered tables.
    global _CONNECTION
    if _CONNECTION is None:
        _CONNECTION = duckdb.connect()
    return _CONNECTION.cursor()


def _labels_table(store: Store, task: Task) -> pa.Table:
    columns = task.label_columns
    patient_columns = ("site", "cohort", "age", "sex", "grade", "histology")
    if not task.cohort.strip() and not set(columns) & set(patient_columns):
        # Everyone with a label: a plain Arrow join, no SQL needed.
        sites = read_table(store, "patients", ["patient_id", "site"])
        labels = read_table(store, "clinical", ["patient_id", *columns])
        for column in columns:
            labels = labels.filter(pc.is_valid(labels[column]))
        joined = labels.join(sites, "patient_id", join_type="inner")
        return joined.select(["patient_id", "site", *columns]).sort_by("patient_id")
    con = _cursor()
    patients = read_table(store, "patients", ["patient_id", *patient_columns])
    labels = read_table(store, "clinical")
    suffix = uuid.uuid4().hex
    con.register(f"p_{suffix}", patients)
    con.register(f"c_{suffix}", labels)
    not_null = " AND ".join(f'"{c}" IS NOT NULL' for c in columns)
    where = f"({task.cohort}) AND {not_null}" if task.cohort.strip() else not_null
    select = ", ".join(f'"{c}"' for c in columns)
    query = (
        f"WITH clinical AS (SELECT p.*, c.* EXCLUDE (patient_id) FROM p_{suffix} p "
        f"LEFT JOIN c_{suffix} c USING (patient_id)) "
        f"SELECT patient_id, site, {select} FROM clinical WHERE {where} ORDER BY patient_id"
    )
    try:
        return con.sql(query).to_arrow_table()
    except duckdb.Error as error:
        raise StoreError(
            f"task '{task.name}': its cohort filter or label columns do not fit the clinical view "
            f"(cohort: {task.cohort!r}; columns: {list(columns)}): {error}"
        ) from None
    finally:
        con.unregister(f"p_{suffix}")
        con.unregister(f"c_{suffix}")
        con.close()


def read_labels(store: Store, task: str | Task) -> TaskData:
    """Labels of every eligible, labelled patient of ``task`` (X is None)."""
    task = get_task(task)
    table = _labels_table(store, task)
    y, event = _label_arrays(table, task)
    return TaskData(
        X=None,
        y=y,
        event=event,
        patient_ids=table["patient_id"].to_numpy(zero_copy_only=False).astype(str),
        sites=table["site"].to_numpy(zero_copy_only=False).astype(str),
        task=task,
    )


def _label_arrays(table: pa.Table, task: Task) -> tuple[np.ndarray, np.ndarray | None]:
    if task.kind == "survival":
        y = table[task.time_column].to_numpy().astype(np.float64)
        event = table[task.event_column].to_numpy(zero_copy_only=False).astype(bool)
        return y, event
    return table[task.label].to_numpy(zero_copy_only=False).astype(np.float64), None


def _partition_files(store: Store, backbone: str, perturbation: str) -> list[str]:
    folder = store.partition_dir(backbone, perturbation)
    files = sorted(str(p) for p in folder.glob("*.parquet")) if folder.is_dir() else []
    if files:
        return files
    known = store.backbones()
    if backbone not in known:
        from neurofeat.tasks import closest_match

        guess = closest_match(backbone, known)
        hint = f" Did you mean '{guess}'?" if guess else ""
        raise StoreError(
            f"no embeddings for backbone '{backbone}' in {store.root}.{hint} "
            f"Backbones in the store: {', '.join(known) or 'none (run neurofeat extract or store import)'}."
        )
    raise StoreError(
        f"backbone '{backbone}' has no embeddings with perturbation '{perturbation}'; "
        f"it has: {', '.join(store.perturbations(backbone))}."
    )


def read_embeddings(
    store: Store, backbone: str, perturbation: str = "none", columns: tuple[str, ...] = ("patient_id", "embedding")
) -> pa.Table:
    """The committed rows of one backbone and perturbation as one Arrow table.

    Raises
    ------
    StoreError
        If the store has no such backbone/perturbation (the message lists those it has).
    """
    files = _partition_files(store, backbone, perturbation)
    return ds.dataset(files, format="parquet").to_table(columns=list(columns), use_threads=True)


def read_xy(store: Store, backbone: str, task: str | Task, *, perturbation: str = "none") -> TaskData:
    """Embeddings and labels of the eligible patients of ``task`` for ``backbone``.

    Parameters
    ----------
    store : Store
    backbone : str
    task : str or Task
    perturbation : str

    Returns
    -------
    TaskData
        ``X`` has shape (n_patients, n_dims); rows sorted by patient_id. Labelled
        patients without an embedding are left out and counted in
        ``n_missing_embedding``.

    Raises
    ------
    StoreError
        Unknown backbone, or a patient stored twice for the backbone.
    """
    task = get_task(task)
    labels = _labels_table(store, task)
    label_ids = labels["patient_id"].combine_chunks()
    files = _partition_files(store, backbone, perturbation)
    # Pass 1: ids only (small), to know where every stored row goes.
    stored_ids = pq.read_table(files, columns=["patient_id"])["patient_id"]
    position = pc.index_in(stored_ids, value_set=label_ids).to_numpy(zero_copy_only=False)
    position = np.where(np.isnan(position.astype(np.float64)), -1, position).astype(np.int64)
    wanted = position >= 0
    present = np.zeros(labels.num_rows, dtype=bool)
    present[position[wanted]] = True
    if int(wanted.sum()) != int(present.sum()):
        dup_counts = np.bincount(position[wanted], minlength=labels.num_rows)
        duplicate = label_ids[int(np.argmax(dup_counts))].as_py()
        raise StoreError(
            f"patient {duplicate!r} is stored more than once for backbone '{backbone}' "
            f"(perturbation '{perturbation}'); run `neurofeat store validate`."
        )
    # Output row of each present label row: rank among present rows (keeps patient order).
    out_row = np.cumsum(present) - 1
    dim = pq.read_schema(files[0]).field("embedding").type.list_size
    X = np.empty((int(present.sum()), dim), dtype=np.float32)
    # Pass 2: decode row groups in parallel threads, each scattered straight into X,
    # so Arrow never holds more than a few row groups (peak memory ~ X + a few MB).
    groups, start = [], 0
    for path in files:
        metadata = pq.read_metadata(path)  # parsed once; each row group's reader reuses it
        for index in range(metadata.num_row_groups):
            groups.append((path, metadata, index, start))
            start += metadata.row_group(index).num_rows

    def scatter(group: tuple[str, pq.FileMetaData, int, int]) -> None:
        path, metadata, index, first = group
        reader = pq.ParquetFile(path, metadata=metadata)
        column = reader.read_row_group(index, columns=["embedding"], use_threads=False).column(0)
        values = column.combine_chunks().flatten().to_numpy(zero_copy_only=True).reshape(-1, dim)
        sel = wanted[first : first + len(values)]
        rows = out_row[position[first : first + len(values)][sel]]
        X[rows] = values if sel.all() else values[sel]

    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        list(pool.map(scatter, groups))
    kept = labels.filter(pa.array(present))
    y, event = _label_arrays(kept, task)
    provenance = backbone_provenance(store, backbone)
    missing = label_ids.filter(pa.array(~present)).to_pylist()
    return TaskData(
        X=X,
        y=y,
        event=event,
        patient_ids=kept["patient_id"].to_numpy(zero_copy_only=False).astype(str),
        sites=kept["site"].to_numpy(zero_copy_only=False).astype(str),
        task=task,
        backbone=backbone,
        perturbation=perturbation,
        checkpoint_sha256=provenance[0].get("checkpoint_sha256") if provenance else None,
        preprocess_sha256=provenance[0].get("preprocess_sha256") if provenance else None,
        n_missing_embedding=len(missing),
        missing_patient_ids=tuple(missing),
    )


def task_counts(store: Store, tasks: "list[Task]") -> "pd.DataFrame":
    """Eligible labelled patients and positives (events for survival) per task and site.

    Returns a DataFrame with columns task, site, n_eligible, n_positive.
    """
    import pandas as pd

    rows = []
    for task in tasks:
        labels = read_labels(store, task)
        positive = labels.event if task.kind == "survival" else labels.y_binary.astype(bool)
        for site in np.unique(labels.sites):
            mask = labels.sites == site
            rows.append(
                {"task": task.name, "site": site, "n_eligible": int(mask.sum()), "n_positive": int(positive[mask].sum())}
            )
        rows.append({"task": task.name, "site": "all", "n_eligible": labels.n, "n_positive": int(positive.sum())})
    return pd.DataFrame(rows, columns=["task", "site", "n_eligible", "n_positive"])
