"""Importing features computed elsewhere (pyradiomics, another model) as a backbone."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from neurofeat.store.embeddings import append_embeddings, new_run_id
from neurofeat.store.layout import Store, StoreError
from neurofeat.store.tables import read_table

__all__ = ["ImportReport", "import_features"]


@dataclass(frozen=True)
class ImportReport:
    backbone: str
    source: str
    n_patients: int
    n_written: int
    dim: int
    dropped_columns: tuple[str, ...]
    checkpoint_sha256: str

    def summary(self) -> str:
        dropped = f"; dropped {len(self.dropped_columns)} column(s)" if self.dropped_columns else ""
        return (
            f"imported {self.n_written} of {self.n_patients} patients from {self.source} as backbone "
            f"'{self.backbone}' ({self.dim} features{dropped})"
        )


def _read(path: Path) -> pa.Table:
    """The feature table, every cell of a text table as a string (empty cells NULL).

    Text tables are read by ingest's reader (delimiter ``,``, ``;`` or tab sniffed from
    the header, a byte-order mark accepted), so a table that ingest reads imports too;
    ids are kept verbatim (``NULL`` and ``NA`` are ids, not missing values).
    """
    if not path.is_file():
        raise StoreError(f"{path} does not exist; check the path")
    if path.suffix.lower() in {".parquet", ".pq"}:
        try:
            table = pq.read_table(path)
        except (pa.ArrowException, OSError) as error:
            raise StoreError(f"{path}: not a readable Parquet file ({error})") from None
        dupes = sorted({n for n in table.column_names if table.column_names.count(n) > 1})
        if dupes:
            raise StoreError(f"{path}: column name(s) {dupes} appear more than once; rename them")
        return table
    if path.suffix.lower() in {".csv", ".tsv", ".txt", ".tab"}:
        from neurofeat.ingest.sources import InputTableError, read_rows

        try:
            header, rows = read_rows(path, what="--table")
        except InputTableError as error:
            raise StoreError(str(error)) from None
        columns = {
            name: pa.array([cells[index].strip() or None for _, cells in rows], pa.string())
            for index, name in enumerate(header)
        }
        return pa.table(columns) if columns else pa.table({})
    raise StoreError(f"{path}: unsupported feature table format (use .csv, .tsv or .parquet)")


def import_features(
    store: Store,
    backbone: str,
    table_path: str | Path,
    *,
    id_column: str = "patient_id",
    drop_columns: bool = False,
    replace: bool = False,
) -> ImportReport:
    """Store one row of numeric features per patient as embeddings of ``backbone``.

    The feature file's sha256 stands in for the checkpoint hash, so importing a
    changed file under the same name needs ``replace``.

    Raises
    ------
    StoreError
        Missing id column; a non-numeric or missing value (naming the column and the
        first bad row, 1-based as in a spreadsheet, and the patient) unless
        ``drop_columns``, which drops such columns; duplicate or unregistered patients.
    """
    path = Path(table_path)
    table = _read(path)
    if id_column not in table.column_names:
        raise StoreError(
            f"{path}: no id column '{id_column}' (columns: {table.column_names[:12]}...); "
            "name it with --id-column"
        )
    if table.num_rows == 0:
        raise StoreError(f"{path}: the table has a header but no rows; nothing to import")
    ids = table[id_column].cast(pa.string())
    if ids.null_count:
        row = int(np.flatnonzero(ids.is_null().to_numpy(zero_copy_only=False))[0]) + 1
        raise StoreError(f"{path} row {row}: '{id_column}' is empty; every row needs a patient id")
    id_values = ids.to_numpy(zero_copy_only=False).astype(str)
    unique, counts = np.unique(id_values, return_counts=True)
    if (counts > 1).any():
        raise StoreError(f"{path}: patient {str(unique[counts > 1][0])!r} has {counts.max()} rows; one row per patient")
    kept, dropped = [], []
    for name in table.column_names:
        if name == id_column:
            continue
        column = table[name]
        if pa.types.is_integer(column.type) or pa.types.is_floating(column.type) or pa.types.is_boolean(column.type):
            values = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
            bad = ~np.isfinite(values)
            problem = "missing or not finite"
        else:
            texts = column.to_pylist()
            bad = np.zeros(len(column), bool)
            for index, text in enumerate(texts):
                if text is None:
                    bad[index] = True
                    problem = "missing"
                    break
                try:
                    float(text)
                except (TypeError, ValueError):
                    bad[index] = True
                    problem = f"not numeric ({text!r})"
                    break
            else:  # text that all parses as numbers
                values = np.array(texts, dtype=np.float64)
                bad = ~np.isfinite(values)
                problem = "missing or not finite"
        if bad.any():
            if drop_columns:
                dropped.append(name)
                continue
            row = int(np.flatnonzero(bad)[0])
            raise StoreError(
                f"{path} row {row + 1} (patient {id_values[row]}), column '{name}': value is {problem}. "
                "Fix the table, or pass --drop-columns to drop every column with such values."
            )
        kept.append(values)
    if not kept:
        raise StoreError(f"{path}: no numeric feature columns left to import")
    registered = set(read_table(store, "patients", ["patient_id"])["patient_id"].to_pylist())
    unknown = [pid for pid in id_values.tolist() if pid not in registered]
    if unknown:
        raise StoreError(
            f"{path}: {len(unknown)} patient(s) are not registered in {store.root}, e.g. {unknown[:5]}; "
            "register them first with `neurofeat ingest --clinical ...`"
        )
    matrix = np.column_stack(kept).astype(np.float32)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    preprocess = hashlib.sha256(
        json.dumps({"source": "import", "id_column": id_column, "dropped": dropped}).encode()
    ).hexdigest()
    written = append_embeddings(
        store,
        backbone,
        id_values.tolist(),
        matrix,
        checkpoint_sha256=digest,
        preprocess_sha256=preprocess,
        replace=replace,
        run_id=new_run_id("import"),
    )
    return ImportReport(
        backbone=backbone,
        source=str(path),
        n_patients=len(id_values),
        n_written=written,
        dim=matrix.shape[1],
        dropped_columns=tuple(dropped),
        checkpoint_sha256=digest,
    )
