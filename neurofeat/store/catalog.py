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
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from neurofeat.store.embeddings import sql_name
from neurofeat.store.layout import Store
from neurofeat.store.schema import (
    METRICS_SCHEMA,
    TABLE_SCHEMAS,
    TESTS_SCHEMA,
    embeddings_schema,
)

__all__ = [
    "ReadOnlyQueryError",
    "as_refusal",
    "connect",
    "connect_sandboxed",
    "embedding_dims",
    "example_queries",
    "read_sql_file",
    "run_query",
    "typed_views",
    "view_name",
]

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
    "results": METRICS_SCHEMA,
    "comparisons": TESTS_SCHEMA,
    "runs": pa.schema([(name, pa.string()) for name in ("run_id", "command", "created_at", "neurofeat_version")]),
}

# Views over run tables select the columns their schema declares ({metrics_columns} and
# {tests_columns} in views.sql), so a query sees the same columns whatever runs exist.
_DECLARED_COLUMNS: dict[str, pa.Schema] = {
    "{metrics_columns}": METRICS_SCHEMA,
    "{tests_columns}": TESTS_SCHEMA,
}

_DUCKDB_TYPES = {pa.string(): "VARCHAR", pa.float64(): "DOUBLE", pa.int64(): "BIGINT",
                 pa.bool_(): "BOOLEAN", pa.timestamp("us", tz="UTC"): "TIMESTAMPTZ"}


def _declared_select(schema: pa.Schema, files) -> str:
    """The select list of a run-table view: every declared column, NULL where no file
    has it (runs written by an older neurofeat lack the columns added since)."""
    present: set[str] = set()
    declared = set(schema.names)
    for path in files:
        if declared <= present:  # one current file already has every column
            break
        try:
            present.update(pq.read_schema(path).names)
        except Exception:  # noqa: BLE001 - an unreadable file is store validate's to report
            continue
    return ", ".join(f'"{f.name}"' if f.name in present
                     else f'CAST(NULL AS {_DUCKDB_TYPES[f.type]}) AS "{f.name}"' for f in schema)


# User SQL runs on a DuckDB that can open no file, no URL and no extension; the
# settings are locked once the store's tables are registered on it.
_SANDBOX_CONFIG = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "python_enable_replacements": False,
}


class ReadOnlyQueryError(ValueError):
    """A query tried to reach beyond the store's views (a file, a URL, an extension,
    a setting); ``neurofeat sql`` only reads the store."""


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
    """Name of the typed per-backbone view: ``emb_`` + backbone with non-word characters as ``_``.

    Two backbones whose names differ only in such characters (``my-b``, ``my_b``) would
    share a view: writing the second is refused, and a store that has both anyway gets
    views named ``"emb_<exact name>"`` (quoted) for them instead (see :func:`typed_views`).
    """
    return "emb_" + sql_name(backbone)


def _quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def typed_views(backbones: list[str]) -> dict[str, str]:
    """The (quoted where needed) name of each backbone's typed view; names that would
    collide under :func:`view_name` keep their exact spelling instead."""
    plain = [view_name(b) for b in backbones]
    return {
        backbone: name if plain.count(name) == 1 else _quote_identifier("emb_" + backbone)
        for backbone, name in zip(backbones, plain)
    }


def _embedding_schemas(store: Store, backbone: str) -> dict[int, list[tuple[Path, pa.Schema]]]:
    """Each committed file of ``backbone`` with its schema, by embedding dimension (one
    footer read per file; see :func:`embedding_dims`)."""
    files: dict[int, list[tuple[Path, pa.Schema]]] = {}
    for path in sorted(store.backbone_dir(backbone).glob("perturbation=*/*.parquet")):
        try:
            schema = pq.read_schema(path)
        except (pa.ArrowException, OSError):
            continue
        kind = schema.field("embedding").type if "embedding" in schema.names else None
        dim = kind.list_size if kind is not None and pa.types.is_fixed_size_list(kind) else -1
        files.setdefault(dim, []).append((path, schema))
    return files


def embedding_dims(store: Store, backbone: str) -> dict[int, list[Path]]:
    """The committed files of ``backbone`` by embedding dimension, read from each file's
    schema (a file without a FixedSizeList ``embedding`` column, e.g. one not written
    by neurofeat, is listed under dimension ``-1``; an unreadable one is left out)."""
    return {dim: [path for path, _ in found] for dim, found in _embedding_schemas(store, backbone).items()}


def _sql_string(value: str) -> str:
    return value.replace("'", "''")


def connect(store: Store | str | Path, database: str = ":memory:", *,
            typed_embedding_views: bool = True) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection on which the store's views exist.

    Parameters
    ----------
    store : Store or path
    database : str
        DuckDB database for the connection (in memory by default; the store itself is
        only Parquet files and is never modified by the views).
    typed_embedding_views : bool
        Create the ``emb_<backbone>`` views (reads every embedding file's footer); the
        sandbox builds its own and turns this off.

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
        for placeholder, schema in _DECLARED_COLUMNS.items():
            if placeholder in statement:
                # newest first: one current run has every declared column
                newest_first = sorted(root.glob(glob), key=lambda f: f.stat().st_mtime_ns,
                                      reverse=True)
                statement = statement.replace(placeholder, _declared_select(schema, newest_first))
        if glob == "-" or any(root.glob(glob)):
            con.execute(statement)
        else:
            con.register(f"__empty_{name}", _EMPTY_SCHEMAS[name].empty_table())
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM __empty_{name}")
    for backbone, name in (typed_views(store.backbones()).items() if typed_embedding_views else ()):
        dims = [d for d in embedding_dims(store, backbone) if d > 0]
        if len(dims) != 1:  # foreign or mixed files: `store validate` names them
            continue
        con.execute(
            f"CREATE VIEW {name} AS "
            f"SELECT * REPLACE (embedding::FLOAT[{dims[0]}] AS embedding) FROM embeddings "
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


def _register(con: duckdb.DuckDBPyConnection, name: str, data: object) -> None:
    hidden = f"__nf_{name}"
    con.register(hidden, data)
    con.execute(f"CREATE VIEW {_quote_identifier(name)} AS SELECT * FROM {hidden}")


def _embedding_datasets(store: Store) -> list[tuple[str, str | None, ds.Dataset]]:
    """(backbone, typed view name or None, dataset) per backbone and dimension."""
    partitioning = ds.partitioning(
        pa.schema([("backbone", pa.string()), ("perturbation", pa.string())]), flavor="hive"
    )
    found = []
    for backbone, name in typed_views(store.backbones()).items():
        by_dim = {d: found for d, found in _embedding_schemas(store, backbone).items() if d > 0}
        for dim, found_files in sorted(by_dim.items()):
            files = [path for path, _ in found_files]
            schemas = [schema.remove_metadata() for _, schema in found_files]
            try:
                schema = pa.unify_schemas(schemas, promote_options="permissive")
            except (pa.ArrowException, TypeError):
                schema = schemas[0]
            for field in partitioning.schema:
                if field.name not in schema.names:
                    schema = schema.append(field)
            dataset = ds.dataset(
                [str(path) for path in files],
                schema=schema,
                format="parquet",
                partitioning=partitioning,
                partition_base_dir=str(store.embeddings_dir),
            )
            found.append((backbone, name if len(by_dim) == 1 else None, dataset))
    return found


def connect_sandboxed(store: Store | str | Path) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection for untrusted SQL, on which the store's views exist but that
    can open no file, no URL and no extension.

    The metadata views (``patients``, ``scans``, ``clinical``, ``results``, ``runs``...)
    are read by a separate connection and handed over as Arrow tables; the embeddings are
    handed over as lazily scanned pyarrow datasets of the committed files (one per
    backbone, ``emb_<backbone>`` typed as ``FLOAT[D]``). The connection itself has
    ``enable_external_access`` off (no file, no ``http(s)://``/``s3://``, no ``ATTACH``
    of a file, no ``COPY``/``EXPORT`` to disk, no ``INSTALL``), extension auto-install and
    auto-load off, Python replacement scans off, and ``lock_configuration`` on, so no
    statement can undo any of it. Tables or views a query creates live in memory and
    vanish with the connection.
    """
    if not isinstance(store, Store):
        store = Store.open(store)
    trusted = connect(store, typed_embedding_views=False)
    con = duckdb.connect(":memory:", config=dict(_SANDBOX_CONFIG))
    names = [header.group(1) for header in _VIEW_HEADER.finditer(read_sql_file("views.sql"))]
    names += sorted(row[0] for row in trusted.sql("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
                    if row[0].startswith("run_"))
    datasets = _embedding_datasets(store)
    for name in names:
        if name == "embeddings":
            if not datasets:
                _register(con, name, _EMPTY_SCHEMAS["embeddings"].empty_table())
                continue
            parts = []
            for index, (backbone, typed, dataset) in enumerate(datasets):
                hidden = f"__nf_emb_{index}"
                con.register(hidden, dataset)
                parts.append(f"SELECT * REPLACE (embedding::FLOAT[] AS embedding) FROM {hidden}")
                if typed is not None:
                    con.execute(f"CREATE VIEW {typed} AS SELECT * FROM {hidden}")
            con.execute("CREATE VIEW embeddings AS " + " UNION ALL BY NAME ".join(parts))
        else:
            _register(con, name, trusted.sql(f"SELECT * FROM {_quote_identifier(name)}").to_arrow_table())
    trusted.close()
    con.execute("SET lock_configuration = true")
    return con


def run_query(
    store: Store | str | Path, query: str, params: dict[str, str] | None = None
) -> duckdb.DuckDBPyRelation | None:
    """Run untrusted SQL on the store's views (:func:`connect_sandboxed`).

    Several statements may be given; the result of the last one is returned.
    ``params`` become DuckDB variables, read in SQL with ``getvariable('name')``.
    Any statement may run (``PIVOT``, ``CREATE TEMP TABLE``, ``EXPLAIN ANALYZE``...):
    the guard is the connection, which cannot reach any file, URL or extension, not a
    list of statement types.

    Raises
    ------
    ReadOnlyQueryError
        If a statement tries to read or write a file, a URL, an extension or a setting
        (the message says what the SQL can read).
    ValueError
        If a parameter name is not a plain identifier.
    duckdb.Error
        For other SQL errors.
    """
    for name in params or {}:
        if not re.fullmatch(r"[A-Za-z_]\w*", name):
            raise ValueError(
                f"parameter name {name!r} must be a plain identifier (letters, digits, _), "
                "e.g. -p backbone=dino"
            )
    con = connect_sandboxed(store)
    for name, value in (params or {}).items():
        con.execute(f"SET VARIABLE {name} = ?", [value]).fetchall()
    try:
        statements = con.extract_statements(query)
        if not statements:
            return None
        for statement in statements[:-1]:
            con.execute(statement.query).fetchall()
        return con.sql(statements[-1].query)
    except duckdb.Error as error:
        refusal = as_refusal(error)
        if refusal is None:
            raise
        raise refusal from None


def as_refusal(error: BaseException) -> ReadOnlyQueryError | None:
    """The :class:`ReadOnlyQueryError` that a DuckDB error of the sandbox amounts to (a
    file, URL, extension or setting it refused), or ``None`` for any other error. Some
    refusals only surface when a result is fetched: check errors of fetching too."""
    text = str(error)
    locked = isinstance(error, duckdb.InvalidInputException) and "configuration has been locked" in text
    if not (isinstance(error, duckdb.PermissionException) or locked):
        return None
    return ReadOnlyQueryError(
        f"neurofeat sql only reads the store's views ({', '.join(_USER_VIEWS)}, emb_<backbone>, "
        f"run_<table>); files, URLs, extensions and settings are out of its reach. Refused: "
        f"{text.splitlines()[0]}"
    )


_USER_VIEWS = (
    "patients", "scans", "clinical", "embeddings", "results", "comparisons", "runs",
    "extract_failures", "open_extract_failures", "ingest_rejects",
)
