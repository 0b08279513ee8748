"""Stratified bootstrap: indices, vectorised AUC/BA, percentile and BCa intervals.

References: sklearn's roc_auc_score / balanced_accuracy_score on the very same resample
indices; scipy.stats.bootstrap (percentile and BCa) for the interval arithmetic.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from neurofeat.analysis.bootstrap import (bca_interval, bootstrap_ci, jackknife_indices,
                                          percentile_interval, stratified_bootstrap_indices)
from neurofeat.analysis.metrics import batched_auc, midranks, weighted_auc
from neurofeat.analysis.scoring import (AUC, MAE, SPEARMAN, balanced_accuracy_scorer,
                                        estimate, score_jackknife, score_resamples)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    y = rng.random(120) < 0.3
    scores = np.round(rng.random((3, 120)) + 0.4 * y, 2)   # ties on purpose
    return y, scores


def test_indices_keep_strata_and_are_reproducible(data):
    y, _ = data
    idx = stratified_bootstrap_indices(y, 50, seed=11)
    assert idx.shape == (50, y.size)
    assert (y[idx].sum(axis=1) == y.sum()).all()          # positives kept in every resample
    assert np.array_equal(idx, stratified_bootstrap_indices(y, 50, seed=11))
    assert not np.array_equal(idx, stratified_bootstrap_indices(y, 50, seed=12))
    sites = np.array(["A", "B", "C"])[np.arange(y.size) % 3]
    strata = np.char.add(sites, y.astype(str))
    idx2 = stratified_bootstrap_indices(strata, 20, seed=1)
    for level in np.unique(strata):
        assert ((strata[idx2] == level).sum(axis=1) == (strata == level).sum()).all()


def test_auc_and_ba_identical_to_sklearn_on_same_indices(data):
    y, scores = data
    idx = stratified_bootstrap_indices(y, 200, seed=3)
    auc = score_resamples(AUC, y, scores, idx, chunk=64)
    ba = score_resamples(balanced_accuracy_scorer(0.7), y, scores, idx)
    for b in range(0, 200, 7):
        for r in range(3):
            assert auc[b, r] == pytest.approx(roc_auc_score(y[idx[b]], scores[r, idx[b]]),
                                              abs=1e-12)
            assert ba[b, r] == pytest.approx(
                balanced_accuracy_score(y[idx[b]], scores[r, idx[b]] >= 0.7), abs=1e-12)


def test_weighted_and_sorted_auc_agree(data):
    y, scores = data
    idx = stratified_bootstrap_indices(y, 30, seed=5)
    sorted_way = batched_auc(y[idx][None], scores[:, idx]).T
    counts = np.stack([np.bincount(i, minlength=y.size) for i in idx])
    assert np.allclose(weighted_auc(y, scores, counts), sorted_way, atol=1e-12)


def test_midranks_match_scipy(data):
    _, scores = data
    assert np.allclose(midranks(scores), stats.rankdata(scores, axis=-1))


def test_regression_scorers_match_scipy():
    rng = np.random.default_rng(2)
    y = rng.normal(size=60)
    pred = np.round(y + rng.normal(size=(2, 60)), 1)
    idx = stratified_bootstrap_indices(np.zeros(60), 10, seed=0)
    rho = score_resamples(SPEARMAN, y, pred, idx)
    mae = score_resamples(MAE, y, pred, idx)
    for b in range(10):
        assert rho[b, 1] == pytest.approx(stats.spearmanr(y[idx[b]], pred[1, idx[b]])[0],
                                          abs=1e-12)
        assert mae[b, 0] == pytest.approx(np.mean(np.abs(y[idx[b]] - pred[0, idx[b]])))


def test_jackknife_equals_leave_one_out_loop(data):
    y, scores = data
    jack = score_jackknife(AUC, y, scores[:1])
    assert jackknife_indices(4).tolist() == [[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]]
    for i in (0, 5, 119):
        keep = np.delete(np.arange(y.size), i)
        assert jack[i, 0] == pytest.approx(roc_auc_score(y[keep], scores[0, keep]), abs=1e-12)


def test_percentile_and_bca_match_scipy():
    # scipy draws rng.integers(0, n, (B, n)); a single stratum draws the same indices.
    rng = np.random.default_rng(1)
    x = rng.exponential(size=40)
    idx = stratified_bootstrap_indices(np.zeros(40), 999, np.random.default_rng(5))
    boot = x[idx].mean(axis=1)
    jack = x[jackknife_indices(40)].mean(axis=1)
    ci = bootstrap_ci(x.mean(), boot, jack)
    ref_bca = stats.bootstrap((x,), np.mean, n_resamples=999, method="BCa",
                              rng=np.random.default_rng(5)).confidence_interval
    ref_pct = stats.bootstrap((x,), np.mean, n_resamples=999, method="percentile",
                              rng=np.random.default_rng(5)).confidence_interval
    assert (ci.bca_low, ci.bca_high) == pytest.approx((ref_bca.low, ref_bca.high), rel=1e-12)
    assert (ci.ci_low, ci.ci_high) == pytest.approx((ref_pct.low, ref_pct.high), rel=1e-12)
    low, high = percentile_interval(boot, 0.1)
    assert low == pytest.approx(np.percentile(boot, 5))
    assert high == pytest.approx(np.percentile(boot, 95))


def test_bca_formula_by_hand():
    boot = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    jack = np.array([0.3, 0.5, 0.55, 0.6, 0.62])
    # z0 from (#below + #at-or-below) / 2B at theta = 0.45: (4 + 4) / 20 = 0.4
    z0 = stats.norm.ppf(0.4)
    d = jack.mean() - jack
    a = (d ** 3).sum() / (6 * ((d ** 2).sum()) ** 1.5)
    zl = stats.norm.ppf(0.025)
    q = stats.norm.cdf(z0 + (z0 + zl) / (1 - a * (z0 + zl)))
    low, _ = bca_interval(np.array(0.45), boot, jack, 0.05)
    assert low == pytest.approx(np.percentile(boot, 100 * q))


def test_estimate_averages_repeats(data):
    y, scores = data
    idx = stratified_bootstrap_indices(y, 100, seed=0)
    est = estimate(AUC, y, scores, idx)
    per_repeat = [roc_auc_score(y, s) for s in scores]
    assert est.estimate == pytest.approx(np.mean(per_repeat))
    boot = np.array([np.mean([roc_auc_score(y[i], s[i]) for s in scores]) for i in idx])
    assert est.ci_low == pytest.approx(np.percentile(boot, 2.5))
    assert est.ci_high == pytest.approx(np.percentile(boot, 97.5))
    assert est.bca_low <= est.estimate <= est.bca_high


def test_errors():
    with pytest.raises(ValueError, match="n_boot must be >= 1"):
        stratified_bootstrap_indices(np.zeros(3), 0, 0)
    with pytest.raises(ValueError, match="the jackknife needs n >= 2"):
        jackknife_indices(1)
