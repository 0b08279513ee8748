"""Paired backbone comparison: pairing, identical folds/resamples, numbers vs references.

References: sklearn roc_auc_score on the same resample indices and folds (recomputed
here by explicit loops), scipy's paired tests, the corrected t-test formula, DeLong of
analysis.delong on the repeat-averaged scores, statsmodels for Holm/BH.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score
from statsmodels.stats.multitest import multipletests

from neurofeat.analysis.bootstrap import stratified_bootstrap_indices
from neurofeat.analysis.compare import adjust_across, compare_probes, compare_scores
from neurofeat.analysis.delong import delong_test
from neurofeat.analysis.folds import derive_seed, stratified_kfold_plan
from neurofeat.analysis.scoring import AUC, balanced_accuracy_scorer


@pytest.fixture(scope="module")
def oof():
    rng = np.random.default_rng(0)
    n = 80
    ids = np.array([f"P{i:02d}" for i in range(n)])
    y = rng.random(n) < 0.4
    plan = stratified_kfold_plan(ids, y, n_splits=4, n_repeats=3, task="idh1", seed=2)
    base = y + rng.normal(size=n)
    scores = {
        "a1": base + 0.6 * rng.normal(size=(3, n)),
        "b1": base + 1.0 * rng.normal(size=(3, n)),
        "a2": base + 0.7 * rng.normal(size=(3, n)),
        "b2": base + 0.9 * rng.normal(size=(3, n)),
    }
    scores = {k: 1 / (1 + np.exp(-v)) for k, v in scores.items()}
    return y, plan, scores


def test_pair_numbers_match_loops(oof):
    y, plan, scores = oof
    res = compare_scores([AUC], y, y, scores, [("a1", "b1")], plan.fold_ids, task="idh1",
                         n_train=60, n_test=20, n_boot=300, seed=2, n_folds=4)
    pc = res.pairs[0]

    def mean_auc(name, rows):
        return np.mean([roc_auc_score(y[rows], scores[name][r, rows]) for r in range(3)])

    all_rows = np.arange(y.size)
    assert pc.a.estimate == pytest.approx(mean_auc("a1", all_rows))
    assert pc.b.estimate == pytest.approx(mean_auc("b1", all_rows))
    idx = stratified_bootstrap_indices(y, 300, derive_seed("bootstrap", "idh1", 2, "all"))
    diffs = np.array([mean_auc("a1", i) - mean_auc("b1", i) for i in idx])
    assert pc.diff.ci_low == pytest.approx(np.percentile(diffs, 2.5))
    assert pc.diff.ci_high == pytest.approx(np.percentile(diffs, 97.5))
    # per-fold AUC differences -> scipy's test chosen by Shapiro-Wilk
    fold_diff = []
    for r in range(3):
        for f in range(4):
            rows = np.flatnonzero(plan.fold_ids[r] == f)
            fold_diff.append(roc_auc_score(y[rows], scores["a1"][r, rows])
                             - roc_auc_score(y[rows], scores["b1"][r, rows]))
    fold_diff = np.array(fold_diff)
    if stats.shapiro(fold_diff).pvalue > 0.05:
        assert pc.fold_test.test == "ttest"
        assert pc.fold_test.p_value == pytest.approx(stats.ttest_1samp(fold_diff, 0).pvalue)
    else:
        assert pc.fold_test.test == "wilcoxon"
        assert pc.fold_test.p_value == pytest.approx(stats.wilcoxon(fold_diff).pvalue)
    t = fold_diff.mean() / np.sqrt((1 / 12 + 20 / 60) * fold_diff.var(ddof=1))
    assert pc.corrected.statistic == pytest.approx(t)
    assert pc.corrected.p_value == pytest.approx(2 * stats.t.sf(abs(t), 11))
    dl = delong_test(y, scores["a1"].mean(axis=0), scores["b1"].mean(axis=0))
    assert pc.analytic == ("delong", pytest.approx(dl.z), pytest.approx(dl.p_value))


def test_self_comparison_is_null(oof):
    y, plan, scores = oof
    s = {"a1": scores["a1"], "copy": scores["a1"].copy()}
    res = compare_scores([AUC, balanced_accuracy_scorer()], y, y, s, [("a1", "copy")],
                         plan.fold_ids, task="idh1", n_train=60, n_test=20, n_boot=100)
    for pc in res.pairs:
        assert pc.diff.estimate == 0 and pc.diff.ci_low == 0 and pc.diff.ci_high == 0
        assert pc.fold_test.p_value == 1.0


def test_pooled_row_averages_members(oof):
    y, plan, scores = oof
    pairs = [("a1", "b1"), ("a2", "b2")]
    res = compare_scores([AUC], y, y, scores, pairs, plan.fold_ids, task="idh1", n_train=60,
                         n_test=20, n_boot=200, side_a="A", side_b="B")
    members = [p for p in res.pairs if not p.pooled]
    pooled = [p for p in res.pairs if p.pooled][0]
    assert (pooled.backbone_a, pooled.backbone_b) == ("A", "B")
    assert pooled.a.estimate == pytest.approx(np.mean([m.a.estimate for m in members]))
    assert pooled.diff.estimate == pytest.approx(np.mean([m.diff.estimate for m in members]))
    assert pooled.analytic is None
    frame = res.to_frame()
    assert {"task", "metric", "site", "backbone_a", "backbone_b", "estimate_a", "estimate_b",
            "diff", "diff_ci_low", "diff_ci_high", "test", "statistic", "p_value", "p_holm",
            "p_bh"} <= set(frame.columns)
    assert set(frame["test"]) >= {"corrected-t", "delong"}


def test_pairs_carry_each_sides_predicted_positive_share_per_fold(oof):
    # one backbone's BA variance floor is read from these; the harness dumps them
    y, plan, scores = oof
    pairs = [("a1", "b1"), ("a2", "b2")]
    res = compare_scores([AUC, balanced_accuracy_scorer(0.6)], y, y, scores, pairs,
                         plan.fold_ids, task="idh1", n_train=60, n_test=20, n_boot=50,
                         side_a="A", side_b="B", n_folds=4)

    def shares(name):
        return np.array([[np.mean(scores[name][r, plan.fold_ids[r] == f] >= 0.6)
                          for f in range(4)] for r in range(3)])

    ba = {(p.backbone_a, p.backbone_b): p for p in res.pairs if p.metric == "ba"}
    np.testing.assert_allclose(ba["a1", "b1"].shares_a, shares("a1"))
    np.testing.assert_allclose(ba["a2", "b2"].shares_b, shares("b2"))
    np.testing.assert_allclose(ba["A", "B"].shares_a, (shares("a1") + shares("a2")) / 2)
    assert all(p.shares_a is None and p.shares_b is None
               for p in res.pairs if p.metric == "auc")


def test_probes_share_folds_and_resamples():
    rng = np.random.default_rng(5)
    n = 60
    X = rng.normal(size=(n, 8))
    y = (X[:, 0] + rng.normal(size=n) > 0).astype(float)
    ids = np.array([f"P{i:02d}" for i in range(n)])
    emb = {"dino": X, "dino_dro": X.copy()}
    res = compare_probes(emb, y, patient_ids=ids, pairs=[("dino", "dino_dro")], task="idh1",
                         n_splits=3, n_repeats=2, n_boot=100)
    for pc in res.pairs:
        assert pc.a.estimate == pc.b.estimate and pc.diff.ci_low == pc.diff.ci_high == 0
    with pytest.raises(ValueError, match="spearman and mae are for continuous tasks"):
        compare_probes(emb, y, patient_ids=ids, pairs=[("dino", "dino_dro")], task="idh1",
                       metrics=("spearman",), n_boot=10)


def test_adjust_across_tasks_matches_statsmodels():
    p = [0.01, 0.04, 0.03, 0.2]
    frame = pd.DataFrame({"task": ["idh1", "mgmt", "egfr", "atrx"], "metric": "auc",
                          "backbone_a": "base", "backbone_b": "dro", "site": "all",
                          "test": ["ttest", "wilcoxon", "ttest", "ttest"], "p_value": p})
    out = adjust_across(frame, across="task")
    assert np.allclose(out["p_holm"], multipletests(p, method="holm")[1])
    assert np.allclose(out["p_bh"], multipletests(p, method="fdr_bh")[1])


def test_delong_runs_once_per_auc_pair(oof, monkeypatch):
    """The AUC's analytic hook and the DeLong row share one paired DeLong computation."""
    import neurofeat.analysis.delong as delong_module

    y, plan, scores = oof
    calls = []
    original = delong_module.delong_test

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(delong_module, "delong_test", counting)
    res = compare_scores([AUC], y, y, scores, [("a1", "b1"), ("a2", "b2")], plan.fold_ids,
                         task="idh1", n_train=60.0, n_test=20.0, n_boot=50, bca=False)
    assert len(calls) == 2  # one per pair, none for the pooled row
    ref = original(y, scores["a1"].mean(axis=0), scores["b1"].mean(axis=0))
    pair = res.pairs[0]
    assert pair.analytic == ("delong", pytest.approx(ref.z, rel=1e-12),
                             pytest.approx(ref.p_value, rel=1e-12))
    assert pair.inference("delong").p_value == pytest.approx(ref.p_value, rel=1e-12)


def test_a_pair_whose_folds_mostly_tie_is_flagged_as_unable_to_reject():
    """Both probes constant (AUC exactly 0.5) in 20 of 25 folds: the 5 differing folds
    cannot give the calibrated t p < 0.05 whatever they hold, and the row says so (the
    warning column, the summary), without being marked rare; the p it shows is no smaller
    than the stated floor. With every fold differing there is no such warning, nor for a
    published procedure that is not a t over folds."""
    from neurofeat.analysis.compare import tied_folds_warning
    from neurofeat.analysis.paired_tests import smallest_attainable_p
    from neurofeat.analysis.correction_factors import calibrated_correction

    n = 120
    ids = np.array([f"P{i:03d}" for i in range(n)])
    labels = np.arange(n) % 2 == 0
    plan = stratified_kfold_plan(ids, labels, n_splits=5, n_repeats=5, task="t", seed=0)
    rng = np.random.default_rng(5)
    a = labels + rng.normal(0, 1.0, (5, n))
    b = rng.normal(0, 1.0, (5, n))
    tied_a, tied_b = a.copy(), b.copy()
    for r in range(5):
        for f in range(5):
            if (r, f) != (r, r):      # one differing fold per repeat: 5 of 25
                in_fold = plan.fold_ids[r] == f
                tied_a[r, in_fold] = tied_b[r, in_fold] = 0.5

    def frame(scores, test="calibrated-t"):
        return compare_scores([AUC], labels, labels, scores, [("a", "b")], plan.fold_ids,
                              task="t", n_train=96, n_test=24, n_boot=20, n_folds=5,
                              kind="binary", bca=False, test=test)

    res = frame({"a": tied_a, "b": tied_b})
    row = res.to_frame().query("primary").iloc[0]
    assert "a vs b, auc: 20 of 25 folds tied" in row["warning"]
    assert "cannot reach p < 0.05" in row["warning"] and not row["rare"]
    c = calibrated_correction("auc", "binary", minority_per_fold=12, n_train=96)
    floor = smallest_attainable_p(5, 25, n_train=96, n_test=24, correction=c)
    assert floor > 0.05 and row["p_value"] >= floor
    assert f"smallest attainable p {floor:.2g}" in row["warning"]
    assert "20 of 25 folds tied" in res.summary_frame()["warning"].iloc[0]
    assert "20 of 25 folds tied" in res.summary()
    # the published corrected t (c = 1) is flagged on its own terms; Wilcoxon is not
    corrected = frame({"a": tied_a, "b": tied_b}, test="corrected-t").to_frame()
    assert "the corrected-t cannot reach" in corrected.query("primary").iloc[0]["warning"]
    wilcoxon = frame({"a": tied_a, "b": tied_b}, test="wilcoxon").to_frame()
    assert (wilcoxon["warning"] == "").all()
    # every fold differing: no warning, and the helper agrees
    untied = frame({"a": a, "b": b}).to_frame()
    assert (untied["warning"] == "").all() and not untied["rare"].any()
    assert tied_folds_warning(np.r_[np.ones(20), np.zeros(5)], n_train=96, n_test=24,
                              correction=c, alpha=0.05) == ""
