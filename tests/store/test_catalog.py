"""The DuckDB catalog, read-only SQL, and readers that do not use neurofeat."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from neurofeat.store import (
    ReadOnlyQueryError,
    Store,
    append_embeddings,
    connect,
    example_queries,
    run_query,
    write_run,
)

CKPT, PRE = "c" * 64, "p" * 64


@pytest.fixture
def full_store(store, ids):
    rng = np.random.default_rng(0)
    append_embeddings(store, "dino", ids, rng.normal(size=(len(ids), 8)), checkpoint_sha256=CKPT, preprocess_sha256=PRE)
    append_embeddings(store, "mae_dro", ids, rng.normal(size=(len(ids), 4)), checkpoint_sha256=CKPT, preprocess_sha256=PRE)
    return store


def test_views_exist_on_an_empty_store(tmp_path):
    con = connect(Store.open(tmp_path / "s", create=True))
    for view in ("patients", "scans", "clinical", "embeddings", "results", "comparisons", "runs", "extract_failures", "open_extract_failures", "ingest_rejects"):
        assert con.sql(f"SELECT count(*) FROM {view}").fetchall() == [(0,)]


def test_typed_views_support_array_functions(full_store, ids):
    con = connect(full_store)
    assert con.sql("SELECT typeof(embedding) FROM emb_dino LIMIT 1").fetchall() == [("FLOAT[8]",)]
    assert con.sql("SELECT typeof(embedding) FROM emb_mae_dro LIMIT 1").fetchall() == [("FLOAT[4]",)]
    got = con.sql(
        "SELECT a.patient_id, b.patient_id, array_cosine_similarity(a.embedding, b.embedding) "
        "FROM emb_dino a, emb_dino b WHERE a.patient_id = 'P000' AND b.patient_id = 'P001'"
    ).fetchall()[0][2]
    x = con.sql("SELECT embedding FROM embeddings WHERE backbone='dino' AND patient_id IN ('P000','P001') ORDER BY patient_id").fetchall()
    a, b = np.array(x[0][0]), np.array(x[1][0])
    assert got == pytest.approx(a @ b / np.linalg.norm(a) / np.linalg.norm(b), rel=1e-5)


@pytest.mark.parametrize(
    "statement",
    [
        "COPY (SELECT 1) TO 'x.csv'",
        "ATTACH 'x.db'",
        "SELECT 1; COPY (SELECT 1) TO 'x.csv'",
        "SET enable_external_access = true",
    ],
)
def test_sql_cannot_reach_files_or_settings(full_store, statement, tmp_path, monkeypatch):
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    with pytest.raises(ReadOnlyQueryError, match="only reads the store's views.*Refused: "):
        run_query(full_store, statement)
    assert not list(work.iterdir())


@pytest.mark.parametrize(
    "statement", ["CREATE TABLE t AS SELECT 1", "DROP VIEW patients", "SELECT 1; CREATE TEMP TABLE u AS SELECT 2"]
)
def test_sql_scratch_statements_touch_only_memory(full_store, statement):
    """Statements that create or drop things act on the in-memory scratch database."""
    before = sorted((p, p.stat().st_mtime_ns) for p in full_store.root.rglob("*") if p.is_file())
    run_query(full_store, statement)
    after = sorted((p, p.stat().st_mtime_ns) for p in full_store.root.rglob("*") if p.is_file())
    assert after == before
    assert run_query(full_store, "SELECT count(*) FROM patients").fetchall() == [(60,)]


def test_example_queries_run(full_store):
    examples = example_queries()
    assert {"prevalence_by_site", "missing_embeddings", "nearest_neighbours"} <= set(examples)
    prevalence = run_query(full_store, examples["prevalence_by_site"]).df()
    assert prevalence["n_patients"].sum() == 60
    neighbours = run_query(full_store, examples["nearest_neighbours"], {"backbone": "mae_dro", "patient": "P003"}).fetchall()
    assert len(neighbours) == 10 and "P003" not in [r[0] for r in neighbours]
    sims = [r[2] for r in neighbours]
    assert sims == sorted(sims, reverse=True)
    missing = run_query(full_store, examples["missing_embeddings"], {"backbone": "dino"}).fetchall()
    assert missing == []


def _declared_row(command, table, /, **values):
    """One row of a declared run table: the given values, NULL elsewhere."""
    from neurofeat.store.schema import RUN_AUTO_COLUMNS, run_table_schema

    schema = run_table_schema(command, table)
    auto = {f.name for f in RUN_AUTO_COLUMNS}
    return pa.table({f.name: pa.array([values.get(f.name)], f.type) for f in schema if f.name not in auto})


def test_results_and_run_tables_are_queryable(full_store):
    metrics = _declared_row("probe", "metrics", command="probe", backbone="dino", task="idh1", metric="auc", estimate=0.71)
    predictions = _declared_row("probe", "predictions", patient_id="P000", score=0.2)
    info = write_run(full_store, "probe", {"metrics": metrics, "predictions": predictions}, params={"seed": 3})
    con = connect(full_store)
    assert con.sql("SELECT run_id, estimate FROM results").fetchall() == [(info.run_id, 0.71)]
    assert con.sql("SELECT count(*) FROM run_predictions").fetchall() == [(1,)]
    assert con.sql("SELECT command FROM runs").fetchall() == [("probe",)]
    assert (info.path / "run.json").exists()


def test_third_party_readers_need_no_neurofeat(full_store):
    root = full_store.root
    import duckdb
    import polars as pl
    import pyarrow.dataset as ds

    # Backbones differ in dimension, so PyArrow reads one backbone at a time.
    files = [str(p) for p in (root / "embeddings").glob("backbone=dino/*/*.parquet")]
    arrow = ds.dataset(files, format="parquet", partitioning="hive", partition_base_dir=str(root / "embeddings")).to_table()
    assert arrow.num_rows == 60 and arrow["backbone"].unique().to_pylist() == ["dino"]
    frame = pl.scan_parquet(root / "embeddings/backbone=dino/**/*.parquet", hive_partitioning=True).collect()
    assert frame.height == 60 and frame["backbone"].unique().to_list() == ["dino"]
    con = duckdb.connect()
    n = con.sql(
        f"SELECT count(*) FROM read_parquet('{root}/embeddings/*/*/*.parquet', hive_partitioning=true) WHERE backbone='mae_dro'"
    ).fetchall()
    assert n == [(60,)]
    assert pl.read_parquet(root / "patients/*.parquet").height == 60


def test_run_tables_must_match_their_declared_schema(full_store):
    from neurofeat.store import StoreError

    partial = pa.table({"command": ["probe"], "backbone": ["dino"], "estimate": [0.71]})
    with pytest.raises(StoreError, match=r"probe run table 'metrics' does not match its schema: missing \['perturbation'"):
        write_run(full_store, "probe", {"metrics": partial})
    extra = _declared_row("probe", "metrics", estimate=0.5).append_column("mystery", pa.array([1]))
    with pytest.raises(StoreError, match=r"undeclared \['mystery'\]"):
        write_run(full_store, "probe", {"metrics": extra})
    with pytest.raises(StoreError, match="command 'probe' declares no run table 'scratch'"):
        write_run(full_store, "probe", {"scratch": pa.table({"x": [1]})})
    bad_type = _declared_row("probe", "metrics").set_column(
        _declared_row("probe", "metrics").schema.get_field_index("n"), "n", pa.array(["many"]))
    with pytest.raises(StoreError, match="column 'n': values of type string do not fit the declared int64"):
        write_run(full_store, "probe", {"metrics": bad_type})
    assert not list((full_store.root / "runs").glob("*")) if (full_store.root / "runs").exists() else True


def test_run_files_are_staged_with_the_run(full_store):
    from neurofeat.store import StoreError

    metrics = _declared_row("probe", "metrics", estimate=0.5)
    info = write_run(full_store, "probe", {"metrics": metrics},
                     files={"heatmap.txt": lambda path: path.write_text("map")})
    assert (info.path / "heatmap.txt").read_text() == "map"
    with pytest.raises(StoreError, match="must be a plain file name"):
        write_run(full_store, "probe", {"metrics": metrics},
                  files={"../escape.txt": lambda path: path.write_text("x")})
    assert not (full_store.root / "runs" / "escape.txt").exists()
