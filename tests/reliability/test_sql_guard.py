"""Escape attempts against ``neurofeat sql``: none reads or writes a file, reaches the
network, loads an extension or changes a setting, and the store stays byte for byte.

The guard is the connection (:func:`neurofeat.store.connect_sandboxed`), not a list of
statement types: each attempt below is refused by DuckDB itself (PermissionException,
or the locked configuration), which ``run_query`` reports as ``ReadOnlyQueryError``.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from reliability_helpers import CKPT_A, PRE, embeddings, make_store, patient_ids
from typer.testing import CliRunner

from neurofeat.cli import app
from neurofeat.store import ReadOnlyQueryError, append_embeddings, run_query
from neurofeat.store.catalog import as_refusal

# {S}: the store, {O}: a folder outside it, {P}: one of the store's Parquet files.
ATTACKS = [
    "EXPLAIN ANALYZE COPY (SELECT 99 AS format_version) TO '{S}/store.json' (FORMAT json)",
    "COPY (SELECT * FROM patients) TO '{S}/patients/dup.parquet' (FORMAT parquet)",
    "COPY (SELECT 'x' AS patient_id) TO '{S}/embeddings/backbone=evil/perturbation=none/x.parquet' (FORMAT parquet)",
    "COPY (SELECT 1) TO '{O}/x.csv'",
    "EXPLAIN ANALYZE COPY (SELECT 1) TO '{O}/y.csv'",
    "CREATE TABLE t AS SELECT 1 AS x; COPY t TO '{S}/t.csv'",
    "INSTALL httpfs",
    "EXPLAIN ANALYZE INSTALL httpfs",
    "LOAD httpfs",
    "FORCE INSTALL httpfs FROM 'http://127.0.0.1:9'",
    "INSTALL '{S}/evil.duckdb_extension'",
    "SELECT * FROM read_parquet('http://127.0.0.1:9/x.parquet')",
    "SELECT * FROM read_parquet('https://example.com/x.parquet')",
    "SELECT * FROM read_parquet('s3://bucket/x.parquet')",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('{S}/store.json')",
    "SELECT * FROM read_blob('{P}')",
    "SELECT * FROM '{P}'",
    "SELECT * FROM parquet_metadata('{P}')",
    "SELECT * FROM sniff_csv('/etc/passwd')",
    "SELECT * FROM glob('/etc/*')",
    "SELECT * FROM read_json_auto('{S}/store.json')",
    "SELECT * FROM read_csv('{S}/../outside/x.csv')",
    "ATTACH '{S}/evil.db'",
    "ATTACH '{O}/evil.db'",
    "EXPORT DATABASE '{S}/export'",
    "EXPORT DATABASE '{O}/export'",
    "SET enable_external_access = true",
    "RESET enable_external_access",
    "SET allowed_directories = ['/']",
    "SET allowed_paths = ['/etc/passwd']",
    "SET lock_configuration = false",
    "SET autoinstall_known_extensions = true",
    "SET profiling_output = '{S}/prof.json'",
    "SET temp_directory = '{S}/tmp'",
    "PRAGMA enable_profiling = 'json'",
]


@pytest.fixture(scope="module")
def target(tmp_path_factory) -> tuple[Path, Path, Path]:
    base = tmp_path_factory.mktemp("guard")
    store = make_store(base / "store")
    append_embeddings(store, "dino", patient_ids(), embeddings(12), checkpoint_sha256=CKPT_A, preprocess_sha256=PRE)
    outside = base / "outside"
    outside.mkdir()
    parquet = next(store.root.glob("patients/*.parquet"))
    return store.root, outside, parquet


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*") if p.is_file() and ".staging/locks" not in str(p)
    }


@pytest.mark.parametrize("attack", ATTACKS)
def test_escape_attempt_is_refused_and_changes_nothing(attack, target, monkeypatch):
    root, outside, parquet = target
    monkeypatch.chdir(outside)
    before = _snapshot(root)
    statement = attack.format(S=root, O=outside, P=parquet)
    with pytest.raises(ReadOnlyQueryError, match="only reads the store's views.*Refused: "):
        try:
            relation = run_query(root, statement)
            if relation is not None:
                relation.fetchall()
        except duckdb.Error as error:  # refusals found while fetching (sniff_csv)
            raise as_refusal(error) or error from None
    assert _snapshot(root) == before
    assert not list(outside.iterdir())


def test_sql_out_inside_the_store_is_refused(target, tmp_path):
    root, _, _ = target
    before = _snapshot(root)
    for out, fmt in ((root / "patients" / "x.parquet", "parquet"), (root / ".." / root.name / "x.csv", "csv")):
        result = CliRunner().invoke(app, ["sql", "SELECT * FROM patients", "--format", fmt, "--out", str(out),
                                          "--store", str(root)])
        assert result.exit_code == 1 and "is inside the store" in result.output
    assert _snapshot(root) == before
    result = CliRunner().invoke(app, ["sql", "SELECT * FROM patients", "--format", "csv",
                                      "--out", str(tmp_path / "x.csv"), "--store", str(root)])
    assert result.exit_code == 0 and (tmp_path / "x.csv").read_text().count("\n") == 13


def test_the_views_still_answer_through_the_sandbox(target):
    root, _, _ = target
    assert run_query(root, "SELECT count(*) FROM patients").fetchall() == [(12,)]
    assert run_query(root, "SELECT array_length(embedding) FROM emb_dino LIMIT 1").fetchall() == [(4,)]
    pivot = run_query(root, "PIVOT (SELECT site FROM patients) ON site USING count(*)").fetchall()  # was 'MULTI'
    assert pivot == [(6, 6)]
    assert run_query(root, "-- a comment first\nSELECT 1").fetchall() == [(1,)]


def test_a_query_reads_each_embedding_footer_once(target, monkeypatch):
    """The sandbox used to read every embedding file's footer three times per query."""
    import collections

    import pyarrow.parquet as pq

    from neurofeat.store import catalog

    root, _, _ = target
    reads: collections.Counter = collections.Counter()
    real = pq.read_schema

    def counting(path, *args, **kwargs):
        reads[str(path)] += 1
        return real(path, *args, **kwargs)

    monkeypatch.setattr(catalog.pq, "read_schema", counting)
    assert run_query(root, "SELECT count(*) FROM emb_dino").fetchall() == [(12,)]
    embedding_reads = {path: count for path, count in reads.items() if "/embeddings/" in path}
    assert embedding_reads and set(embedding_reads.values()) == {1}
