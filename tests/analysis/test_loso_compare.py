"""Leave-one-site-out paired comparison (`stats compare --protocol loso`) and the
seed-noise reference (`--seed-reference`).

References: per-site probes refitted here by hand on the other sites (sklearn's
LogisticRegression through LinearProbe with a fixed C) and scored with sklearn's
roc_auc_score / balanced_accuracy_score; the per-site paired test against
analysis.delong on that site's predictions; the bootstrap against explicit loops over
the same resample indices; the pooled z against scipy.stats.norm.
"""

from __future__ import annotations

import numpy as np
import pytest
from neurofeat.analysis.bootstrap import (
    percentile_interval,
    stratified_bootstrap_indices,
)
from neurofeat.analysis.compare import compare_probes
from neurofeat.analysis.delong import delong_auc, delong_test
from neurofeat.analysis.folds import FoldError, derive_seed, leave_one_site_out_plan
from neurofeat.analysis.loso import compare_loso_scores, loso_pooled_test
from neurofeat.analysis.probes import LinearProbe
from neurofeat.analysis.scoring import AUC, MAE, balanced_accuracy_scorer
from probe_store_helpers import make_probe_store
from scipy import stats
from sklearn.metrics import balanced_accuracy_score, roc_auc_score
from typer.testing import CliRunner

from neurofeat.cli import app
from neurofeat.store import append_embeddings, read_xy

runner = CliRunner()
SITES = ("S1", "S2", "S3")


@pytest.fixture(scope="module")
def cohort():
    rng = np.random.default_rng(3)
    n = 120
    z = rng.normal(size=n)
    y = (z + 0.8 * rng.normal(size=n) > 0.3).astype(float)
    sites = np.array(SITES)[rng.permutation(np.arange(n) % 3)]
    ids = np.array([f"P{i:03d}" for i in range(n)])
    emb = {"a1": np.c_[z + 0.5 * rng.normal(size=n), rng.normal(size=(n, 5))],
           "b1": np.c_[z + 1.5 * rng.normal(size=n), rng.normal(size=(n, 5))],
           "a2": np.c_[z + 0.7 * rng.normal(size=n), rng.normal(size=(n, 5))],
           "b2": rng.normal(size=(n, 6))}
    return emb, y, ids, sites


def test_loso_folds_hold_out_one_site_and_both_sides_share_them(cohort):
    emb, y, ids, sites = cohort
    plan = leave_one_site_out_plan(ids, sites, task="idh1", seed=0, y=y.astype(bool))
    splits = list(plan.splits())
    assert len(splits) == 3
    for split in splits:
        held = set(sites[split.test])
        assert len(held) == 1 and held.pop() not in set(sites[split.train])
        assert split.train.size + split.test.size == y.size
    # the plan does not depend on the backbone or the row order: shuffled rows give the
    # same site per patient
    perm = np.random.default_rng(0).permutation(y.size)
    again = leave_one_site_out_plan(ids[perm], sites[perm], task="idh1", seed=0,
                                    y=y[perm].astype(bool))
    assert (again.fold_ids[0] == plan.fold_ids[0][perm]).all()

    res = compare_probes(emb, y, patient_ids=ids, pairs=[("a1", "b1")], task="idh1",
                         protocol="loso", sites=sites, n_boot=200,
                         linear_params={"Cs": [0.1]})
    frame = res.to_frame()
    # both sides' per-site numbers are those of probes refitted on exactly the other sites
    for site in SITES:
        test = sites == site
        manual = {}
        for name in ("a1", "b1"):
            model = LinearProbe(Cs=[0.1]).fit(emb[name][~test], y[~test].astype(bool))
            manual[name] = model.predict_proba(emb[name][test])[:, 1]
        row = frame[(frame.site == site) & (frame.metric == "auc") & (frame.test == "delong")]
        assert row.estimate_a.item() == pytest.approx(roc_auc_score(y[test], manual["a1"]),
                                                      abs=1e-12)
        assert row.estimate_b.item() == pytest.approx(roc_auc_score(y[test], manual["b1"]),
                                                      abs=1e-12)
        row = frame[(frame.site == site) & (frame.metric == "ba") & (frame.primary)]
        assert row.estimate_a.item() == pytest.approx(
            balanced_accuracy_score(y[test], manual["a1"] >= 0.5), abs=1e-12)
        assert row.n.item() == test.sum() and row.n_train.item() == (~test).sum()


def test_per_site_rows_for_every_site_and_family(cohort):
    emb, y, ids, sites = cohort
    res = compare_probes(emb, y, patient_ids=ids, pairs=[("a1", "b1"), ("a2", "b2")],
                         task="idh1", protocol="loso", sites=sites, n_boot=200,
                         side_a="A", side_b="B", linear_params={"Cs": [0.1]})
    frame = res.to_frame()
    for (metric, a), group in frame.groupby(["metric", "backbone_a"]):
        assert set(group.site) == {*SITES, "all", "worst"}
        # one primary row per (site, scope); worst-site is the primary of 'worst'
        assert group[group.primary].groupby("site").size().max() == 1
    family = frame[frame.pooled]
    assert set(family.backbone_a) == {"A"} and set(family.backbone_b) == {"B"}
    # a family's per-site metric is the mean of its members'
    for site in SITES:
        rows = frame[(frame.site == site) & (frame.metric == "auc") & (frame.test == "bootstrap")]
        members = rows[~rows.pooled]
        assert rows[rows.pooled].estimate_a.item() == pytest.approx(members.estimate_a.mean())
    # pooled row = mean over sites of the per-site estimates
    pair = frame[(frame.backbone_a == "a1") & (frame.metric == "auc")]
    site_rows = pair[pair.site.isin(SITES) & (pair.test == "delong")]
    pooled = pair[(pair.site == "all") & pair.primary]
    assert pooled.test.item() == "loso-z"
    assert pooled["diff"].item() == pytest.approx(site_rows["diff"].mean())
    assert set(frame.held_out[frame.site.isin(SITES)]) == set(SITES)


def test_continuous_task_under_loso(cohort):
    """Ridge probe refitted on the other sites; Spearman (scipy) and MAE per held-out
    site, AUC of the thresholded label."""
    from neurofeat.analysis.probes import RidgeProbe

    emb, _, ids, sites = cohort
    rng = np.random.default_rng(8)
    value = emb["a1"][:, 0] * 3 + 10 + rng.normal(size=ids.size)
    res = compare_probes(emb, value, patient_ids=ids, pairs=[("a1", "b1")], task="ki67",
                         kind="continuous", threshold=10.0, metrics=("auc", "spearman", "mae"),
                         protocol="loso", sites=sites, n_boot=100)
    frame = res.to_frame()
    for site in SITES:
        test = sites == site
        pred = RidgeProbe().fit(emb["a1"][~test], value[~test]).predict(emb["a1"][test])
        rows = frame[(frame.site == site) & frame.primary].set_index("metric")
        assert rows.loc["spearman", "estimate_a"] == pytest.approx(
            stats.spearmanr(pred, value[test]).statistic, abs=1e-10)
        assert rows.loc["mae", "estimate_a"] == pytest.approx(
            np.abs(pred - value[test]).mean(), abs=1e-10)
        assert rows.loc["auc", "estimate_a"] == pytest.approx(
            roc_auc_score(value[test] >= 10.0, pred), abs=1e-12)
        assert rows.loc["auc", "test"] == "delong" and rows.loc["mae", "test"] == "bootstrap"


def _constructed():
    """A much better than B at S1 and S2, worse at S3; B's worst site is S1."""
    rng = np.random.default_rng(11)
    n_site = 60
    y = np.tile(np.r_[np.ones(20, bool), np.zeros(40, bool)], 3)
    sites = np.repeat(SITES, n_site)
    a = y * np.repeat([2.0, 2.0, 0.3], n_site) + rng.normal(size=y.size)
    b = y * np.repeat([0.2, 1.0, 1.5], n_site) + rng.normal(size=y.size)
    return y, sites, {"a": a, "b": b}


def test_worst_site_and_worst_group_on_a_constructed_example():
    y, sites, scores = _constructed()
    res = compare_loso_scores([AUC], y, y, scores, [("a", "b")], sites, task="t",
                              n_boot=500)
    frame = res.to_frame()
    aucs = {s: (roc_auc_score(y[sites == s], scores["a"][sites == s]),
                roc_auc_score(y[sites == s], scores["b"][sites == s])) for s in SITES}
    diffs = {s: va - vb for s, (va, vb) in aucs.items()}
    assert min(diffs, key=diffs.get) == "S3"
    worst = frame[(frame.site == "worst") & (frame.test == "worst-site")]
    assert worst.held_out.item() == "S3" and worst.primary.item()
    assert worst["diff"].item() == pytest.approx(diffs["S3"], abs=1e-12)
    # Bonferroni over the 3 sites: p x 3, the interval at level 1 - 0.05/3
    dl = delong_test(y[sites == "S3"], scores["a"][sites == "S3"], scores["b"][sites == "S3"],
                     alpha=0.05 / 3)
    assert worst.p_value.item() == pytest.approx(min(1.0, 3 * dl.p_value), rel=1e-10)
    assert worst.diff_ci_low.item() == pytest.approx(dl.diff_ci_low, abs=1e-10)
    assert worst.diff_ci_high.item() == pytest.approx(dl.diff_ci_high, abs=1e-10)
    assert worst.level.item() == pytest.approx(1 - 0.05 / 3)
    group = frame[(frame.site == "worst") & (frame.test == "worst-group")]
    a_min = min(aucs, key=lambda s: aucs[s][0])
    b_min = min(aucs, key=lambda s: aucs[s][1])
    assert (a_min, b_min) == ("S3", "S1")
    assert group.held_out.item() == "S3|S1"
    assert group.estimate_a.item() == pytest.approx(aucs["S3"][0], abs=1e-12)
    assert group.estimate_b.item() == pytest.approx(aucs["S1"][1], abs=1e-12)
    assert np.isnan(group.p_value.item()) and not group.primary.item()


def test_worst_site_of_a_lower_is_better_metric():
    """MAE: the worst site for A is where A - B is largest."""
    rng = np.random.default_rng(5)
    sites = np.repeat(SITES, 30)
    target = rng.normal(size=90)
    a = target + np.repeat([0.1, 0.1, 2.0], 30) * rng.normal(size=90)
    b = target + 0.5 * rng.normal(size=90)
    labels = target > 0
    res = compare_loso_scores([MAE], target, labels, {"a": a, "b": b}, [("a", "b")], sites,
                              task="t", n_boot=200)
    worst = res.to_frame().query("test == 'worst-site'")
    assert worst.held_out.item() == "S3" and worst["diff"].item() > 0


def test_per_site_delong_equals_analysis_delong():
    y, sites, scores = _constructed()
    frame = compare_loso_scores([AUC], y, y, scores, [("a", "b")], sites, task="t",
                                n_boot=200).to_frame()
    for site in SITES:
        m = sites == site
        ref = delong_test(y[m], scores["a"][m], scores["b"][m])
        ra, rb = delong_auc(y[m], scores["a"][m]), delong_auc(y[m], scores["b"][m])
        row = frame[(frame.site == site) & (frame.test == "delong")].iloc[0]
        assert row.primary
        assert row["diff"] == pytest.approx(ref.diff, rel=1e-12)
        assert row.p_value == pytest.approx(ref.p_value, rel=1e-12)
        assert row.statistic == pytest.approx(ref.z, rel=1e-12)
        assert (row.diff_ci_low, row.diff_ci_high) == pytest.approx(
            (ref.diff_ci_low, ref.diff_ci_high), rel=1e-12)
        assert (row.ci_low_a, row.ci_high_a, row.ci_low_b, row.ci_high_b) == pytest.approx(
            (ra.ci_low, ra.ci_high, rb.ci_low, rb.ci_high), rel=1e-12)
        assert "held-out site" in row.estimand and "this fit" in row.estimand


def test_per_site_bootstrap_and_pooled_z_match_explicit_loops():
    y, sites, scores = _constructed()
    ba = balanced_accuracy_scorer(0.5)
    frame = compare_loso_scores([ba], y, y, scores, [("a", "b")], sites, task="t", seed=4,
                                n_boot=300).to_frame()
    diffs, variances = [], []
    for site in SITES:
        rows = np.flatnonzero(sites == site)
        index = rows[stratified_bootstrap_indices(y[rows], 300,
                                                  derive_seed("bootstrap", "t", 4, "loso",
                                                              site))]
        boot = np.array([balanced_accuracy_score(y[i], scores["a"][i] >= 0.5)
                         - balanced_accuracy_score(y[i], scores["b"][i] >= 0.5)
                         for i in index])
        point = (balanced_accuracy_score(y[rows], scores["a"][rows] >= 0.5)
                 - balanced_accuracy_score(y[rows], scores["b"][rows] >= 0.5))
        row = frame[(frame.site == site) & (frame.test == "bootstrap")].iloc[0]
        assert row.primary  # no DeLong for BA: the bootstrap is primary
        low, high = percentile_interval(boot, 0.05)
        assert row["diff"] == pytest.approx(point, abs=1e-12)
        assert (row.diff_ci_low, row.diff_ci_high) == pytest.approx((low, high), abs=1e-12)
        assert row.p_value == pytest.approx(
            min(1, 2 * min(np.mean(boot <= 0), np.mean(boot >= 0))), abs=1e-12)
        diffs.append(point)
        variances.append(boot.var(ddof=1))
    pooled = frame[(frame.site == "all") & (frame.test == "loso-z")].iloc[0]
    se = np.sqrt(2 * np.sum(variances)) / 3
    assert pooled["diff"] == pytest.approx(np.mean(diffs), abs=1e-12)
    assert pooled.p_value == pytest.approx(2 * stats.norm.sf(abs(np.mean(diffs)) / se),
                                           rel=1e-9)
    assert pooled.diff_ci_high - pooled.diff_ci_low == pytest.approx(
        2 * stats.norm.ppf(0.975) * se, rel=1e-9)
    assert loso_pooled_test(np.array(diffs), np.array(variances))[4] == pytest.approx(
        pooled.p_value)


def test_bad_designs_are_named(cohort):
    emb, y, ids, sites = cohort
    with pytest.raises(FoldError, match="needs at least 2 sites.*only"):
        compare_probes(emb, y, patient_ids=ids, pairs=[("a1", "b1")], task="idh1",
                       protocol="loso", sites=np.full(y.size, "S1"))
    y2 = y.copy()
    y2[sites == "S2"] = 0
    with pytest.raises(FoldError, match=r"held-out site\(s\) with one class: S2 \(40 patients, "
                                        r"0 positive\).*--site S1,S3"):
        compare_probes(emb, y2, patient_ids=ids, pairs=[("a1", "b1")], task="idh1",
                       protocol="loso", sites=sites)
    with pytest.raises(ValueError, match="applies to repeated cross-validation"):
        compare_probes(emb, y, patient_ids=ids, pairs=[("a1", "b1")], task="idh1",
                       protocol="loso", sites=sites, test="corrected-t")


# ---------------------------------------------------------------- seed-noise reference


@pytest.fixture(scope="module")
def seed_store(tmp_path_factory):
    """dino, dino_s1 = dino + tiny noise (another seed of the same recipe), dino_dro =
    embeddings without the label's signal: A - B must exceed seed-to-seed variation."""
    root = tmp_path_factory.mktemp("seed") / "store"
    store = make_probe_store(root, n=120, backbones=("dino",))
    data = read_xy(store, "dino", "idh1")
    rng = np.random.default_rng(9)
    append_embeddings(store, "dino_s1", list(data.patient_ids),
                      (data.X + 0.05 * rng.normal(size=data.X.shape)).astype(np.float32),
                      checkpoint_sha256="c" * 64, preprocess_sha256="ab" * 32)
    append_embeddings(store, "dino_dro", list(data.patient_ids),
                      rng.normal(size=data.X.shape).astype(np.float32),
                      checkpoint_sha256="d" * 64, preprocess_sha256="ab" * 32)
    return root


def test_seed_reference_rows_and_verdict(seed_store):
    from neurofeat.runs import compare_run
    from neurofeat.store import Store, connect

    store = Store.open(seed_store)
    run = compare_run(store, "dino", "dino_dro", "idh1", metrics=("auc",),
                      protocol="loso", seed_reference=("dino_s1",), n_boot=300)
    tests = run.tests
    ref = tests[tests.comparison == "seed-reference"]
    main = tests[tests.comparison == "requested"]
    assert set(ref.backbone_a) == {"dino"} and set(ref.backbone_b) == {"dino_s1"}
    assert set(main.backbone_b) == {"dino_dro"}
    assert set(ref.site) == set(main.site) and (ref.protocol == "loso").all()
    m = main[main.primary & (main.site == "all")].iloc[0]
    r = ref[ref.primary & (ref.site == "all")].iloc[0]
    assert abs(m["diff"]) > abs(r["diff"]) and m.diff_ci_low > r.diff_ci_high
    assert len(run.verdicts) == 1
    assert "dino-dino_dro exceeds seed-to-seed variation" in run.verdicts[0]
    assert f"{m['diff']:+.3f}" in run.verdicts[0] and f"{r['diff']:+.3f}" in run.verdicts[0]
    # stored, and queryable by the comparison marker
    con = connect(store)
    try:
        stored = con.execute("SELECT comparison, count(*) AS n FROM comparisons WHERE run_id = ? "
                             "GROUP BY comparison ORDER BY comparison",
                             [run.info.run_id]).df()
    finally:
        con.close()
    assert dict(zip(stored.comparison, stored.n)) == {"requested": len(main),
                                                      "seed-reference": len(ref)}
    assert run.params["seed_reference_verdicts"] == list(run.verdicts)


def _runs(root) -> set[str]:
    return {p.name for p in (root / "runs").glob("*")} if (root / "runs").exists() else set()


def test_cli_loso_table_and_bad_input_stores_nothing(seed_store, tmp_path):
    env = {"COLUMNS": "220"}
    before = _runs(seed_store)
    res = runner.invoke(app, ["stats", "compare", "dino", "dino_dro", "--task", "idh1",
                              "--protocol", "loso", "--seed-reference", "dino_s1",
                              "--bootstrap", "200", "--store", str(seed_store)], env=env)
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())
    for site in ("CUIMC", "UCSF", "UPenn", "worst-site", "worst-group", "loso-z", "delong"):
        assert site in out
    assert "seed-noise reference" in out and "exceeds seed-to-seed variation" in out
    assert len(_runs(seed_store)) == len(before) + 1
    before = _runs(seed_store)
    for args, message in [
        (["--site", "CUIMC"], "needs at least 2 sites"),
        (["--test", "corrected-t"], "with --protocol loso"),
        (["--seed-reference", "dino_s9"], "seed reference 'dino_s9' is not a backbone"),
        (["--seed-reference", "dino"], "is a backbone of side 'dino' itself"),
    ]:
        argv = ["stats", "compare", "dino", "dino_dro", "--task", "idh1", "--protocol", "loso",
                "--bootstrap", "50", "--store", str(seed_store), *args]
        res = runner.invoke(app, argv, env=env)
        assert res.exit_code == 1, (args, res.output)
        assert message in " ".join(res.output.split()), (args, res.output)
        assert "Traceback" not in res.output
    assert _runs(seed_store) == before  # nothing stored


def test_cli_loso_site_with_no_positives(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path / "s"
    make_probe_store(root, backbones=("dino", "dino_dro"))
    part = next((root / "clinical").glob("*.parquet"))
    table = pq.read_table(part).to_pandas()
    patients = pq.read_table(next((root / "patients").glob("*.parquet"))).to_pandas()
    ucsf = patients.loc[patients.site == "UCSF", "patient_id"]
    table.loc[table.patient_id.isin(ucsf), "idh1"] = False
    pq.write_table(pa.Table.from_pandas(table, preserve_index=False), part)
    res = runner.invoke(app, ["stats", "compare", "dino", "dino_dro", "--task", "idh1",
                              "--protocol", "loso", "--store", str(root)],
                        env={"COLUMNS": "200"})
    assert res.exit_code == 1
    assert ("held-out site(s) with one class: UCSF (30 patients, 0 positive)"
            in " ".join(res.output.split()))
    assert _runs(root) == set()


# ---------------------------------------------------------------- survival under LOSO


@pytest.fixture(scope="module")
def survival_cohort():
    rng = np.random.default_rng(21)
    n = 150
    z = rng.normal(size=n)
    time = rng.exponential(size=n) / np.exp(0.8 * z) * 500 + 1
    censor = rng.exponential(size=n) * 900 + 1
    event = time <= censor
    time = np.minimum(time, censor)
    sites = np.array(SITES)[rng.permutation(np.arange(n) % 3)]
    ids = np.array([f"P{i:03d}" for i in range(n)])
    emb = {"a": np.c_[z + 0.5 * rng.normal(size=n), rng.normal(size=(n, 3))],
           "b": rng.normal(size=(n, 4))}
    return emb, time, event, ids, sites


def test_survival_loso_per_site_c_indices_equal_sksurv(survival_cohort):
    """Per held-out site: Harrell's C = sksurv concordance_index_censored and Uno's C =
    concordance_index_ipcw with the site's own censoring distribution and its 90th
    percentile of follow-up as tau, on risks of a Cox model refitted on the other sites."""
    from neurofeat.analysis.loso import compare_survival_loso
    from neurofeat.analysis.survival.cox import make_cox_model
    from sksurv.metrics import concordance_index_censored, concordance_index_ipcw
    from sksurv.util import Surv

    emb, time, event, ids, sites = survival_cohort
    res = compare_survival_loso(emb, time, event, patient_ids=ids, pairs=[("a", "b")],
                                sites=sites, model="pca-cox", model_params={"n_components": 2},
                                n_boot=100)
    frame = res.to_frame()
    for site in SITES:
        test = sites == site
        y_train = Surv.from_arrays(event[~test], time[~test])
        y_site = Surv.from_arrays(event[test], time[test])
        tau = float(np.quantile(time[test], 0.9))
        for name, col in (("a", "estimate_a"), ("b", "estimate_b")):
            model = make_cox_model("pca-cox", n_components=2).fit(emb[name][~test], y_train)
            risk = model.predict(emb[name][test])
            harrell = concordance_index_censored(event[test], time[test], risk)[0]
            uno = concordance_index_ipcw(y_site, y_site, risk, tau=tau)[0]
            row_h = frame[(frame.site == site) & (frame.metric == "harrell_c")].iloc[0]
            row_u = frame[(frame.site == site) & (frame.metric == "uno_c")].iloc[0]
            assert row_h[col] == pytest.approx(harrell, abs=1e-9)
            assert row_u[col] == pytest.approx(uno, abs=1e-9)
            assert row_u.tau == pytest.approx(tau)
    assert set(frame.site) == {*SITES, "all", "worst"}
    assert (frame[frame.site == "all"].query("primary").test == "loso-z").all()


def test_survival_loso_site_without_events_is_named(survival_cohort):
    from neurofeat.analysis.loso import compare_survival_loso

    emb, time, event, ids, sites = survival_cohort
    no_events = event & (sites != "S2")
    with pytest.raises(FoldError, match=r"held-out site\(s\) without events: S2 \(50 patients, "
                                        r"0 events\).*c-index"):
        compare_survival_loso(emb, time, no_events, patient_ids=ids, pairs=[("a", "b")],
                              sites=sites)
