"""Survival branch of the paired comparison: c-index scorers through the generic engine."""

from __future__ import annotations

import numpy as np
import pytest

from neurofeat.analysis.paired_tests import (DEFAULT_TEST, METRIC_BOUNDS,
                                             corrected_resampled_interval,
                                             corrected_resampled_ttest)
from neurofeat.analysis.correction_factors import (CALIBRATED_CORRECTION_SINGLE,
                                                   calibrated_correction,
                                                   high_dimensional_factor,
                                                   single_extra_variance)
from neurofeat.analysis.survival import harrell_c, uno_c
from neurofeat.analysis.survival.compare import (
    HARRELL,
    UNO,
    compare_survival_backbones,
    compare_survival_scores,
    survival_target,
)


@pytest.fixture(scope="module")
def comparison(cohort):
    X, time, event, ids, sites = cohort
    rng = np.random.default_rng(7)
    emb = {"dino": X + rng.standard_normal(X.shape),
           "dino_dro": X + 0.3 * rng.standard_normal(X.shape)}
    return compare_survival_backbones(emb, time, event, patient_ids=ids, sites=sites,
                                      pairs=[("dino_dro", "dino")], model="pca-cox",
                                      model_params={"n_components": 3}, n_splits=3,
                                      n_repeats=2, n_boot=100, seed=0, tau=800.0)


def test_scorers_equal_sksurv_on_resamples(cohort):
    from sksurv.metrics import concordance_index_ipcw
    from sksurv.util import Surv

    X, time, event, _, sites = cohort
    rows = np.flatnonzero(sites == "UPenn")
    target = survival_target(time, event, rows=rows, tau=700.0)
    risk = np.vstack([X[:, 0], X[:, 1]])
    idx = rows[np.random.default_rng(0).integers(0, rows.size, (5, rows.size))]
    h = HARRELL(target, risk, idx)
    u = UNO(target, risk, idx)
    y_site = Surv.from_arrays(event[rows], time[rows])
    for b in range(5):
        for r in range(2):
            i = idx[b]
            assert h[b, r] == pytest.approx(harrell_c(time[i], event[i], risk[r, i]), abs=1e-12)
            ref = concordance_index_ipcw(y_site, Surv.from_arrays(event[i], time[i]),
                                         risk[r, i], tau=target.tau)[0]
            assert u[b, r] == pytest.approx(ref, abs=1e-12)


def test_pooled_rows_and_fold_values(cohort, comparison):
    X, time, event, ids, sites = cohort
    cv_a = comparison.cv["dino_dro"]
    cv_b = comparison.cv["dino"]
    pc = next(p for p in comparison.results["all"].pairs if p.metric == "harrell_c")
    expected_a = np.mean([harrell_c(time, event, r) for r in cv_a.risk])
    expected_b = np.mean([harrell_c(time, event, r) for r in cv_b.risk])
    assert pc.a.estimate == pytest.approx(expected_a, abs=1e-12)
    assert pc.diff.estimate == pytest.approx(expected_a - expected_b, abs=1e-12)
    assert pc.diff.ci_low <= pc.diff.estimate <= pc.diff.ci_high
    # per-fold differences feed the paired tests: 2 repeats x 3 folds
    assert pc.fold_test.n == 6 and pc.corrected.test == "corrected-t"
    uno_row = next(p for p in comparison.results["all"].pairs if p.metric == "uno_c")
    expected_uno = np.mean([uno_c(time, event, r, tau=comparison.taus["all"])
                            for r in cv_a.risk])
    assert uno_row.a.estimate == pytest.approx(expected_uno, abs=1e-12)


def test_tests_table_has_sites_tau_and_holm(comparison):
    tests = comparison.tests
    assert set(tests.site) == {"all", "UCSF", "UPenn", "CUIMC"}
    assert tests.loc[tests.metric == "uno_c", "tau"].notna().all()
    assert tests.loc[tests.metric == "harrell_c", "tau"].isna().all()
    assert (tests.p_holm >= tests.p_value - 1e-15).all()
    assert {"backbone_a", "backbone_b", "diff", "diff_ci_low", "p_bh"} <= set(tests.columns)
    assert comparison.taus["all"] == pytest.approx(800.0)


def test_features_beyond_the_measured_ratio_warn_on_the_rows_they_concern(cohort, comparison):
    """1800 + 40 features against 80 training patients per fold (23x) is beyond the
    ratio the high-dimensional factor was measured at: every row that backbone is
    behind carries the warning."""
    X, time, event, ids, sites = cohort
    rng = np.random.default_rng(3)
    wide = np.hstack([X, rng.standard_normal((X.shape[0], 1800))])
    res = compare_survival_backbones({"wide": wide, "narrow": X}, time, event,
                                     patient_ids=ids, sites=sites,
                                     pairs=[("wide", "narrow"), ("narrow", "narrow")],
                                     model="pca-cox", model_params={"n_components": 3},
                                     n_splits=3, n_repeats=1, n_boot=50, seed=0, tau=800.0)
    assert res.cv["wide"].n_features == 1840 and res.cv["narrow"].n_features == X.shape[1]
    tests = res.tests
    flagged = tests.warning.str.contains("1840 features = 23.0x the 80 training patients")
    # the pairs with the wide backbone (and the pooled row over them), every site and test
    assert flagged[tests.backbone_a == "wide"].all()
    assert flagged[tests.pooled].all()
    assert not flagged[(tests.backbone_a == "narrow") & ~tests.pooled].any()
    rows = res.results["all"].to_frame()
    assert rows.loc[rows.backbone_a == "wide", "warning"].str.contains(
        "beyond the range").all()
    # the narrow fixture (40 features, 80 training patients) carries no such warning
    assert not comparison.tests.warning.str.contains("features =").any()


def _compared(cohort, embeddings, pair, n_repeats, **n_features):
    """compare_survival_backbones on ``embeddings`` (pca-cox, 3 folds, pooled only), and
    the same risk scores compared again, told ``n_features`` (none: not told)."""
    _, time, event, ids, sites = cohort
    res = compare_survival_backbones(embeddings, time, event, patient_ids=ids, sites=sites,
                                     pairs=[pair], model="pca-cox",
                                     model_params={"n_components": 3}, n_splits=3,
                                     n_repeats=n_repeats, n_boot=50, seed=0, tau=800.0,
                                     by_site=False)
    plan = res.cv[pair[0]].plan
    n_train, n_test = plan.mean_train_test_sizes()
    again, _, _ = compare_survival_scores(
        {name: cv.risk for name, cv in res.cv.items()}, time, event, plan.fold_ids, [pair],
        sites=sites, n_train=n_train, n_test=n_test, n_folds=3, n_boot=50, seed=0,
        tau=800.0, by_site=False, n_features=n_features or None)
    return res, again, n_train, n_test


def test_more_features_than_training_patients_widen_that_backbones_c_index_interval(cohort):
    """The wide backbone's own calibrated interval takes the high-dimensional factor
    (recomputed here from its folds) and the narrow one's is that of a comparison that is
    not told the dimensions; the difference takes the difference's factor, by the wider
    side (100 features per 80 training patients)."""
    X = cohort[0]
    wide = np.hstack([X, np.random.default_rng(3).standard_normal((X.shape[0], 60))])
    res, blind, n_train, n_test = _compared(cohort, {"wide": wide, "narrow": X},
                                            ("wide", "narrow"), 1)
    assert res.cv["wide"].n_features == 100 > n_train > res.cv["narrow"].n_features
    for metric in ("harrell_c", "uno_c"):
        told, not_told = (next(p for p in r["all"].pairs if p.metric == metric)
                          for r in (res.results, blind))
        cal, cal_blind = (next(i for i in p.inferences if i.test == DEFAULT_TEST)
                          for p in (told, not_told))
        factors = (high_dimensional_factor(metric, "survival", n_features=100,
                                           n_train=n_train),
                   CALIBRATED_CORRECTION_SINGLE[("survival", metric)])
        assert factors[0] > factors[1]
        for folds, factor, (low, high) in zip(
                (told.folds_a, told.folds_b), factors,
                ((cal.ci_low_a, cal.ci_high_a), (cal.ci_low_b, cal.ci_high_b))):
            extra = single_extra_variance(folds, metric=metric, kind="survival", n=told.n,
                                          n_pos=told.n_pos, n_folds=3)
            ref = corrected_resampled_interval(folds, n_train=n_train, n_test=n_test,
                                               df="J", n_folds=3, correction=factor,
                                               bounds=METRIC_BOUNDS[metric],
                                               extra_variance=extra)
            assert (low, high) == pytest.approx((ref.ci_low, ref.ci_high), abs=1e-12)
        assert cal.ci_high_a - cal.ci_low_a > cal_blind.ci_high_a - cal_blind.ci_low_a
        assert (cal.ci_low_b, cal.ci_high_b) == (cal_blind.ci_low_b, cal_blind.ci_high_b)
        pair = high_dimensional_factor(metric, "survival", n_features=100, n_train=n_train,
                                       single=False)
        ref = corrected_resampled_ttest((told.folds_a - told.folds_b).reshape(-1),
                                        n_train=n_train, n_test=n_test, correction=pair)
        assert cal.p_value == pytest.approx(ref.p_value, rel=1e-12)
        assert cal.diff_ci_high - cal.diff_ci_low > cal_blind.diff_ci_high - cal_blind.diff_ci_low


def test_beyond_half_a_feature_per_patient_the_difference_takes_its_own_factor(cohort):
    """Told that one side has 700 features per 80 training patients, the pair's default
    p and difference interval use the high-dimensional difference factor (recomputed
    from the fold differences); told 30 and 20, below half a feature per patient, they
    are those of a comparison that is not told the dimensions. The risk scores are the
    same either way."""
    X = cohort[0]
    noisy = X + np.random.default_rng(5).standard_normal(X.shape)
    embeddings = {"a": X, "b": noisy}
    _, told, n_train, n_test = _compared(cohort, embeddings, ("a", "b"), 2, a=700, b=40)
    _, below, _, _ = _compared(cohort, embeddings, ("a", "b"), 2, a=30, b=20)
    _, not_told, _, _ = _compared(cohort, embeddings, ("a", "b"), 2)
    for metric in ("harrell_c", "uno_c"):
        pc = next(p for p in told["all"].pairs if p.metric == metric)
        cal = next(i for i in pc.inferences if i.test == DEFAULT_TEST)
        factor = calibrated_correction(metric, n_train=n_train, n_features=700)
        assert factor == high_dimensional_factor(metric, "survival", n_features=700,
                                                 n_train=n_train, single=False)
        diffs = (pc.folds_a - pc.folds_b).reshape(-1)
        ref = corrected_resampled_ttest(diffs, n_train=n_train, n_test=n_test,
                                        correction=factor)
        assert cal.p_value == pytest.approx(ref.p_value, rel=1e-12)
        blind, narrow = (next(i for i in next(p for p in r["all"].pairs
                                              if p.metric == metric).inferences
                              if i.test == DEFAULT_TEST) for r in (not_told, below))
        assert cal.diff_ci_high - cal.diff_ci_low > blind.diff_ci_high - blind.diff_ci_low
        assert (narrow.diff_ci_low, narrow.diff_ci_high, narrow.p_value) == \
            (blind.diff_ci_low, blind.diff_ci_high, blind.p_value)
