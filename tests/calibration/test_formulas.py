"""Reference tests for the hand-written formulas of issue 13 (scipy/statsmodels/by hand)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from neurofeat.analysis.compare import RARE_ENDPOINT, bootstrap_p_value, compare_scores
from neurofeat.analysis.folds import stratified_kfold_plan
from neurofeat.analysis.paired_tests import (DEFAULT_TEST, adjust_pvalues,
                                             corrected_resampled_interval,
                                             corrected_resampled_ttest)
from neurofeat.analysis.correction_factors import (CALIBRATED_CORRECTION,
                                                   CALIBRATED_CORRECTION_HIGH_DIMENSIONAL,
                                                   CALIBRATED_CORRECTION_HIGH_DIMENSIONAL_DIFFERENCE,
                                                   CALIBRATED_CORRECTION_SINGLE,
                                                   CALIBRATED_CORRECTION_SMALL,
                                                   CALIBRATED_CORRECTION_SPARSE,
                                                   HIGH_DIMENSIONAL_MEASURED_RATIO,
                                                   SMALL_SAMPLE_N_TRAIN,
                                                   calibrated_correction,
                                                   high_dimensional_single_warning)
from neurofeat.analysis.scoring import get_scorer
from neurofeat.analysis.simulation import SimulationSetting, simulate_cohort


def test_calibrated_interval_matches_the_formula():
    rng = np.random.default_rng(4)
    values = rng.normal(0.7, 0.05, size=(5, 5))
    ci = corrected_resampled_interval(values, n_train=96, n_test=24, metric="auc")
    c = CALIBRATED_CORRECTION[("binary", "auc")]
    se = np.sqrt((1 / 25 + c * 24 / 96) * values.var(ddof=1))
    assert ci.ci_high == pytest.approx(values.mean() + stats.t.ppf(0.975, 24) * se, rel=1e-12)
    ba = corrected_resampled_interval(values, n_train=96, n_test=24, metric="ba")
    nb = corrected_resampled_interval(values, n_train=96, n_test=24,
                                      correction=CALIBRATED_CORRECTION[("binary", "ba")])
    assert ba.ci_high == pytest.approx(nb.ci_high, rel=1e-14)
    cont = corrected_resampled_interval(values, n_train=96, n_test=24, metric="auc",
                                        kind="continuous")
    se_c = np.sqrt((1 / 25 + CALIBRATED_CORRECTION[("continuous", "auc")] * 24 / 96)
                   * values.var(ddof=1))
    assert cont.se == pytest.approx(se_c, rel=1e-12)


def test_corrected_interval_matches_the_formula_with_scipy_quantiles():
    rng = np.random.default_rng(0)
    values = rng.normal(0.7, 0.05, size=(5, 5))
    ci = corrected_resampled_interval(values, n_train=96, n_test=24, level=0.95, df="k")
    # by hand: mean +- t_{0.975, k-1} sqrt((1/J + n_test/n_train) s^2), k = 5, J = 25
    se = np.sqrt((1 / 25 + 24 / 96) * values.var(ddof=1))
    half = stats.t.ppf(0.975, 4) * se
    assert ci.estimate == pytest.approx(values.mean(), rel=1e-14)
    assert ci.ci_low == pytest.approx(values.mean() - half, rel=1e-12)
    assert ci.ci_high == pytest.approx(values.mean() + half, rel=1e-12)
    assert ci.df == 4
    j_df = corrected_resampled_interval(values, n_train=96, n_test=24, df="J")
    assert j_df.ci_high - j_df.estimate == pytest.approx(stats.t.ppf(0.975, 24) * se, rel=1e-12)


@pytest.mark.parametrize("df,correction", [("k", 1.0), ("J", 1.0), ("J", 1.55)])
def test_corrected_interval_inverts_the_test(df, correction):
    """0 lies outside the 95 % interval exactly when p < 0.05 (same variance, same df)."""
    rng = np.random.default_rng(1)
    for _ in range(200):
        d = rng.normal(rng.normal(0, 0.02), 0.03, size=(3, 5))
        ci = corrected_resampled_interval(d, n_train=80, n_test=20, df=df,
                                          correction=correction)
        t = corrected_resampled_ttest(d, n_train=80, n_test=20, df=df, n_folds=5,
                                      correction=correction)
        assert (ci.ci_low > 0 or ci.ci_high < 0) == (t.p_value < 0.05)


def test_corrected_t_published_df_matches_scipy_t():
    d = np.array([0.02, 0.04, 0.00, 0.06, 0.01, -0.01])
    r = corrected_resampled_ttest(d, n_train=80, n_test=20)
    t = d.mean() / np.sqrt((1 / 6 + 20 / 80) * d.var(ddof=1))
    assert r.statistic == pytest.approx(t, rel=1e-14)
    assert r.p_value == pytest.approx(2 * stats.t.sf(abs(t), 5), rel=1e-12)
    k = corrected_resampled_ttest(d, n_train=80, n_test=20, df="k", n_folds=3)
    assert k.df == 2
    assert k.p_value == pytest.approx(2 * stats.t.sf(abs(t), 2), rel=1e-12)
    c = corrected_resampled_ttest(d, n_train=80, n_test=20, correction=1.55)
    t_c = d.mean() / np.sqrt((1 / 6 + 1.55 * 20 / 80) * d.var(ddof=1))
    assert c.statistic == pytest.approx(t_c, rel=1e-14) and c.df == 5


def test_df_k_needs_folds():
    with pytest.raises(ValueError, match="n_folds"):
        corrected_resampled_ttest(np.array([0.1, 0.2, 0.3]), n_train=8, n_test=2, df="k")


def test_bootstrap_p_value_by_hand():
    boot = np.array([-0.02, 0.01, 0.03, 0.05, 0.00, 0.04, 0.02, 0.06, -0.01, 0.07])
    # P*(<= 0) = 3/10, P*(>= 0) = 8/10 -> p = 2 * 0.3
    assert bootstrap_p_value(boot) == pytest.approx(0.6)
    assert bootstrap_p_value(np.full(5, 0.1)) == 0.0
    assert np.isnan(bootstrap_p_value(np.array([np.nan])))


@pytest.mark.parametrize("method", ["holm", "fdr_bh"])
def test_adjust_pvalues_equals_statsmodels(method):
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(2)
    for _ in range(6):  # multipletests runs gc.collect() on every call: keep this small
        p = rng.random(rng.integers(1, 15)) ** 2
        p[rng.random(p.size) < 0.2] = p[0]  # ties
        np.testing.assert_allclose(adjust_pvalues(p, method), multipletests(p, method=method)[1],
                                   rtol=0, atol=1e-15)
    p = np.array([0.01, np.nan, 0.04])
    out = adjust_pvalues(p, "holm")
    assert np.isnan(out[1]) and out[0] == pytest.approx(0.02) and out[2] == pytest.approx(0.04)


def _rare_cohort(n_pos: int):
    """100 patients, ``n_pos`` positives, 5 x 2 folds, two backbones' scores."""
    n = 100
    ids = np.array([f"P{i:03d}" for i in range(n)])
    y = np.zeros(n, bool)
    y[:n_pos] = True
    plan = stratified_kfold_plan(ids, y, n_splits=5, n_repeats=2, task="rare", seed=0)
    rng = np.random.default_rng(3)
    return y, plan, {b: rng.normal(size=(2, n)) + y for b in ("a", "b")}


def _rare_comparison(n_pos: int):
    y, plan, scores = _rare_cohort(n_pos)
    return compare_scores([get_scorer("auc")], y, y, scores, [("a", "b")], plan.fold_ids,
                          task="rare", n_train=80, n_test=20, n_boot=50, n_folds=5).to_frame()


def test_rare_endpoint_is_flagged():
    frame = _rare_comparison(12)
    assert frame["rare"].all()
    assert frame["warning"].str.contains(f"12 patients.*< {RARE_ENDPOINT}").all()
    assert not _rare_comparison(40)["rare"].any()


def test_sparse_test_folds_use_the_sparse_factor_where_measured():
    """Fewer than 4 minority patients per test fold: the AUC rows use the sparse factor
    (p and intervals); BA and c-indices keep theirs; a rare endpoint with 5 per fold
    keeps the table's."""
    sparse = CALIBRATED_CORRECTION_SPARSE[("binary", "auc")]
    assert calibrated_correction("auc", "binary", minority_per_fold=2.4) == sparse
    assert sparse > CALIBRATED_CORRECTION[("binary", "auc")]
    assert calibrated_correction("auc", "binary", minority_per_fold=4.0) == \
        CALIBRATED_CORRECTION[("binary", "auc")]
    assert calibrated_correction("ba", "binary", minority_per_fold=2.4) == \
        CALIBRATED_CORRECTION[("binary", "ba")]
    assert calibrated_correction("harrell_c", minority_per_fold=1.0) == \
        CALIBRATED_CORRECTION[("survival", "harrell_c")]
    # 100 patients at 5 folds train on 80: between the small-sample sizes, so the
    # non-sparse rows take the interpolated factor (a quarter of the way down to 2.0 ...)
    low, high = SMALL_SAMPLE_N_TRAIN
    small = CALIBRATED_CORRECTION_SMALL[("binary", "auc")][0]
    table = CALIBRATED_CORRECTION[("binary", "auc")]
    at_80 = table + (high - 80) / (high - low) * (small - table)
    assert sparse > at_80 > table
    for n_pos, is_sparse in ((12, True), (25, False), (40, False)):
        frame = _rare_comparison(n_pos)
        row = frame[frame["test"] == DEFAULT_TEST].iloc[0]
        assert row["rare"] == (n_pos < RARE_ENDPOINT)
        c = sparse if is_sparse else at_80
        t = corrected_resampled_ttest(_rare_fold_diffs(n_pos), n_train=80, n_test=20,
                                      correction=c)
        assert row["p_value"] == pytest.approx(t.p_value, rel=1e-12), n_pos


def test_more_features_than_training_patients_use_the_high_dimensional_factor():
    """One backbone's c-index interval takes the step of CALIBRATED_CORRECTION_HIGH_DIMENSIONAL
    that its features per training patient exceed, a difference that of
    CALIBRATED_CORRECTION_HIGH_DIMENSIONAL_DIFFERENCE; below their first steps, and for
    the other task kinds, the factors stay as they were."""
    for metric in ("harrell_c", "uno_c"):
        steps = CALIBRATED_CORRECTION_HIGH_DIMENSIONAL[("survival", metric)]
        single = CALIBRATED_CORRECTION_SINGLE[("survival", metric)]
        assert steps[0][0] == 1.0 and all(f > single for _, f in steps)
        assert [f for _, f in steps] == sorted(f for _, f in steps)
        for (ratio, factor), upper in zip(steps, [r for r, _ in steps[1:]] + [50.0]):
            for n_features in (int(240 * ratio) + 1, int(240 * upper)):
                assert calibrated_correction(metric, single=True, n_train=240,
                                             n_features=n_features) == factor, n_features
        assert calibrated_correction(metric, single=True, n_train=96, n_features=128) == 3.0
        assert calibrated_correction(metric, single=True, n_train=240,
                                     n_features=2048) == 4.0
        for n_features in (None, 0, 16, 128, 240):
            assert calibrated_correction(metric, single=True, n_train=240,
                                         n_features=n_features) == single, n_features
        assert calibrated_correction(metric, single=True, n_features=512) == single
        # the difference's factor has its own step, from half a feature per patient
        (ratio, pair), = CALIBRATED_CORRECTION_HIGH_DIMENSIONAL_DIFFERENCE[("survival", metric)]
        assert ratio == 0.5 and pair > CALIBRATED_CORRECTION[("survival", metric)]
        for n_features in (None, 16, int(240 * ratio)):
            assert calibrated_correction(metric, n_train=240, n_features=n_features) == \
                CALIBRATED_CORRECTION[("survival", metric)], n_features
        for n_features in (int(240 * ratio) + 1, 128, 512, 2048, 20000):
            assert calibrated_correction(metric, n_train=240, n_features=n_features) == \
                pair, n_features
        # one backbone's step is not the difference's: at 0.53 per patient the table's
        assert calibrated_correction(metric, single=True, n_train=240, n_features=128) == \
            single
    assert calibrated_correction("auc", "binary", single=True, n_train=240,
                                 n_features=2048) == CALIBRATED_CORRECTION[("binary", "auc")]
    values = np.random.default_rng(2).normal(0.6, 0.04, size=(5, 5))
    narrow, wide_ci = (corrected_resampled_interval(
        values, n_train=240, n_test=60, metric="harrell_c", single=True, n_folds=5,
        df="J", n_features=d) for d in (16, 512))
    se = np.sqrt((1 / 25 + 3.0 * 60 / 240) * values.var(ddof=1))
    assert wide_ci.se == pytest.approx(se, rel=1e-12)
    assert wide_ci.ci_high - wide_ci.ci_low > narrow.ci_high - narrow.ci_low


def test_high_dimensional_warning_only_beyond_the_measured_ratio():
    assert high_dimensional_single_warning(2048, 96.0) == ""         # 21.3x, measured
    assert high_dimensional_single_warning(1100, 56.0) == ""         # 19.6x
    text = high_dimensional_single_warning(1300, 56.0)
    assert text.startswith("1300 features = 23.2x the 56 training patients per fold")
    assert f"up to {HIGH_DIMENSIONAL_MEASURED_RATIO:.1f}x" in text
    assert high_dimensional_single_warning(0, 56.0) == ""


def test_small_training_sets_use_the_small_sample_factor():
    """Below SMALL_SAMPLE_N_TRAIN[1] training patients per fold the binary factors rise
    linearly to CALIBRATED_CORRECTION_SMALL's at SMALL_SAMPLE_N_TRAIN[0]; below it the
    difference's factor keeps rising at the same slope, one backbone's stays (but never
    falls below the difference's); the larger of the sparse-fold and the small-sample
    factor wins; continuous and survival factors do not depend on n_train."""
    low, high = SMALL_SAMPLE_N_TRAIN
    for metric in ("auc", "ba"):
        table = CALIBRATED_CORRECTION[("binary", metric)]
        pair, one = CALIBRATED_CORRECTION_SMALL[("binary", metric)]
        assert pair > table and one >= pair
        for n_train in (high, 200.0, 1000.0):
            assert calibrated_correction(metric, "binary", n_train=n_train) == table
            assert calibrated_correction(metric, "binary", n_train=n_train,
                                         single=True) == table
        assert calibrated_correction(metric, "binary", n_train=low) == pytest.approx(pair)
        assert calibrated_correction(metric, "binary", n_train=low, single=True) == \
            pytest.approx(one)
        below = low - (high - low) / 2  # half a step further down
        assert calibrated_correction(metric, "binary", n_train=below) == \
            pytest.approx(pair + (pair - table) / 2)
        assert calibrated_correction(metric, "binary", n_train=below, single=True) == \
            pytest.approx(max(one, pair + (pair - table) / 2))
        for n_train in (1.0, 10.0, 30.0, 70.0):
            assert calibrated_correction(metric, "binary", n_train=n_train, single=True) >= \
                calibrated_correction(metric, "binary", n_train=n_train)
        middle = (low + high) / 2
        assert calibrated_correction(metric, "binary", n_train=middle) == \
            pytest.approx((table + pair) / 2)
        assert calibrated_correction(metric, "binary", n_train=middle, single=True) == \
            pytest.approx((table + one) / 2)
    sparse = CALIBRATED_CORRECTION_SPARSE[("binary", "auc")]
    assert calibrated_correction("auc", "binary", n_train=high, minority_per_fold=2) == sparse
    assert calibrated_correction("auc", "binary", n_train=low, minority_per_fold=2,
                                 single=True) == max(
        sparse, CALIBRATED_CORRECTION_SMALL[("binary", "auc")][1])
    for key in (("continuous", "ba"), ("survival", "harrell_c")):
        assert calibrated_correction(key[1], key[0], n_train=20.0) == \
            calibrated_correction(key[1], key[0], n_train=500.0) == CALIBRATED_CORRECTION[key]


def test_the_comparison_applies_the_small_sample_factor():
    """compare_scores passes its n_train to the factor: the calibrated p of a 40-patient
    design equals the corrected t at the small-sample factor, computed by hand."""
    from sklearn.metrics import roc_auc_score

    n = 40
    ids = np.array([f"P{i:03d}" for i in range(n)])
    y = np.arange(n) % 2 == 0
    plan = stratified_kfold_plan(ids, y, n_splits=5, n_repeats=2, task="small", seed=0)
    rng = np.random.default_rng(4)
    scores = {b: rng.normal(size=(2, n)) + y for b in ("a", "b")}
    frame = compare_scores([get_scorer("auc")], y, y, scores, [("a", "b")], plan.fold_ids,
                           task="small", n_train=32, n_test=8, n_boot=20,
                           n_folds=5).to_frame()
    row = frame[frame["test"] == DEFAULT_TEST].iloc[0]
    diffs = [roc_auc_score(y[plan.fold_ids[r] == f], scores["a"][r][plan.fold_ids[r] == f])
             - roc_auc_score(y[plan.fold_ids[r] == f], scores["b"][r][plan.fold_ids[r] == f])
             for r in range(2) for f in range(5)]
    small = CALIBRATED_CORRECTION_SMALL[("binary", "auc")]
    low, high = SMALL_SAMPLE_N_TRAIN
    table = CALIBRATED_CORRECTION[("binary", "auc")]
    pair = table + (high - 32) / (high - low) * (small[0] - table)  # 2.25: two steps down
    t = corrected_resampled_ttest(np.array(diffs), n_train=32, n_test=8, correction=pair)
    assert row["p_value"] == pytest.approx(t.p_value, rel=1e-12)
    one = corrected_resampled_interval(np.array([
        [roc_auc_score(y[plan.fold_ids[r] == f], scores["a"][r][plan.fold_ids[r] == f])
         for f in range(5)] for r in range(2)]), n_train=32, n_test=8,
        correction=max(small[1], pair),
        bounds=(0.0, 1.0))
    assert (row["ci_low_a"], row["ci_high_a"]) == pytest.approx((one.ci_low, one.ci_high),
                                                                rel=1e-12)


def _rare_fold_diffs(n_pos: int) -> np.ndarray:
    """The per-fold AUC differences behind :func:`_rare_comparison`, by hand (sklearn)."""
    from sklearn.metrics import roc_auc_score

    y, plan, scores = _rare_cohort(n_pos)
    out = []
    for r in range(2):
        for f in range(5):
            m = plan.fold_ids[r] == f
            out.append(roc_auc_score(y[m], scores["a"][r, m])
                       - roc_auc_score(y[m], scores["b"][r, m]))
    return np.array(out)


def test_every_row_states_estimand_level_and_one_primary():
    frame = _rare_comparison(40)
    assert (frame["level"] == 0.95).all()
    assert frame["estimand"].str.len().gt(0).all() and frame["method"].str.len().gt(0).all()
    assert frame["primary"].sum() == 1
    assert frame.loc[frame["primary"], "test"].item() == DEFAULT_TEST
    assert "expected auc of the probe trained on 80 patients" in \
        frame.loc[frame["primary"], "estimand"].item()


def test_simulation_null_is_exact_and_prevalence_exact():
    s = SimulationSetting(kind="binary", n=50, d=3, prevalence=0.1, n_sites=2)
    c = simulate_cohort(s, {"a": 0.0, "b": 2.0}, np.random.default_rng(0))
    assert int(c.y.sum()) == 5
    assert set(c.sites) == {"S0", "S1"}
    # the signal lives in the first dimension only
    assert abs(np.corrcoef(c.embeddings["b"][:, 0], c.z)[0, 1]) > 0.7
    surv = simulate_cohort(SimulationSetting(kind="survival", n=2000, d=2, event_rate=0.6),
                           {"a": 0.0}, np.random.default_rng(1))
    assert surv.event.mean() == pytest.approx(0.6, abs=0.04)


def test_one_backbone_interval_uses_the_single_factor():
    """Continuous BA: each side's interval uses CALIBRATED_CORRECTION_SINGLE plus the
    test noise its degenerate folds lack (folds where the probe predicted one class, BA
    exactly 0.5), the difference and its p the pair factor (all by hand from the
    per-fold values)."""
    from neurofeat.analysis.correction_factors import CALIBRATED_CORRECTION_SINGLE

    rng = np.random.default_rng(5)
    n = 100
    ids = np.array([f"P{i:03d}" for i in range(n)])
    y = rng.normal(size=n)
    labels = y >= 0
    plan = stratified_kfold_plan(ids, labels, n_splits=5, n_repeats=2, task="c", seed=0)
    scores = {b: 0.5 * y[None] + rng.normal(size=(2, n)) for b in ("a", "b")}
    # backbone a's probe "collapsed" in three folds of repeat 0: one class predicted
    collapsed = np.isin(plan.fold_ids[0], [0, 1, 2])
    scores["a"][0, collapsed] = -1.0
    frame = compare_scores([get_scorer("ba", 0.0)], labels, labels, scores, [("a", "b")],
                           plan.fold_ids, task="c", n_train=80, n_test=20, n_boot=20,
                           n_folds=5, kind="continuous", bca=False).to_frame()
    row = frame[frame["test"] == DEFAULT_TEST].iloc[0]
    from neurofeat.analysis.scoring import score_folds

    per_fold = {b: score_folds(get_scorer("ba", 0.0), labels, scores[b], plan.fold_ids,
                               5).reshape(-1) for b in scores}
    single = CALIBRATED_CORRECTION_SINGLE[("continuous", "ba")]
    assert single != CALIBRATED_CORRECTION[("continuous", "ba")]
    # b has one fold at exactly 0.5 by chance: counted too (the rule sees values only)
    assert (per_fold["a"] == 0.5).sum() == 3 and (per_fold["b"] == 0.5).sum() == 1
    n_pos = labels.sum()
    extra = 3 / 10 * (1 / (n_pos / 5) + 1 / ((n - n_pos) / 5)) / 16 / 5
    side = corrected_resampled_interval(per_fold["a"], n_train=80, n_test=20, metric="ba",
                                        kind="continuous", single=True, bounds=(0, 1),
                                        extra_variance=extra)
    assert side.ci_low == pytest.approx(row["ci_low_a"], rel=1e-12)
    se = np.sqrt((1 / 10 + single * 20 / 80) * per_fold["a"].var(ddof=1) + extra)
    assert row["ci_high_a"] == pytest.approx(min(1, per_fold["a"].mean()
                                                 + stats.t.ppf(0.975, 9) * se), rel=1e-12)
    t = corrected_resampled_ttest(per_fold["a"] - per_fold["b"], n_train=80, n_test=20,
                                  correction=CALIBRATED_CORRECTION[("continuous", "ba")])
    assert row["p_value"] == pytest.approx(t.p_value, rel=1e-12)
    se_b = np.sqrt((1 / 10 + single * 20 / 80) * per_fold["b"].var(ddof=1) + extra / 3)
    assert row["ci_low_b"] == pytest.approx(max(0, per_fold["b"].mean()
                                                - stats.t.ppf(0.975, 9) * se_b), rel=1e-12)


def test_random_fold_variance_matches_simulation():
    """The test noise a degenerate fold lacks: the variance of a fold's BA (random 50/50
    predictions) and AUC (unrelated scores) by Monte Carlo on fixed labels (vectorised,
    checked against sklearn on the first draws); for Harrell's C (scikit-survival) the
    Mann-Whitney variance is an approximation of the right size, and the exact null
    variance of the fold (concordance_null_variance) matches the simulation."""
    from scipy.stats import rankdata
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score
    from sksurv.metrics import concordance_index_censored

    from neurofeat.analysis.correction_factors import random_fold_variance
    from neurofeat.analysis.survival.concordance import (concordance_null_variance,
                                                         concordance_pairs)

    rng = np.random.default_rng(11)
    y = np.r_[np.ones(9, bool), np.zeros(15, bool)]
    pred = rng.random((40000, y.size)) < 0.5
    ba = 0.5 * (pred[:, y].mean(1) + (~pred[:, ~y]).mean(1))
    scores = rng.random((40000, y.size))
    auc = (rankdata(scores, axis=1)[:, y].sum(1) - 9 * 10 / 2) / (9 * 15)
    for i in range(3):
        assert ba[i] == pytest.approx(balanced_accuracy_score(y, pred[i]))
        assert auc[i] == pytest.approx(roc_auc_score(y, scores[i]))
    assert np.var(ba) == pytest.approx(random_fold_variance("ba", 9, 15), rel=0.03)
    assert np.var(auc) == pytest.approx(random_fold_variance("auc", 9, 15), rel=0.03)
    for n_events in (5, 14):
        time = rng.exponential(size=24)
        event = np.zeros(24, bool)
        event[rng.choice(24, n_events, replace=False)] = True
        c = [concordance_index_censored(event, time, rng.random(24))[0] for _ in range(1000)]
        ratio = np.var(c) / random_fold_variance("harrell_c", n_events, 24 - n_events)
        assert 0.4 < ratio < 1.4, (n_events, ratio)
        # the exact null variance (the fold's pair structure) is what the simulation sees
        exact = concordance_null_variance(concordance_pairs(time, event).comparable,
                                          np.ones(24))
        assert np.var(c) == pytest.approx(exact, rel=0.15)


def test_survival_interval_adds_the_degenerate_folds_variance():
    """A Cox model that picked the null model in a fold (constant risk: C = 0.5 exactly)
    adds the Mann-Whitney test noise of that fold to its backbone's c-index interval."""
    from neurofeat.analysis.folds import survival_kfold_plan
    from neurofeat.analysis.correction_factors import (CALIBRATED_CORRECTION_SINGLE,
                                                       degenerate_fold_variance)
    from neurofeat.analysis.scoring import score_folds
    from neurofeat.analysis.survival.compare import (HARRELL, compare_survival_scores,
                                                     survival_target)

    rng = np.random.default_rng(8)
    n = 100
    ids = np.array([f"P{i:03d}" for i in range(n)])
    risk = rng.normal(size=n)
    time = rng.exponential(np.exp(-0.7 * risk))
    event = rng.random(n) < 0.7
    plan = survival_kfold_plan(ids, event, n_splits=5, n_repeats=2, task="os")
    scores = {"a": risk[None] + rng.normal(size=(2, n)), "b": risk[None] + rng.normal(size=(2, n))}
    scores["a"][0, np.isin(plan.fold_ids[0], [0, 1])] = 0.0  # null model in two folds
    _, frame, _ = compare_survival_scores(scores, time, event, plan.fold_ids, [("a", "b")],
                                          task="os", n_train=80.0, n_test=20.0, n_folds=5,
                                          n_boot=10, seed=0, side_a="A", side_b="B",
                                          by_site=False)
    row = frame[(frame["metric"] == "harrell_c") & (frame["test"] == DEFAULT_TEST)].iloc[0]
    per_fold = score_folds(HARRELL, survival_target(time, event), scores["a"], plan.fold_ids,
                           5).reshape(-1)
    assert (per_fold == 0.5).sum() == 2
    extra = degenerate_fold_variance(per_fold, metric="harrell_c", n_pos=event.sum() / 5,
                                     n_neg=(n - event.sum()) / 5, n_folds=5)
    assert extra == pytest.approx(0.2 * (n / 5 + 1) / (12 * event.sum() / 5
                                                        * (n - event.sum()) / 5) / 5)
    single = CALIBRATED_CORRECTION_SINGLE[("survival", "harrell_c")]
    se = np.sqrt((1 / 10 + single * 20 / 80) * per_fold.var(ddof=1) + extra)
    assert row["ci_low_a"] == pytest.approx(per_fold.mean() - stats.t.ppf(0.975, 9) * se,
                                            rel=1e-10)


def test_single_extra_variance_only_where_folds_can_be_degenerate():
    from neurofeat.analysis.correction_factors import (degenerate_fold_variance,
                                                       single_extra_variance)

    v = np.array([0.5, 0.5, 0.62, 0.7, 0.55])
    extra = single_extra_variance(v, metric="ba", kind="continuous", n=50, n_pos=20,
                                  n_folds=5)
    assert extra > 0
    assert extra == pytest.approx(degenerate_fold_variance(v, metric="ba", n_pos=4, n_neg=6,
                                                           n_folds=5))
    assert single_extra_variance(v, metric="uno_c", kind="survival", n=50, n_pos=30,
                                 n_folds=5) > 0
    for metric, kind, n_pos in (("ba", "binary", 20), ("auc", "continuous", 20),
                                ("ba", "continuous", 0), ("harrell_c", "survival", 50)):
        assert single_extra_variance(v, metric=metric, kind=kind, n=50, n_pos=n_pos,
                                     n_folds=5) == 0.0


def test_threshold_noise_floor_matches_simulation():
    """The BA test-noise floor: the variance of a fold's BA for predictions unrelated to
    the labels that call a share q of the fold positive (each patient positive with
    probability q, Monte Carlo on fixed labels, checked against sklearn on the first
    draws) is q (1 - q) (1/n_pos + 1/n_neg) / 4, and the mean over J folds with
    independent test noise has the folds' mean of it over J."""
    from sklearn.metrics import balanced_accuracy_score

    from neurofeat.analysis.correction_factors import threshold_noise_floor

    rng = np.random.default_rng(21)
    y = np.r_[np.ones(6, bool), np.zeros(54, bool)]  # a rare fold: 6 positives of 60
    for q in (0.02, 0.2, 0.5):
        pred = rng.random((60000, y.size)) < q
        ba = 0.5 * (pred[:, y].mean(1) + (~pred[:, ~y]).mean(1))
        for i in range(2):
            assert ba[i] == pytest.approx(balanced_accuracy_score(y, pred[i]))
        assert np.var(ba) == pytest.approx(
            threshold_noise_floor(np.array([q]), n_pos=6, n_neg=54), rel=0.04)
    # k folds with their own shares: the variance of the mean of k independent folds
    shares = np.array([0.02, 0.1, 0.5])
    per_fold = [0.5 * ((rng.random((60000, 6)) < q).mean(1)
                       + (rng.random((60000, 54)) >= q).mean(1)) for q in shares]
    assert np.var(np.mean(per_fold, axis=0)) == pytest.approx(
        threshold_noise_floor(shares, n_pos=6, n_neg=54), rel=0.04)


def test_single_variance_floor_applies_to_binary_ba_only():
    from neurofeat.analysis.correction_factors import (single_variance_floor,
                                                       threshold_noise_floor)

    shares = np.full((2, 5), 0.1)
    want = threshold_noise_floor(shares, n_pos=6, n_neg=54)
    assert want > 0
    for kind in ("binary", None):
        assert single_variance_floor(shares, metric="ba", kind=kind, n=300, n_pos=30,
                                     n_folds=5) == pytest.approx(want)
    assert single_variance_floor(shares, metric="ba", kind="continuous", n=300, n_pos=30,
                                 n_folds=5) == 0.0
    assert single_variance_floor(shares, metric="auc", kind="binary", n=300, n_pos=30,
                                 n_folds=5) == 0.0
    assert single_variance_floor(None, metric="ba", kind="binary", n=300, n_pos=30,
                                 n_folds=5) == 0.0


def test_single_variance_terms_are_the_extra_variance_and_the_floor():
    from neurofeat.analysis.correction_factors import (single_extra_variance,
                                                       single_variance_floor,
                                                       single_variance_terms)

    rng = np.random.default_rng(3)
    values = np.where(rng.random((5, 5)) < 0.4, 0.5, rng.uniform(0.3, 0.7, (5, 5)))
    shares = rng.uniform(0.0, 0.3, (5, 5))
    for kind, metric in (("binary", "ba"), ("continuous", "ba"), ("binary", "auc")):
        common = dict(metric=metric, kind=kind, n=300, n_pos=30, n_folds=5)
        extra, floor = single_variance_terms(values, shares, **common)
        assert extra == single_extra_variance(values, **common)
        assert floor == single_variance_floor(shares, **common)
    # the combinations that have each term do get it from these inputs
    assert single_variance_terms(values, shares, metric="ba", kind="continuous", n=300,
                                 n_pos=30, n_folds=5)[0] > 0
    assert single_variance_terms(values, shares, metric="ba", kind="binary", n=300,
                                 n_pos=30, n_folds=5)[1] > 0


def _rare_cohort_with_a_constant_probe(seed: int):
    """300 patients, 10 % positive, 2 x 5 CV; backbone a scores every patient 0.3 (below
    the threshold: the caller marks whom it calls positive), b at random."""
    n = 300
    ids = np.array([f"P{i:03d}" for i in range(n)])
    labels = np.zeros(n, bool)
    labels[::10] = True
    plan = stratified_kfold_plan(ids, labels, n_splits=5, n_repeats=2, task="r", seed=0)
    rng = np.random.default_rng(seed)
    return n, labels, plan, {"a": np.full((2, n), 0.3), "b": rng.random((2, n))}


def test_one_backbone_ba_interval_is_never_narrower_than_its_test_noise():
    """A probe shrunk to near-constant predictions that calls one patient positive per
    fold, always a negative: every fold of backbone a has the same BA just below 0.5, the
    fold spread is zero, and the interval would be a point below the expected 0.5.  The
    floor (the folds' predicted-positive shares) gives it the width of its test noise,
    in compare_scores and in the one-backbone report (evaluate_probe), as by hand."""
    from neurofeat.analysis.correction_factors import (CALIBRATED_CORRECTION_SINGLE,
                                                       calibrated_correction,
                                                       threshold_noise_floor)
    from neurofeat.analysis.protocols import OutOfFold, evaluate_probe
    from neurofeat.analysis.scoring import balanced_accuracy_scorer, score_folds

    n, labels, plan, scores = _rare_cohort_with_a_constant_probe(seed=4)
    for r in range(2):
        for f in range(5):
            first_negative = np.flatnonzero((plan.fold_ids[r] == f) & ~labels)[0]
            scores["a"][r, first_negative] = 0.9
    ba = balanced_accuracy_scorer()
    per_fold = score_folds(ba, labels, scores["a"], plan.fold_ids, 5).reshape(-1)
    assert np.ptp(per_fold) == 0.0 and per_fold[0] == pytest.approx(0.5 * 53 / 54)
    frame = compare_scores([ba], labels, labels, scores, [("a", "b")], plan.fold_ids, task="r",
                           n_train=240, n_test=60, n_boot=20, n_folds=5, kind="binary",
                           bca=False).to_frame()
    row = frame[frame["test"] == DEFAULT_TEST].iloc[0]
    floor = threshold_noise_floor(np.full(10, 1 / 60), n_pos=6, n_neg=54)
    half = stats.t.ppf(0.975, 9) * np.sqrt(floor)
    assert row["ci_low_a"] == pytest.approx(per_fold[0] - half, rel=1e-10)
    assert row["ci_high_a"] == pytest.approx(per_fold[0] + half, rel=1e-10)
    assert row["ci_low_a"] < 0.5 < row["ci_high_a"]
    # backbone b (random scores, shares near 0.5): its fold spread exceeds the floor
    b_folds = score_folds(ba, labels, scores["b"], plan.fold_ids, 5).reshape(-1)
    c = calibrated_correction("ba", "binary", minority_per_fold=6, single=True, n_train=240)
    assert ("binary", "ba") not in CALIBRATED_CORRECTION_SINGLE
    se_b = np.sqrt((1 / 10 + c * 60 / 240) * b_folds.var(ddof=1))
    assert row["ci_low_b"] == pytest.approx(b_folds.mean() - stats.t.ppf(0.975, 9) * se_b,
                                            rel=1e-10)
    # the one-backbone report gives backbone a the same interval
    fitted = tuple({"n_train": 240, "n_test": 60} for _ in range(10))
    metrics, _ = evaluate_probe(OutOfFold(scores["a"], plan, fitted_params=fitted), labels,
                                np.full(n, "S1"),
                                scorers=[ba], n_boot=20, per_site=False, delong=False)
    one = metrics[(metrics.metric == "ba") & (metrics.ci_method == DEFAULT_TEST)].iloc[0]
    assert (one.ci_low, one.ci_high) == pytest.approx((row["ci_low_a"], row["ci_high_a"]),
                                                      rel=1e-10)


def test_sparse_predictions_widen_one_backbones_ba_interval_only():
    """Fewer than 4 patients per test fold on the less-called side of the threshold: one
    backbone's BA interval takes the sparse-predictions factor; its difference, its AUC
    and a probe calling many patients positive keep theirs."""
    from neurofeat.analysis.correction_factors import (CALIBRATED_CORRECTION_SPARSE_PREDICTIONS,
                                                       SPARSE_FOLD_MINORITY,
                                                       predicted_minority_per_fold,
                                                       threshold_noise_floor)
    from neurofeat.analysis.protocols import OutOfFold, evaluate_probe
    from neurofeat.analysis.scoring import balanced_accuracy_scorer, score_folds

    sparse = CALIBRATED_CORRECTION_SPARSE_PREDICTIONS[("binary", "ba")]
    table = CALIBRATED_CORRECTION[("binary", "ba")]
    assert sparse > table
    kw = dict(minority_per_fold=6, n_train=240)
    assert calibrated_correction("ba", "binary", single=True, predicted_minority_per_fold=1.5,
                                 **kw) == sparse
    assert calibrated_correction("ba", "binary", single=True,
                                 predicted_minority_per_fold=SPARSE_FOLD_MINORITY, **kw) == table
    assert calibrated_correction("ba", "binary", predicted_minority_per_fold=1.5, **kw) == table
    assert calibrated_correction("auc", "binary", single=True, predicted_minority_per_fold=1.5,
                                 **kw) == CALIBRATED_CORRECTION[("binary", "auc")]
    # the less-called side: a probe calling 98 % positive is as sparse as one calling 2 %
    assert predicted_minority_per_fold(np.array([[0.98, np.nan]]), n=300, n_folds=5) == \
        pytest.approx(1.2)
    assert predicted_minority_per_fold(None, n=300, n_folds=5) is None

    n, labels, plan, scores = _rare_cohort_with_a_constant_probe(seed=5)
    for r in range(2):   # a calls two patients of each fold positive, a hit in some folds
        for f in range(5):
            in_fold = plan.fold_ids[r] == f
            called = [np.flatnonzero(in_fold & ~labels)[0],
                      np.flatnonzero(in_fold & (labels if (r + f) % 3 == 0 else ~labels))[1]]
            scores["a"][r, called] = 0.9
    ba = balanced_accuracy_scorer()
    folds = {k: score_folds(ba, labels, v, plan.fold_ids, 5).reshape(-1)
             for k, v in scores.items()}
    floor = threshold_noise_floor(np.full(10, 2 / 60), n_pos=6, n_neg=54)
    t = stats.t.ppf(0.975, 9)
    se_a = np.sqrt((1 / 10 + sparse * 60 / 240) * folds["a"].var(ddof=1))
    assert se_a ** 2 > floor   # the spread, not the floor, sets the width
    se_b = np.sqrt((1 / 10 + table * 60 / 240) * folds["b"].var(ddof=1))
    frame = compare_scores([ba], labels, labels, scores, [("a", "b")], plan.fold_ids, task="r",
                           n_train=240, n_test=60, n_boot=20, n_folds=5, kind="binary",
                           bca=False).to_frame()
    row = frame[frame["test"] == DEFAULT_TEST].iloc[0]
    assert (row["ci_low_a"], row["ci_high_a"]) == pytest.approx(
        (folds["a"].mean() - t * se_a, folds["a"].mean() + t * se_a), rel=1e-10)
    assert row["ci_low_b"] == pytest.approx(folds["b"].mean() - t * se_b, rel=1e-10)
    diff = folds["a"] - folds["b"]
    se_d = np.sqrt((1 / 10 + table * 60 / 240) * diff.var(ddof=1))
    assert row["diff_ci_low"] == pytest.approx(diff.mean() - t * se_d, rel=1e-10)
    fitted = tuple({"n_train": 240, "n_test": 60} for _ in range(10))
    metrics, _ = evaluate_probe(OutOfFold(scores["a"], plan, fitted_params=fitted), labels,
                                np.full(n, "S1"), scorers=[ba], n_boot=20, per_site=False,
                                delong=False)
    one = metrics[(metrics.metric == "ba") & (metrics.ci_method == DEFAULT_TEST)].iloc[0]
    assert (one.ci_low, one.ci_high) == pytest.approx((row["ci_low_a"], row["ci_high_a"]),
                                                      rel=1e-10)
