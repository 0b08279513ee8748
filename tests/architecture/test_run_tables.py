"""Every table a run writes matches its declared schema, and is the table the run returns."""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from neurofeat.runs import compare_run, probe_run, survival_run
from neurofeat.store.schema import RUN_TABLE_SCHEMAS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analysis"))
from probe_store_helpers import make_probe_store  # noqa: E402

FAST = dict(n_repeats=1, n_splits=3, n_boot=30)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_probe_store(tmp_path_factory.mktemp("runs") / "store", n=60, dim=8)


def _check_stored(run_info, command, tables):
    for name, table in tables.items():
        stored = pq.read_table(run_info.path / f"{name}.parquet")
        declared = RUN_TABLE_SCHEMAS[command][name]
        assert stored.schema.names == declared.names, (command, name)
        assert [f.type for f in stored.schema] == [f.type for f in declared], (command, name)
        returned = table.reset_index(drop=True)
        frame = stored.to_pandas()[list(returned.columns)]
        assert frame.shape == returned.shape
        for column in returned.columns:
            left, right = frame[column].tolist(), returned[column].tolist()
            assert [x if x == x else None for x in left] == \
                [x if x == x else None for x in right], (command, name, column)


def test_probe_run_tables_match_schema_and_return(store):
    run = probe_run(store, "dino", "idh1", fractions=(0.5, 1.0), **FAST)
    assert set(run.tables) == set(RUN_TABLE_SCHEMAS["probe"])
    _check_stored(run.info, "probe", run.tables)
    metrics = run.metrics
    assert (metrics["ci_level"] == 0.95).all() and (metrics["command"] == "probe").all()
    assert metrics["checkpoint_sha256"].notna().all() and (metrics["seed"] == 0).all()


def test_probe_run_continuous_task(store):
    run = probe_run(store, "dino", "ki67", knn=False, fractions=(), **FAST)
    _check_stored(run.info, "probe", run.tables)
    assert run.tables["fitted"]["alpha"].notna().all()


def test_compare_run_tables_match_schema_and_adjust_across_tasks(store):
    run = compare_run(store, "base", "dro", "all", **FAST)
    _check_stored(run.info, "stats-compare", {"tests": run.tests})
    assert "p53_ihc" in dict(run.skipped)  # no label in this store: skipped with its reason
    ran = {c.task.name for c in run.comparisons}
    assert {"idh1", "ki67", "os"} <= ran
    # Holm across the tasks that ran: for one pair/metric/test, p_holm >= p and ordered
    rows = run.tests[(run.tests["backbone_a"] == "dino") & (run.tests["metric"] == "auc")
                     & (run.tests["test"] == "corrected-t") & (run.tests["site"] == "all")]
    assert len(rows) == len(ran - {"os"})  # one per probe task that ran
    assert (rows["p_holm"] >= rows["p_value"] - 1e-15).all()
    pooled = run.tests[run.tests["pooled"]]
    assert set(pooled["backbone_a"]) == {"base"}
    assert pooled["checkpoint_sha256_a"].str.count(",").eq(3).all()
    # the forest plot of the primary differences is stored with the run, PNG and SVG
    assert run.info.figures == ("forest",)
    png, svg = run.info.path / "forest.png", run.info.path / "forest.svg"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and b"<svg" in svg.read_bytes()[:2000]


def test_survival_run_tables_match_schema(store):
    run = survival_run(store, "dino", "os", n_splits=3, n_repeats=1, n_boot=30, by="mgmt",
                       min_patients=10)
    assert set(run.tables) == set(RUN_TABLE_SCHEMAS["survival"])
    _check_stored(run.info, "survival", run.tables)
    assert (run.tables["km_by"]["label"] == "mgmt").all()
    assert "logrank_p_by_mgmt" in set(run.metrics["metric"])


def test_runs_without_writing_leave_the_store_alone(store):
    before = sorted(p.name for p in (store.root / "runs").iterdir())
    run = probe_run(store, "mae", "idh1", knn=False, fractions=(), write=False, **FAST)
    assert run.info is None and not run.metrics.empty
    assert sorted(p.name for p in (store.root / "runs").iterdir()) == before
