"""`neurofeat probe` and `neurofeat stats compare` through CliRunner on a real store."""

from __future__ import annotations

import json

import numpy as np

import pandas as pd
import pytest
from probe_store_helpers import make_probe_store
from typer.testing import CliRunner

from neurofeat.analysis.delong import delong_auc
from neurofeat.cli import app
from neurofeat.store import Store, connect

runner = CliRunner()
FAST = ["--repeats", "2", "--bootstrap", "200"]


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe") / "store"
    make_probe_store(root)
    return str(root)


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def test_probe_json_and_results_view(store_path):
    res = invoke("probe", "--backbone", "dino_dro", "--task", "idh1", "--store", store_path,
                 "--fractions", "0.5,1.0", "--json", *FAST)
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    metrics = pd.DataFrame(payload["metrics"])
    pooled = metrics[(metrics.probe == "linear") & (metrics.site == "all")
                     & (metrics.fraction == 1.0)]
    auc = pooled[(pooled.metric == "auc") & (pooled.ci_method == "percentile")].iloc[0]
    assert 0.5 < auc.estimate <= 1 and auc.ci_low < auc.estimate < auc.ci_high
    assert set(pooled.metric) == {"auc", "ba", "sensitivity", "specificity"}
    assert set(metrics.site) == {"all", "CUIMC", "UCSF", "UPenn"}
    assert set(metrics.probe) == {"linear", "knn"}
    assert set(metrics.fraction) == {0.5, 1.0}
    assert auc.n == 90 and auc.n_pos == payload["metrics"][0]["n_pos"]
    # the stored run is queryable through the results view, with provenance
    con = connect(Store.open(store_path))
    stored = con.sql(f"SELECT * FROM results WHERE run_id = '{payload['run_id']}' AND "
                     "metric = 'auc' AND site = 'all' AND probe = 'linear' AND fraction = 1 "
                     "AND ci_method = 'delong'").df()
    assert len(stored) == 1
    row = stored.iloc[0]
    assert row.command == "probe" and row.backbone == "dino_dro" and row.task == "idh1"
    assert row.checkpoint_sha256 == f"{5:064x}" and row.seed == 0
    # the DeLong CI is that of the mean out-of-fold score, recomputed independently
    preds = con.sql(f"SELECT patient_id, label, score FROM run_predictions WHERE run_id = "
                    f"'{payload['run_id']}'").df()
    assert len(preds) == 2 * 90                  # every patient once per repeat
    mean = preds.groupby("patient_id").agg(label=("label", "first"), score=("score", "mean"))
    ref = delong_auc(mean.label.to_numpy().astype(bool), mean.score.to_numpy())
    assert row.estimate == pytest.approx(ref.auc)
    assert (row.ci_low, row.ci_high) == pytest.approx((ref.ci_low, ref.ci_high))


def test_probe_table_output_loso_and_continuous(store_path):
    res = invoke("probe", "--backbone", "mae", "--task", "idh1", "--protocol", "loso",
                 "--no-knn", "--store", store_path, *FAST)
    assert res.exit_code == 0, res.output
    assert "held-out site" in res.output and "UPenn" in res.output
    res = invoke("probe", "--backbone", "mae", "--task", "ki67", "--fractions", "none",
                 "--no-knn", "--store", store_path, "--json", *FAST)
    assert res.exit_code == 0, res.output
    metrics = pd.DataFrame(json.loads(res.stdout)["metrics"])
    assert {"spearman", "mae", "auc", "ba"} <= set(metrics.metric)
    assert set(metrics.probe) == {"ridge"}


@pytest.mark.parametrize("args, message", [
    (["--backbone", "dino_dr", "--task", "idh1"], "Did you mean 'dino_dro'"),
    (["--backbone", "dino", "--task", "idh"], "unknown task 'idh'. Did you mean 'idh1'"),
    (["--backbone", "dino", "--task", "cdkn2a"],
     r"only 3 positive patients \(of 90\).*Use --folds 3 or fewer or --protocol loso"),
    (["--backbone", "dino", "--task", "idh1", "--protocol", "boot"], "--protocol must be"),
    (["--backbone", "dino", "--task", "os"], "is a survival task; use `neurofeat survival"),
])
def test_probe_user_errors(store_path, args, message):
    res = invoke("probe", *args, "--store", store_path, *FAST)
    assert res.exit_code == 1
    assert "Traceback" not in res.output
    import re
    assert re.search(message, " ".join(res.output.split())), res.output


def test_probe_site_with_one_class(tmp_path):
    root = tmp_path / "s"
    store = make_probe_store(root, backbones=("dino",))
    # relabel: nobody at UCSF is IDH-mutant
    from neurofeat.store import read_xy
    data = read_xy(store, "dino", "idh1")
    assert data.n == 90
    import pyarrow as pa
    import pyarrow.parquet as pq
    part = next((root / "clinical").glob("*.parquet"))
    table = pq.read_table(part).to_pandas()
    patients = pq.read_table(next((root / "patients").glob("*.parquet"))).to_pandas()
    ucsf = patients.loc[patients.site == "UCSF", "patient_id"]
    table.loc[table.patient_id.isin(ucsf), "idh1"] = False
    pq.write_table(pa.Table.from_pandas(table, preserve_index=False), part)
    res = invoke("probe", "--backbone", "dino", "--task", "idh1", "--protocol", "loso",
                 "--store", root, *FAST)
    assert res.exit_code == 1
    assert "site(s) with one class: UCSF (30 patients, all negative)" in " ".join(res.output.split())


def test_stats_compare_json_and_comparisons_view(store_path, tmp_path):
    csv = tmp_path / "tests.csv"
    res = invoke("stats", "compare", "base", "dro", "--task", "idh1", "--store", store_path,
                 "--json", "--csv", csv, *FAST)
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    tests = pd.DataFrame(payload["tests"])
    assert set(tests.backbone_a) == {"byol", "dino", "mae", "moco", "base"}
    assert set(tests.metric) == {"auc", "ba"}
    delong = tests[tests.test == "delong"]
    assert len(delong) == 4                       # per pair, not pooled
    pooled = tests[(tests.backbone_a == "base") & (tests.metric == "auc")]
    members = tests[(tests.backbone_a != "base") & (tests.metric == "auc")
                    & (tests.test == "corrected-t")]
    assert pooled.estimate_a.iloc[0] == pytest.approx(members.estimate_a.mean())
    assert (tests.diff_ci_low <= tests["diff"]).all() and (tests["diff"] <= tests.diff_ci_high).all()
    assert pd.read_csv(csv).shape[0] == len(tests)
    con = connect(Store.open(store_path))
    stored = con.sql(f"SELECT * FROM comparisons WHERE run_id = '{payload['run_id']}'").df()
    assert len(stored) == len(tests)
    assert stored.checkpoint_sha256_a.notna().all() and (stored.seed == 0).all()


def test_stats_compare_table_output(store_path):
    res = invoke("stats", "compare", "dino", "dino_dro", "--task", "idh1", "--metric", "auc",
                 "--test", "corrected-t", "--store", store_path, *FAST)
    assert res.exit_code == 0, res.output
    assert "dino vs dino_dro on idh1" in res.output and "corrected-t" in res.output


def test_stats_compare_mismatched_patients_and_intersect(tmp_path):
    root = tmp_path / "s"
    make_probe_store(root, backbones=("dino", "dino_dro"), skip={"dino_dro": [0, 1]})
    res = invoke("stats", "compare", "dino", "dino_dro", "--task", "idh1", "--store", root, *FAST)
    assert res.exit_code == 1
    text = " ".join(res.output.split())
    assert "dino_dro lacks 2 (e.g. P000, P001); dino lacks none" in text
    assert "--intersect" in text and "88 patients" in text
    res = invoke("stats", "compare", "dino", "dino_dro", "--task", "idh1", "--store", root,
                 "--intersect", "--json", *FAST)
    assert res.exit_code == 0, res.output
    tests = pd.DataFrame(json.loads(res.stdout)["tests"])
    assert (tests.n == 88).all()


@pytest.mark.parametrize("args, message", [
    (["base", "dro", "--task", "idh1", "--test", "z"], "--test must be one of"),
    (["base", "drox", "--task", "idh1"], "unknown backbone 'drox'. Did you mean 'dro'"),
    (["base", "dro", "--task", "idhh"], "unknown task 'idhh'"),
    (["base", "dro", "--task", "idh1", "--metric", "f1"], "unknown metric"),
])
def test_stats_compare_user_errors(store_path, args, message):
    res = invoke("stats", "compare", *args, "--store", store_path, *FAST)
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert message in " ".join(res.output.split()), res.output


def test_site_filter(store_path):
    res = invoke("probe", "--backbone", "dino", "--task", "idh1", "--site", "CUIMC",
                 "--fractions", "none", "--no-knn", "--json", "--store", store_path, *FAST)
    assert res.exit_code == 0, res.output
    metrics = pd.DataFrame(json.loads(res.stdout)["metrics"])
    assert set(metrics.site) == {"all", "CUIMC"} and (metrics.n == 30).all()
    res = invoke("stats", "compare", "dino", "dino_dro", "--task", "idh1", "--site", "UCSF",
                 "--json", "--store", store_path, "--folds", "3", *FAST)
    assert res.exit_code == 0, res.output
    tests = pd.DataFrame(json.loads(res.stdout)["tests"])
    assert (tests.n == 30).all() and (tests.cohort_sites == "UCSF").all()
    res = invoke("probe", "--backbone", "dino", "--task", "idh1", "--site", "UCFS",
                 "--store", store_path, *FAST)
    assert res.exit_code == 1
    assert "site(s) ['UCFS'] have no patient of task 'idh1'. Did you mean 'UCSF'?" in \
        " ".join(res.output.split())


def test_non_finite_embeddings_named():
    # the store refuses NaN on write; the runner re-checks what it reads (files written
    # by other tools), naming the patients
    from neurofeat.runs.inputs import check_finite

    X = np.ones((3, 4), np.float32)
    X[1, 3] = np.nan
    with pytest.raises(ValueError, match=r"backbone 'bad': 1 embedding\(s\) contain NaN or inf "
                                         r"\(patients P001\)"):
        check_finite(X, np.array(["P000", "P001", "P002"]), "bad")


def test_stats_compare_jobs_gives_the_same_numbers(store_path):
    from neurofeat.runs import compare_run

    store = Store.open(store_path)
    kwargs = dict(n_repeats=1, n_boot=50, write=False, figures=False)
    one = compare_run(store, "dino", "dino_dro", "all", **kwargs)
    started, done = [], []
    two = compare_run(store, "dino", "dino_dro", "all", jobs=2, on_start=started.append,
                      on_split=lambda: done.append(1), **kwargs)
    assert len(one.comparisons) >= 2  # several tasks, so the workers really ran
    assert [c.task.name for c in two.comparisons] == [c.task.name for c in one.comparisons]
    assert two.skipped == one.skipped
    pd.testing.assert_frame_equal(two.tests, one.tests)
    assert started == [len(one.comparisons) + len(one.skipped)] and len(done) == started[0]
    res = invoke("stats", "compare", "dino", "dino_dro", "--task", "idh1", "--jobs", "0",
                 "--store", store_path)
    assert res.exit_code != 0
