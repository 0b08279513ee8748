"""`neurofeat survival` through Typer's CliRunner on a small store."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from neurofeat.cli import app

runner = CliRunner()
N = 90


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    from neurofeat.store import Store, append_embeddings, write_tables

    root = tmp_path_factory.mktemp("survival-cli") / "store"
    rng = np.random.default_rng(0)
    store = Store.open(root, create=True)
    ids = [f"GBM-{i:03d}" for i in range(N)]
    sites = np.array(["UCSF", "UPenn", "CUIMC"])[np.arange(N) % 3]
    X = rng.standard_normal((N, 16)).astype(np.float32)
    lp = 0.8 * X[:, :2].sum(axis=1)
    t_event = rng.exponential(400 * np.exp(-lp)) + 1
    t_cens = rng.uniform(300, 1500, N)
    idh1 = np.zeros(N, bool)
    idh1[:6] = True  # outside the os cohort (IDH1 wild-type grade 4)
    write_tables(store, {
        "patients": pa.table({"patient_id": ids, "site": sites,
                              "grade": np.full(N, 4, np.int16)}),
        "clinical": pa.table({"patient_id": ids, "idh1": idh1, "mgmt": rng.random(N) < 0.4,
                              "cdkn2a": rng.random(N) < 0.5,
                              "os_days": np.minimum(t_event, t_cens),
                              "os_event": t_event <= t_cens}),
    })
    append_embeddings(store, "dino_dro", ids, X, checkpoint_sha256="a" * 64,
                      preprocess_sha256="b" * 64)
    noisy = X + rng.standard_normal(X.shape).astype(np.float32)
    append_embeddings(store, "dino", ids, noisy, checkpoint_sha256="c" * 64,
                      preprocess_sha256="b" * 64)
    wide = np.hstack([X, rng.standard_normal((N, 1264)).astype(np.float32)])
    append_embeddings(store, "wide", ids, wide, checkpoint_sha256="d" * 64,
                      preprocess_sha256="b" * 64)
    return str(root)


def _run(store_dir, *args):
    return runner.invoke(app, ["survival", "--store", store_dir, "--backbone", "dino_dro",
                               "--model", "pca-cox", "--n-components", "3", "--bootstrap",
                               "100", "--repeats", "1", "--folds", "3", *args])


def test_survival_json_and_store(store_dir):
    from neurofeat.store import Store, connect

    result = _run(store_dir, "--json", "--by", "mgmt")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["params"]["n_patients"] == N - 6  # the cohort filter dropped IDH1-mutant
    # one row per site x metric of the primary (calibrated) inference
    metrics = {(m["site"], m["metric"]): m for m in payload["metrics"] if m["primary"]}
    assert {("all", "harrell_c"), ("all", "uno_c"), ("UCSF", "harrell_c"),
            ("all", "logrank_p"), ("all", "logrank_p_by_mgmt")} <= set(metrics)
    row = metrics[("all", "harrell_c")]
    assert row["ci_low"] <= row["estimate"] <= row["ci_high"]
    assert row["checkpoint_sha256"] == "a" * 64
    run_dir = Store.open(store_dir).root / "runs" / payload["run_id"]
    for name in ("km_all.png", "km_all.svg", "km_by_mgmt.png", "predictions.parquet"):
        assert (run_dir / name).exists()
    con = connect(Store.open(store_dir))
    stored = con.sql("SELECT estimate FROM results WHERE command = 'survival' AND "
                     f"run_id = '{payload['run_id']}' AND metric = 'harrell_c' "
                     "AND site = 'all' AND \"primary\"").fetchall()[0][0]
    assert stored == pytest.approx(row["estimate"])
    # two log-rank p rows: the permutation p (primary, calibrated) and the asymptotic
    # chi-squared p, stored as the published procedure it is, with its measured level
    stored = dict(con.sql("SELECT \"primary\", ci_method FROM results WHERE command = "
                          f"'survival' AND run_id = '{payload['run_id']}' AND metric = "
                          "'logrank_p' AND site = 'all'").fetchall())
    assert stored[True].startswith("permutation (B=99, sequential: stops at 10 exceedances "
                                   "(Besag-Clifford), outcomes permuted within site")
    assert "not calibrated" in stored[False] and "12.6 %" in stored[False]
    assert "permutation log-rank p" in stored[False]
    assert metrics[("all", "logrank_p")]["estimate"] >= 1 / 100
    assert payload["params"]["permutations"] == 99 and payload["params"]["stop_after"] == 10
    assert 10 <= payload["params"]["permutations_drawn"] <= 99


def test_survival_table_output_and_loso(store_dir):
    result = _run(store_dir, "--protocol", "loso")
    assert result.exit_code == 0, result.output
    assert "Harrell C" in result.output and "log-rank p" in result.output
    assert "published p*" in result.output and "not calibrated" in result.output
    assert "permutation test of the high/low risk groups (B = 99" in result.output
    assert "loso: 1 repeat(s) x 3 fold(s)" in result.output


def test_survival_permutations_option(store_dir):
    """--permutations B sets B (p >= 1/(B+1)); 0 leaves only the published p, primary."""
    payload = json.loads(_run(store_dir, "--json", "--permutations", "9", "--within",
                              "cdkn2a", "--jobs", "2").output)
    rows = [m for m in payload["metrics"] if m["metric"] == "logrank_p" and m["site"] == "all"]
    perm = next(m for m in rows if m["primary"])
    assert perm["ci_method"].startswith("permutation (B=9,")
    assert perm["estimate"] in {k / 10 for k in range(1, 11)}
    # the risk groups within a subgroup are CV groups too: permuted within site x subgroup
    within = [m for m in payload["metrics"] if m["metric"] == "logrank_p_within_cdkn2a"]
    assert {m["primary"] for m in within} == {True, False}
    assert "within site x cdkn2a" in next(m for m in within if m["primary"])["ci_method"]
    assert "not calibrated" in next(m for m in within if not m["primary"])["ci_method"]
    off = json.loads(_run(store_dir, "--json", "--permutations", "0").output)
    rows = [m for m in off["metrics"] if m["metric"] == "logrank_p"]
    assert rows and all(m["primary"] and "not calibrated" in m["ci_method"] for m in rows)
    text = _run(store_dir, "--permutations", "0").output
    assert "--permutations B gives the calibrated p" in text
    bad = _run(store_dir, "--permutations", "-1")
    assert bad.exit_code != 0 and "Traceback" not in bad.output


def test_cli_default_permutations_is_the_analysis_default():
    import inspect

    from neurofeat.analysis.survival import DEFAULT_PERMUTATIONS
    from neurofeat.runs import survival_run

    result = runner.invoke(app, ["survival", "--help"])
    assert "--permutations" in result.output
    default = inspect.signature(survival_run).parameters["n_permutations"].default
    assert default == DEFAULT_PERMUTATIONS
    assert f"[default: {DEFAULT_PERMUTATIONS}]" in " ".join(result.output.split())
    from neurofeat.analysis.survival.permutation import DEFAULT_STOP_AFTER

    assert inspect.signature(survival_run).parameters["stop_after"].default == \
        DEFAULT_STOP_AFTER
    assert "--stop-after" in result.output
    flat = " ".join(result.output.replace("│", " ").split())
    assert f"draw all B. [default: {DEFAULT_STOP_AFTER}]" in flat


def test_survival_stop_after_zero_draws_all(store_dir):
    """--stop-after 0: the plain p over all B permutations, (1 + g) / (B + 1)."""
    payload = json.loads(_run(store_dir, "--json", "--permutations", "19", "--stop-after",
                              "0").output)
    perm = next(m for m in payload["metrics"] if m["metric"] == "logrank_p"
                and m["site"] == "all" and m["primary"])
    assert perm["ci_method"].startswith("permutation (B=19, outcomes permuted")
    assert perm["estimate"] in {k / 20 for k in range(1, 21)}
    assert payload["params"]["permutations_drawn"] == 19


@pytest.mark.parametrize("args, message", [
    (["--task", "idh1"], "task 'idh1' is a binary task"),
    (["--site", "MGH"], "site 'MGH' has no patients"),
    (["--min-patients", "500"], "has 84 patients with survival data; at least 500"),
    (["--folds", "60"], "Use --folds"),
    (["--by", "mgmtt"], "Did you mean 'mgmt'"),
])
def test_user_errors_exit_1_without_traceback(store_dir, args, message):
    result = _run(store_dir, *args)
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output


def test_unknown_backbone(store_dir):
    result = runner.invoke(app, ["survival", "--store", store_dir, "--backbone", "dino_dr"])
    assert result.exit_code == 1
    assert "Did you mean 'dino_dro'" in result.output


@pytest.mark.slow
def test_stats_compare_survival_branch(store_dir):
    """`stats compare` on a survival task goes through analysis.survival.compare."""

    result = runner.invoke(app, ["stats", "compare", "dino_dro", "dino", "--task", "os",
                                 "--store", store_dir, "--bootstrap", "50", "--repeats", "1",
                                 "--folds", "3", "--json"])
    assert result.exit_code == 0, result.output
    tests = json.loads(result.output)["tests"]
    metrics = {t["metric"] for t in tests}
    assert metrics == {"harrell_c", "uno_c"}
    assert {t["site"] for t in tests} == {"all", "UCSF", "UPenn", "CUIMC"}
    row = next(t for t in tests if t["metric"] == "harrell_c" and t["site"] == "all"
               and t["primary"])
    assert row["ci_low_a"] <= row["estimate_a"] <= row["ci_high_a"]
    assert row["diff"] == pytest.approx(row["estimate_a"] - row["estimate_b"])
    assert 0.0 <= row["p_holm"] <= 1.0 and row["p_holm"] >= row["p_value"] - 1e-12
    # the survival command on the same backbone, folds and seed gives the same pooled C
    single = json.loads(_run(store_dir, "--json", "--model", "coxnet").output)
    pooled = next(m for m in single["metrics"]
                  if m["site"] == "all" and m["metric"] == "harrell_c" and m["primary"])
    assert pooled["estimate"] == pytest.approx(row["estimate_a"], abs=1e-9)  # JSON: 10 digits


def test_survival_prints_the_warnings_of_its_rows(store_dir):
    """A backbone with more features per training patient (1280 / 56 of 84 = 22.9x) than
    the high-dimensional factor was measured at gets the warning on its c-index
    intervals, printed and in --json."""
    args = ["survival", "--store", store_dir, "--model", "pca-cox", "--n-components", "3",
            "--bootstrap", "50", "--repeats", "1", "--folds", "3", "--permutations", "0"]
    wide = runner.invoke(app, [*args, "--backbone", "wide"], env={"COLUMNS": "200"})
    assert wide.exit_code == 0, wide.output
    assert "1280 features = 22.9x the 56 training patients per fold" in \
        " ".join(wide.output.split())
    rows = json.loads(runner.invoke(app, [*args, "--backbone", "wide", "--json"]).output)
    cindex = [r for r in rows["metrics"]
              if r["metric"] in ("harrell_c", "uno_c") and r["ci_method"] == "calibrated-t"]
    assert cindex and all("1280 features" in r["warning"] for r in cindex)
    narrow = runner.invoke(app, [*args, "--backbone", "dino_dro"], env={"COLUMNS": "200"})
    assert narrow.exit_code == 0 and "features =" not in narrow.output
