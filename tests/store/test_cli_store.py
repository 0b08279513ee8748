"""neurofeat sql / store / tasks through Typer's runner."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from neurofeat.cli import app
from neurofeat.store import append_embeddings

runner = CliRunner()


@pytest.fixture
def filled(store, ids):
    append_embeddings(store, "dino", ids, np.random.default_rng(0).normal(size=(60, 4)), checkpoint_sha256="a" * 64, preprocess_sha256="p" * 64)
    return store


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_help_lists_commands_with_examples():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("sql", "store", "tasks"):
        assert command in result.output
    for command in (["sql"], ["store", "info"], ["store", "validate"], ["store", "import"], ["tasks"]):
        help_text = invoke(*command, "--help").output
        assert "Example" in help_text, command


def test_sql_formats(filled, tmp_path):
    query = "SELECT site, count(*) AS n FROM patients GROUP BY site ORDER BY site"
    table = invoke("sql", query, "--store", filled.root)
    assert table.exit_code == 0 and "siteA" in table.output
    csv = invoke("sql", query, "--format", "csv", "--store", filled.root)
    assert csv.output.splitlines()[0] == "site,n"
    as_json = json.loads(invoke("sql", query, "--format", "json", "--store", filled.root).output)
    assert sum(r["n"] for r in as_json) == 60
    out = tmp_path / "r.parquet"
    assert invoke("sql", query, "--format", "parquet", "--out", out, "--store", filled.root).exit_code == 0
    assert pq.read_table(out).num_rows == 3


def test_sql_file_example_and_params(filled):
    result = invoke("sql", "--file", "nearest_neighbours", "-p", "backbone=dino", "-p", "patient=P001", "--format", "csv", "--store", filled.root)
    assert result.exit_code == 0, result.output
    assert len(result.output.strip().splitlines()) == 11
    assert "prevalence_by_site" in invoke("sql", "--examples").output


def test_sql_refuses_writes_and_reports_sql_errors(filled):
    target = filled.root / "store.json"
    before = target.read_bytes()
    result = invoke("sql", f"EXPLAIN ANALYZE COPY (SELECT 99 AS format_version) TO '{target}' (FORMAT json)",
                    "--store", filled.root)
    assert result.exit_code == 1 and "only reads the store's views" in result.output
    assert target.read_bytes() == before
    result = invoke("sql", "SELECT nope FROM patients", "--store", filled.root)
    assert result.exit_code == 1 and "SQL error" in result.output and "Traceback" not in result.output


def test_missing_store_is_a_clean_error(tmp_path):
    result = invoke("store", "info", "--store", tmp_path / "nowhere")
    assert result.exit_code == 1 and "no neurofeat store" in result.output


def test_store_info_and_validate(filled):
    info = invoke("store", "info", "--store", filled.root)
    assert info.exit_code == 0 and "dino" in info.output and "60 patients" in info.output
    assert invoke("store", "validate", "--store", filled.root).exit_code == 0


def test_store_validate_exits_non_zero_on_problems(filled):
    (path,) = filled.partition_dir("dino").glob("*.parquet")
    (path.parent / "part-dup.parquet").write_bytes(path.read_bytes())
    result = invoke("store", "validate", "--store", filled.root)
    assert result.exit_code == 1 and "duplicate embeddings" in result.output


def test_store_import(store, ids, tmp_path):
    path = tmp_path / "feat.csv"
    path.write_text("patient_id,a,b\n" + "\n".join(f"{p},{i},{i * 2}" for i, p in enumerate(ids)))
    result = invoke("store", "import", "--backbone", "radiomics", "--table", path, "--store", store.root)
    assert result.exit_code == 0, result.output
    assert "imported 60 of 60" in result.output


def test_tasks_with_store_counts(filled):
    result = invoke("tasks", "--store", filled.root)
    assert result.exit_code == 0
    assert "eligible" in result.output and "survival" in result.output and "ki67" in result.output
