"""The DuckDB catalog over a store: views from ``sql/views.sql``, plus one typed
view per backbone (``emb_<backbone>``, embedding as ``FLOAT[D]``) so that DuckDB's
array functions (``array_cosine_similarity``...) work on it.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import duckdb
import pyarrow as pa

from neurofeat.store.embeddings import backbone_provenance
from neurofeat.store.layout import Store
from neurofeat.store.schema import TABLE_SCHEMAS, embeddings_schema

__all__ = ["connect", "view_name", "read_sql_file", "example_queries", "run_query", "ReadOnlyQueryError"]

_VIEW_HEADER = re.compile(r"^-- view: (\w+) \| (\S+)\s*$", re.MULTILINE)

# Schemas for views over folders that may still be empty.
_EMPTY_SCHEMAS: dict[str, pa.Schema] = {
    "patients": TABLE_SCHEMAS["patients"],
    "scans": TABLE_SCHEMAS["scans"],
    "clinical_labels": TABLE_SCHEMAS["clinical"],
    "extract_failures": TABLE_SCHEMAS["extract_failures"],
    "ingest_rejects": TABLE_SCHEMAS["ingest_rejects"],
    "embeddings": embeddings_schema(1)
    .append(pa.field("backbone", pa.string()))
    .append(pa.field("perturbation", pa.string())),
    "results": pa.schema(
        [(name, pa.string()) for name in ("run_id", "command", "backbone", "perturbation", "task", "protocol", "site", "metric")]
        + [(name, pa.float64()) for name in ("estimate", "ci_low", "ci_high")]
    ),
    "comparisons": pa.schema(
        [(name, pa.string()) for name in ("run_id", "task", "metric", "site", "backbone_a", "backbone_b", "test")]
        + [(name, pa.float64()) for name in ("diff", "p_value")]
    ),
    "runs": pa.schema([(name, pa.string()) for name in ("run_id", "command", "created_at", "neurofeat_version")]),
}

_ALLOWED_STATEMENTS = {"SELECT", "EXPLAIN"}


class ReadOnlyQueryError(ValueError):
    """A query would modify something; ``neurofeat sql`` only reads."""


def read_sql_file(name: str) -> str:
    """Text of a .sql file shipped in the package's ``sql/`` folder."""
    return resources.files("neurofeat.sql").joinpath(name).read_text()


def example_queries() -> dict[str, str]:
    """The example queries of ``sql/examples/`` by file stem."""
    folder = resources.files("neurofeat.sql").joinpath("examples")
    return {
        Path(entry.name).stem: entry.read_text()
        for entry in sorted(folder.iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".sql")
    }


def view_name(backbone: str) -> str:
    """Name of the typed per-backbone view: ``emb_`` + backbone with non-word characters as ``_``."""
    return "emb_" + re.sub(r"\W", "_", backbone)


def _sql_string(value: str) -> str:
    return value.replace("'", "''")


def connect(store: Store | str | Path, database: str = ":memory:") -> duckdb.DuckDBPyConnection:
    """A DuckDB connection on which the store's views exist.

    Parameters
    ----------
    store : Store or path
    database : str
        DuckDB database for the connection (in memory by default; the store itself is
        only Parquet files and is never modified by the views).

    Returns
    -------
    duckdb.DuckDBPyConnection
        With views ``patients``, ``scans``, ``clinical``, ``clinical_labels``,
        ``embeddings``, ``results``, ``comparisons``, ``runs``, ``extract_failures``,
        ``open_extract_failures`` (failures not since fixed by a later run),
        ``ingest_rejects``, ``emb_<backbone>`` per backbone and ``run_<table>`` for
        every other table name found in run folders.

    Examples
    --------
    >>> con = connect("neurofeat-store")  # doctest: +SKIP
    >>> con.sql("SELECT site, count(*) FROM patients GROUP BY site").pl()  # doctest: +SKIP
    """
    if not isinstance(store, Store):
        store = Store.open(store)
    root = store.root
    con = duckdb.connect(database)
    text = read_sql_file("views.sql")
    headers = list(_VIEW_HEADER.finditer(text))
    for index, header in enumerate(headers):
        name, glob = header.group(1), header.group(2)
        end = headers[index + 1].start() if index + 1 < len(headers) else len(text)
        statement = text[header.end() : end].replace("{root}", _sql_string(str(root)))
        if glob == "-" or any(root.glob(glob)):
            con.execute(statement)
        else:
            con.register(f"__empty_{name}", _EMPTY_SCHEMAS[name].empty_table())
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM __empty_{name}")
    for backbone in store.backbones():
        provenance = backbone_provenance(store, backbone)
        dim = int(provenance[0]["dim"])
        con.execute(
            f"CREATE VIEW {view_name(backbone)} AS "
            f"SELECT * REPLACE (embedding::FLOAT[{dim}] AS embedding) FROM embeddings "
            f"WHERE backbone = '{_sql_string(backbone)}'"
        )
    run_tables = sorted({p.stem for p in root.glob("runs/*/*.parquet")} - {"metrics", "tests"})
    for table in run_tables:
        if re.fullmatch(r"\w+", table):
            con.execute(
                f"CREATE VIEW run_{table} AS SELECT * FROM read_parquet("
                f"'{_sql_string(str(root))}/runs/*/{table}.parquet', union_by_name = true, filename = true)"
            )
    return con


def run_query(
    store: Store | str | Path, query: str, params: dict[str, str] | None = None
) -> duckdb.DuckDBPyRelation | None:
    """Run a read-only query (SELECT/EXPLAIN statements only) on the catalog.

    Several statements may be given; the result of the last one is returned.
    ``params`` become DuckDB variables, read in SQL with ``getvariable('name')``.

    Raises
    ------
    ReadOnlyQueryError
        If any statement is not a SELECT or EXPLAIN (COPY, ATTACH, CREATE, INSERT,
        DELETE, DROP... are refused before anything runs).
    duckdb.Error
        For SQL errors.
    """
    con = connect(store)
    statements = con.extract_statements(query)
    for statement in statements:
        kind = statement.type.name
        if kind not in _ALLOWED_STATEMENTS:
            raise ReadOnlyQueryError(
                f"only SELECT and EXPLAIN queries are allowed (the store is read-only here); "
                f"refused a {kind} statement: {statement.query.strip()[:80]}"
            )
    for name, value in (params or {}).items():
        if not re.fullmatch(r"\w+", name):
            raise ValueError(f"parameter name {name!r} must be a plain identifier")
        con.execute(f"SET VARIABLE {name} = ?", [value])
    con.execute("SET lock_configuration = true")
    if not statements:
        return None
    for statement in statements[:-1]:
        con.execute(statement.query)
    return con.sql(statements[-1].query)
