"""Protocols: out-of-fold predictions, probe reports, data fractions, LOSO, per-site."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from neurofeat.analysis.folds import stratified_kfold_plan
from neurofeat.analysis.probes import LinearProbe
from neurofeat.analysis.protocols import evaluate_probe, out_of_fold, run_probe
from neurofeat.analysis.scoring import AUC, balanced_accuracy_scorer


@pytest.fixture(scope="module")
def cohort():
    rng = np.random.default_rng(0)
    n = 90
    latent = rng.normal(size=n)
    X = np.outer(latent, rng.normal(size=12)) + rng.normal(size=(n, 12))
    y = (latent + 0.7 * rng.normal(size=n) > 0).astype(float)
    ids = np.array([f"P{i:02d}" for i in range(n)])
    sites = np.array(["A", "B", "C"])[np.arange(n) % 3]
    return X, y, ids, sites


def test_out_of_fold_equals_manual_refits(cohort):
    X, y, ids, _ = cohort
    plan = stratified_kfold_plan(ids, y.astype(bool), n_splits=3, n_repeats=2, task="t")
    oof = out_of_fold(X, y.astype(bool), plan, lambda: LinearProbe(Cs=[0.1]))
    assert np.isfinite(oof.scores).all()
    for split in list(plan.splits())[:2]:
        model = LinearProbe(Cs=[0.1]).fit(X[split.train], y[split.train].astype(bool))
        assert np.allclose(oof.scores[split.repeat, split.test],
                           model.predict_proba(X[split.test])[:, 1])
    assert oof.train_test_sizes() == pytest.approx((60.0, 30.0))


def test_probe_report_numbers(cohort):
    X, y, ids, sites = cohort
    res = run_probe(X, y, patient_ids=ids, sites=sites, task="idh1", backbone="dino",
                    n_splits=3, n_repeats=2, n_boot=200, fractions=(0.5, 1.0), knn=True)
    preds = res.predictions
    pivot = preds.pivot_table(index="patient_id", columns="repeat", values="score")
    labels = preds.groupby("patient_id")["label"].first().loc[pivot.index].to_numpy()
    expected_auc = np.mean([roc_auc_score(labels, pivot[r]) for r in pivot.columns])
    head = res.headline()
    auc = head[(head.metric == "auc") & (head.ci_method == "percentile")].iloc[0]
    assert auc.estimate == pytest.approx(expected_auc)
    assert auc.n == 90 and auc.n_pos == int(y.sum())
    site_rows = res.metrics[(res.metrics.site == "B") & (res.metrics.metric == "auc")
                            & (res.metrics.ci_method == "percentile")
                            & (res.metrics.probe == "linear") & (res.metrics.fraction == 1)]
    b = preds.site == "B"
    sub = preds[b].pivot_table(index="patient_id", columns="repeat", values="score")
    sub_labels = preds[b].groupby("patient_id")["label"].first().loc[sub.index]
    assert site_rows.estimate.iloc[0] == pytest.approx(
        np.mean([roc_auc_score(sub_labels, sub[r]) for r in sub.columns]))
    half = res.fitted[res.fitted.fraction == 0.5]
    full = res.fitted[res.fitted.fraction == 1.0]
    assert (half.n_train.to_numpy() < full.n_train.to_numpy()).all()
    assert set(res.metrics.probe) == {"linear", "knn"}
    assert "auc" in res.summary() and res.to_frame().backbone.eq("dino").all()


def test_one_class_site_is_reported_not_scored(cohort):
    X, y, ids, sites = cohort
    y = y.copy()
    y[sites == "C"] = 0
    res = run_probe(X, y, patient_ids=ids, sites=sites, task="idh1", n_splits=3, n_repeats=1,
                    n_boot=50, fractions=None, knn=False)
    c = res.metrics[(res.metrics.site == "C") & (res.metrics.metric == "auc")]
    assert c.estimate.isna().all() and (c.n_pos == 0).all()


def test_loso_and_per_site(cohort):
    X, y, ids, sites = cohort
    loso = run_probe(X, y, patient_ids=ids, sites=sites, task="idh1", protocol="loso",
                     n_boot=50, fractions=(0.5, 1.0), knn=False)
    assert loso.plan.fold_names == ("A", "B", "C")
    assert set(loso.metrics.fraction) == {1.0}             # fractions are a cv-only curve
    per_site = run_probe(X, y, patient_ids=ids, sites=sites, task="idh1", protocol="site",
                         n_splits=2, n_repeats=1, n_boot=50, fractions=None, knn=False)
    assert per_site.plan.protocol == "site"
    assert np.isfinite(per_site.headline().estimate).all()


def test_continuous_task_scored_both_ways(cohort):
    X, _, ids, sites = cohort
    value = X[:, 0] * 5 + 10
    res = run_probe(X, value, patient_ids=ids, sites=sites, task="ki67", kind="continuous",
                    threshold=10.0, n_splits=3, n_repeats=1, n_boot=50, fractions=None,
                    knn=False)
    head = res.headline()
    assert {"auc", "ba", "spearman", "mae"} <= set(head.metric)
    with pytest.raises(ValueError, match="give the threshold"):
        run_probe(X, value, patient_ids=ids, sites=sites, task="ki67", kind="continuous")


def test_evaluate_probe_ba_threshold(cohort):
    X, y, ids, sites = cohort
    labels = y.astype(bool)
    plan = stratified_kfold_plan(ids, labels, n_splits=3, n_repeats=1, task="t")
    oof = out_of_fold(X, labels, plan, lambda: LinearProbe(Cs=[0.1]))
    metrics, folds = evaluate_probe(oof, labels, sites, scorers=[AUC, balanced_accuracy_scorer()],
                                    n_boot=50, per_site=False)
    from sklearn.metrics import balanced_accuracy_score
    ba = metrics[(metrics.metric == "ba") & (metrics.ci_method == "percentile")].estimate.iloc[0]
    assert ba == pytest.approx(balanced_accuracy_score(labels, oof.scores[0] >= 0.5))
    assert len(folds[folds.metric == "auc"]) == 3


def test_loso_primary_is_the_mean_of_held_out_sites_with_doubled_variance(cohort):
    """Pooled LOSO row 'loso-z': the mean of the per-site AUCs (sklearn) +- z
    sqrt(2 sum v_s) / K, v_s the variance of sklearn's AUC over the same stratified
    resamples of the site; per-site rows: percentile primary, conditional estimand."""
    from scipy.stats import norm

    from neurofeat.analysis.bootstrap import stratified_bootstrap_indices
    from neurofeat.analysis.folds import derive_seed

    X, y, ids, sites = cohort
    res = run_probe(X, y, patient_ids=ids, sites=sites, task="idh1", protocol="loso",
                    n_boot=100, seed=3, fractions=None, knn=False)
    m = res.metrics[(res.metrics.probe == "linear") & (res.metrics.metric == "auc")]
    preds = res.predictions.set_index("patient_id").loc[ids]
    score, label = preds["score"].to_numpy(), y.astype(bool)
    values, variances = [], []
    for site in ("A", "B", "C"):
        at = np.flatnonzero(sites == site)
        values.append(roc_auc_score(label[at], score[at]))
        boot = stratified_bootstrap_indices(label[at], 100, derive_seed("bootstrap", "idh1", 3,
                                                                        site))
        variances.append(np.var([roc_auc_score(label[at][b], score[at][b]) for b in boot],
                                ddof=1))
        rows = m[m.site == site]
        primary = rows[rows.primary]
        assert list(primary.ci_method) == ["percentile"]
        assert primary.estimand.iloc[0].startswith(f"auc at held-out site {site} of the probe "
                                                   "trained on the other sites")
        assert "calibrated-t" not in set(rows.ci_method)
    pooled = m[m.site == "all"]
    z = pooled[pooled.ci_method == "loso-z"].iloc[0]
    assert z.primary and not pooled[pooled.ci_method == "calibrated-t"].primary.any()
    assert set(pooled.ci_method) == {"percentile", "bca", "delong", "calibrated-t", "loso-z"}
    half = norm.ppf(0.975) * np.sqrt(2 * np.sum(variances)) / 3
    assert z.estimate == pytest.approx(np.mean(values))
    assert z.ci_low == pytest.approx(max(0.0, np.mean(values) - half))
    assert z.ci_high == pytest.approx(min(1.0, np.mean(values) + half))
    assert z.estimand.startswith("mean over the 3 held-out sites of the auc")
    assert pooled.primary.sum() == 1


def test_cv_primary_stays_calibrated_t(cohort):
    X, y, ids, sites = cohort
    res = run_probe(X, y, patient_ids=ids, sites=sites, task="idh1", n_splits=3, n_repeats=2,
                    n_boot=50, fractions=None, knn=False)
    primary = res.metrics[res.metrics.primary & (res.metrics.site == "all")]
    assert set(primary.ci_method) == {"calibrated-t"}
    assert "loso-z" not in set(res.metrics.ci_method)


def test_sparse_folds_interval_uses_the_sparse_factor():
    """12 positives of 90 at 3 folds (4 per test fold) keep the table's factor; 9 (3 per
    test fold) get the sparse AUC factor. The primary interval is the calibrated t on
    the per-fold values either way (BA keeps its factor)."""
    from scipy import stats

    from neurofeat.analysis.correction_factors import (CALIBRATED_CORRECTION_SPARSE,
                                                       calibrated_correction)

    rng = np.random.default_rng(0)
    n = 150  # 3 folds train on 100: above the small-sample sizes
    latent = rng.normal(size=n)
    X = np.outer(latent, rng.normal(size=12)) + 2 * rng.normal(size=(n, 12))
    ids = np.array([f"P{i:02d}" for i in range(n)])
    sites = np.array(["A", "B", "C"])[np.arange(n) % 3]
    for n_pos in (12, 9):
        y = np.zeros(n)
        y[np.argsort(latent)[-n_pos:]] = 1
        res = run_probe(X, y, patient_ids=ids, sites=sites, task="idh1", n_splits=3,
                        n_repeats=2, n_boot=50, fractions=None, knn=False)
        for metric in ("auc", "ba"):
            row = res.metrics[(res.metrics.site == "all") & (res.metrics.metric == metric)
                              & (res.metrics.ci_method == "calibrated-t")].iloc[0]
            assert row.rare
            values = res.folds[res.folds.metric == metric]["value"].to_numpy()
            c = calibrated_correction(metric, "binary", minority_per_fold=n_pos / 3,
                                      n_train=100, single=True)
            assert c == (CALIBRATED_CORRECTION_SPARSE[("binary", "auc")]
                         if (metric, n_pos) == ("auc", 9) else
                         calibrated_correction(metric, "binary"))
            half = stats.t.ppf(0.975, 5) * np.sqrt((1 / 6 + c * 50 / 100) * values.var(ddof=1))
            assert row.estimate == pytest.approx(values.mean())
            assert row.ci_high == pytest.approx(min(1.0, values.mean() + half), rel=1e-10)
            assert row.ci_low == pytest.approx(max(0.0, values.mean() - half), rel=1e-10)
    assert calibrated_correction("auc", "binary", minority_per_fold=3) > \
        calibrated_correction("auc", "binary", minority_per_fold=4)
