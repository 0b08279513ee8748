"""Arrow schemas of the store's tables (DESIGN.md section 3).

These schemas are the store's contract: anything that reads Hive-partitioned Parquet
(DuckDB, Polars, PyArrow, Spark) sees exactly these columns. Unknown values are NULL,
never a sentinel.
"""

from __future__ import annotations

import pyarrow as pa

__all__ = [
    "SEQUENCES",
    "BOOLEAN_MARKERS",
    "PERCENT_MARKERS",
    "CLINICAL_COLUMNS",
    "PATIENT_COLUMNS",
    "PATIENTS_SCHEMA",
    "SCANS_SCHEMA",
    "CLINICAL_SCHEMA",
    "INGEST_REJECTS_SCHEMA",
    "EXTRACT_FAILURES_SCHEMA",
    "TABLE_SCHEMAS",
    "embeddings_schema",
]

SEQUENCES: tuple[str, ...] = ("t1", "t1ce", "t2", "flair")

BOOLEAN_MARKERS: tuple[str, ...] = (
    "idh1", "mgmt", "codel_1p19q", "egfr", "atrx", "tp53", "cdkn2a", "tert",
)
PERCENT_MARKERS: tuple[str, ...] = ("ki67", "p53_ihc")

_TS = pa.timestamp("us", tz="UTC")

PATIENTS_SCHEMA = pa.schema(
    [
        pa.field("patient_id", pa.string(), nullable=False),
        pa.field("site", pa.string(), nullable=False),
        pa.field("cohort", pa.string()),
        pa.field("age", pa.float64()),
        pa.field("sex", pa.string()),
        pa.field("grade", pa.int16()),
        pa.field("histology", pa.string()),
        pa.field("ingest_run_id", pa.string()),
        pa.field("ingested_at", _TS),
    ]
)

SCANS_SCHEMA = pa.schema(
    [
        pa.field("patient_id", pa.string(), nullable=False),
        pa.field("sequence", pa.string(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("sha256", pa.string(), nullable=False),
        pa.field("shape", pa.list_(pa.int32(), 3)),
        pa.field("spacing", pa.list_(pa.float64(), 3)),
        pa.field("affine", pa.list_(pa.float64(), 16)),
        pa.field("ingest_run_id", pa.string()),
    ]
)

CLINICAL_SCHEMA = pa.schema(
    [pa.field("patient_id", pa.string(), nullable=False)]
    + [pa.field(name, pa.bool_()) for name in BOOLEAN_MARKERS]
    + [pa.field(name, pa.float64()) for name in PERCENT_MARKERS]
    + [pa.field("os_days", pa.float64()), pa.field("os_event", pa.bool_())]
)

#: Canonical clinical columns as a user sees them in the ``clinical`` view.
CLINICAL_COLUMNS: tuple[str, ...] = (
    *BOOLEAN_MARKERS, *PERCENT_MARKERS, "os_days", "os_event", "age", "sex", "grade", "histology",
)
#: Columns that live in the patients table (the rest of CLINICAL_COLUMNS live in clinical).
PATIENT_COLUMNS: tuple[str, ...] = ("site", "cohort", "age", "sex", "grade", "histology")

INGEST_REJECTS_SCHEMA = pa.schema(
    [
        pa.field("patient_id", pa.string()),
        pa.field("source", pa.string()),
        pa.field("row", pa.int32()),
        pa.field("column", pa.string()),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("ingest_run_id", pa.string()),
        pa.field("rejected_at", _TS),
    ]
)

EXTRACT_FAILURES_SCHEMA = pa.schema(
    [
        pa.field("patient_id", pa.string(), nullable=False),
        pa.field("backbone", pa.string(), nullable=False),
        pa.field("perturbation", pa.string(), nullable=False),
        pa.field("stage", pa.string()),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("checkpoint_sha256", pa.string()),
        pa.field("run_id", pa.string()),
        pa.field("failed_at", _TS),
    ]
)

#: Metadata tables written by :func:`neurofeat.store.write_tables`, by folder name.
TABLE_SCHEMAS: dict[str, pa.Schema] = {
    "patients": PATIENTS_SCHEMA,
    "scans": SCANS_SCHEMA,
    "clinical": CLINICAL_SCHEMA,
    "ingest_rejects": INGEST_REJECTS_SCHEMA,
    "extract_failures": EXTRACT_FAILURES_SCHEMA,
}


def embeddings_schema(dim: int) -> pa.Schema:
    """Schema of one embeddings part file with ``dim``-dimensional vectors.

    ``backbone`` and ``perturbation`` are not columns: they come from the Hive
    partition path ``embeddings/backbone=<b>/perturbation=<p>/``.
    """
    if dim < 1:
        raise ValueError(f"embedding dimension must be >= 1, got {dim}")
    return pa.schema(
        [
            pa.field("patient_id", pa.string(), nullable=False),
            pa.field("site", pa.string(), nullable=False),
            pa.field("embedding", pa.list_(pa.float32(), dim), nullable=False),
            pa.field("checkpoint_sha256", pa.string(), nullable=False),
            pa.field("preprocess_sha256", pa.string(), nullable=False),
            pa.field("neurofeat_version", pa.string(), nullable=False),
            pa.field("seed", pa.int64()),
            pa.field("extracted_at", _TS, nullable=False),
            pa.field("run_id", pa.string(), nullable=False),
        ]
    )
