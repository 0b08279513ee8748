"""Evaluation of out-of-fold predictions, time-dependent AUC, IBS and the KM plot."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from neurofeat.analysis.paired_tests import METRIC_BOUNDS, corrected_resampled_interval
from neurofeat.analysis.correction_factors import (high_dimensional_factor,
                                                   single_extra_variance)

from neurofeat.analysis.survival import (
    PCACoxRisk,
    cross_validated_risk,
    evaluate_survival,
    harrell_c,
    integrated_brier,
    kaplan_meier,
    logrank_test,
    survival_fold_plan,
    time_dependent_auc,
)
from neurofeat.analysis.survival.plots import plot_km, save_figure


@pytest.fixture(scope="module")
def evaluated(cohort):
    X, time, event, ids, sites = cohort
    plan = survival_fold_plan(ids, event, sites, n_splits=3, n_repeats=2)
    cv = cross_validated_risk(X, time, event, plan, model=PCACoxRisk(n_components=3),
                              sites=sites)
    return cv, evaluate_survival(cv, n_boot=200, seed=0, tau=900.0)


def test_pooled_c_index_is_mean_over_repeats(evaluated):
    cv, ev = evaluated
    row = ev.metrics.query("site == 'all' and metric == 'harrell_c'").iloc[0]
    expected = np.mean([harrell_c(cv.time, cv.event, r) for r in cv.risk])
    assert row.estimate == pytest.approx(expected, abs=1e-12)
    assert row.ci_low <= row.estimate <= row.ci_high
    uno = ev.metrics.query("site == 'all' and metric == 'uno_c'").iloc[0]
    assert uno.tau == pytest.approx(min(900.0, np.quantile(cv.time, 0.9)))
    assert set(ev.metrics.site) == {"all", "UCSF", "UPenn", "CUIMC"}


def test_bootstrap_is_paired_across_backbones(cohort, evaluated):
    X, time, event, ids, sites = cohort
    cv, ev = evaluated
    plan = survival_fold_plan(ids, event, sites, n_splits=3, n_repeats=2)
    noisy = X + np.random.default_rng(5).standard_normal(X.shape)
    other = cross_validated_risk(noisy, time, event, plan,
                                 model=PCACoxRisk(n_components=3), sites=sites)
    ev2 = evaluate_survival(other, n_boot=200, seed=0, tau=900.0)
    # same resamples: a backbone compared with itself has a zero-width difference
    ev_same = evaluate_survival(cv, n_boot=200, seed=0, tau=900.0)
    np.testing.assert_array_equal(ev.concordance["all"].harrell_boot,
                                  ev_same.concordance["all"].harrell_boot)
    assert not np.array_equal(ev.concordance["all"].harrell_boot,
                              ev2.concordance["all"].harrell_boot)
    # and the paired replicates are the statistic on the same resample: recompute one
    from neurofeat.analysis.bootstrap import stratified_bootstrap_indices
    from neurofeat.analysis.folds import derive_seed

    idx = stratified_bootstrap_indices(event, 200, derive_seed("survival-boot", 0, "all"))[17]
    for result, evaluation in ((cv, ev), (other, ev2)):
        expected = np.mean([harrell_c(time[idx], event[idx], r[idx]) for r in result.risk])
        assert evaluation.concordance["all"].harrell_boot[17] == pytest.approx(expected)


def test_logrank_row_matches_km_groups(evaluated):
    cv, ev = evaluated
    groups = np.where(cv.high_risk[0] == 1, "high risk", "low risk")
    ref = logrank_test(cv.time, cv.event, groups)
    row = ev.metrics.query("site == 'all' and metric == 'logrank_p'").iloc[0]
    assert row.estimate == pytest.approx(ref.p_value)
    assert [c.label for c in ev.km["all"]] == ["low risk", "high risk"]


def test_time_auc_matches_sksurv_and_skips_beyond_follow_up(cohort):
    from sksurv.metrics import cumulative_dynamic_auc
    from sksurv.util import Surv

    X, time, event, _, _ = cohort
    risk = X[:, :3].sum(axis=1)
    res = time_dependent_auc(time, event, risk, [365.25, 730.5, 1e6])
    y = Surv.from_arrays(event, time)
    ref = cumulative_dynamic_auc(y, y, risk, [365.25, 730.5])[0]
    np.testing.assert_allclose(res.auc[:2], ref, atol=1e-12)
    assert np.isnan(res.auc[2]) and "beyond follow-up" in res.reasons[2]


def test_integrated_brier_matches_sksurv(cohort):
    from sksurv.metrics import integrated_brier_score
    from sksurv.util import Surv

    X, time, event, _, _ = cohort
    grid = np.linspace(50, 1200, 40)
    surv = np.exp(-np.outer(np.exp(0.3 * X[:, 0]), grid / 600.0))
    res = integrated_brier(time, event, surv, grid)
    y = Surv.from_arrays(event, time)
    keep = np.isin(grid, res.times)
    assert res.ibs == pytest.approx(integrated_brier_score(y, y, surv[:, keep], grid[keep]))


def test_km_figure_has_labels_ticks_and_risk_table(tmp_path, aml):
    curves = [kaplan_meier(aml.time[aml.x == g], aml.status[aml.x == g], label=g)
              for g in ("Maintained", "Nonmaintained")]
    fig = plot_km(curves, logrank=logrank_test(aml.time, aml.status, aml.x),
                  time_unit="weeks")
    curve_ax, table_ax = fig.axes
    assert curve_ax.get_ylabel() == "Survival probability"
    assert table_ax.get_xlabel() == "Time (weeks)"
    texts = [t.get_text() for t in curve_ax.texts]
    assert any("log-rank" in t and "p = 0.065" in t for t in texts)
    markers = [line for line in curve_ax.lines if line.get_marker() == "|"]
    assert sum(len(line.get_xdata()) for line in markers) == int((aml.status == 0).sum())
    assert "11" in [t.get_text() for t in table_ax.texts]  # maintained at risk at t=0
    png, svg = save_figure(fig, tmp_path / "km")
    assert png.stat().st_size > 0 and svg.read_text().startswith("<?xml")


def test_c_index_interval_widens_with_more_features_than_training_patients(cohort, evaluated):
    X, time, event, ids, sites = cohort
    plan = survival_fold_plan(ids, event, sites, n_splits=3, n_repeats=1)
    wide = np.hstack([X, np.random.default_rng(3).standard_normal((X.shape[0], 60))])
    cv = cross_validated_risk(wide, time, event, plan, model=PCACoxRisk(n_components=3),
                              sites=sites)
    metrics = evaluate_survival(cv, n_boot=50, seed=0, tau=900.0).metrics
    cindex = metrics.metric.isin(["harrell_c", "uno_c"]) & metrics.ci_method.eq(
        "calibrated-t") & metrics.ci_low.notna()
    assert cindex.any()
    # 100 features, 80 training patients: inside the measured range, so no warning;
    # beyond it (1840 features, 23x) the c-index intervals say so
    assert not metrics.warning.str.contains("features =").any()
    wider = cross_validated_risk(
        np.hstack([X, np.random.default_rng(3).standard_normal((X.shape[0], 1800))]), time,
        event, plan, model=PCACoxRisk(n_components=3), sites=sites)
    flagged = evaluate_survival(wider, n_boot=50, seed=0, tau=900.0).metrics
    assert flagged.loc[cindex, "warning"].str.contains("1840 features = 23.0x the 80").all()
    assert not flagged.loc[~cindex, "warning"].str.contains("features =").any()
    narrow = evaluated[1].metrics
    assert not narrow.warning.str.contains("features =").any()
    # the same folds, not told the dimension: the one-backbone factor of narrow inputs
    blind = evaluate_survival(dataclasses.replace(cv, n_features=0), n_boot=50, seed=0,
                              tau=900.0).metrics
    width = (metrics.ci_high - metrics.ci_low)[cindex]
    assert (width > (blind.ci_high - blind.ci_low)[cindex] + 1e-9).all()
    assert metrics.estimate.equals(blind.estimate)
    row = metrics[cindex & metrics.metric.eq("harrell_c") & metrics.site.eq("all")].iloc[0]
    folds = cv.splits["harrell_c"].to_numpy().reshape(1, -1)
    n_train, n_test = cv.plan.mean_train_test_sizes()
    c = high_dimensional_factor("harrell_c", "survival", n_features=100, n_train=n_train)
    assert c is not None
    ref = corrected_resampled_interval(
        folds, n_train=n_train, n_test=n_test, df="J", n_folds=3, correction=c,
        bounds=METRIC_BOUNDS["harrell_c"],
        extra_variance=single_extra_variance(folds, metric="harrell_c", kind="survival",
                                             n=time.size,
                                             n_pos=int(event.sum()), n_folds=3))
    assert (row.ci_low, row.ci_high) == pytest.approx((ref.ci_low, ref.ci_high), abs=1e-9)
