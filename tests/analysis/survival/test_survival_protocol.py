"""Fold plans, out-of-fold risk, training-fold median split, and the errors."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import BaseEstimator

from neurofeat.analysis.survival import (
    PCACoxRisk,
    SurvivalDataError,
    check_min_patients,
    cross_validated_risk,
    median_split,
    survival_fold_plan,
)


class FirstColumnRisk(BaseEstimator):
    """Risk = 3 * X[:, 0] + shift, where shift depends on the TRAINING data.

    The training-fold scores and the test-fold scores then have different medians, so a
    split at the test fold's median gives different groups than the training median.
    """

    def fit(self, X, y):
        self.shift_ = float(X[:, 1].mean())
        return self

    def predict(self, X):
        return 3.0 * X[:, 0] + self.shift_

    def predict_survival(self, X, times):
        return np.ones((X.shape[0], len(times)))


def test_median_split_uses_the_training_median():
    split = median_split(train_risk=np.arange(10.0), test_risk=[5.0, 6.0, 7.0, 8.0])
    assert split.threshold == 4.5
    assert split.high_risk.tolist() == [True, True, True, True]  # test median would give 2


def test_protocol_groups_come_from_each_training_fold(cohort):
    X, time, event, ids, sites = cohort
    X = X.copy()
    X[:, 0] = np.linspace(-2, 2, X.shape[0])
    plan = survival_fold_plan(ids, event, sites, n_splits=4, n_repeats=2, task="os", seed=1)
    cv = cross_validated_risk(X, time, event, plan, model=FirstColumnRisk(), sites=sites)
    differs = 0
    for split in plan.splits():
        train_risk = FirstColumnRisk().fit(X[split.train], None).predict(X[split.train])
        test_risk = cv.risk[split.repeat, split.test]
        threshold = np.median(train_risk)
        row = cv.splits.query(f"repeat == {split.repeat} and fold == {split.fold}")
        assert row["threshold"].item() == pytest.approx(threshold)
        groups = cv.high_risk[split.repeat, split.test] == 1
        np.testing.assert_array_equal(groups, test_risk > threshold)
        differs += int((groups != (test_risk > np.median(test_risk))).any())
    assert differs > 0  # the test would fail if the test fold's median were used


def test_same_folds_for_every_backbone_and_row_order(cohort):
    X, time, event, ids, sites = cohort
    plan_a = survival_fold_plan(ids, event, sites, task="os", seed=3)
    order = np.random.default_rng(0).permutation(ids.size)
    plan_b = survival_fold_plan(ids[order], event[order], sites[order], task="os", seed=3)
    np.testing.assert_array_equal(plan_b.align(ids).fold_ids, plan_a.fold_ids)
    # every test fold holds events (stratified by event)
    for split in plan_a.splits():
        assert event[split.test].any()


def test_cv_result_shapes_and_fold_c_index(cohort):
    from sksurv.metrics import concordance_index_censored

    X, time, event, ids, sites = cohort
    plan = survival_fold_plan(ids, event, sites, n_splits=3, n_repeats=2)
    cv = cross_validated_risk(X, time, event, plan, model=PCACoxRisk(n_components=3),
                              model_name="pca-cox", sites=sites)
    assert cv.risk.shape == (2, ids.size) and np.isfinite(cv.risk).all()
    assert cv.survival.shape == (2, ids.size, cv.grid.size)
    split = next(plan.splits())
    ref = concordance_index_censored(event[split.test], time[split.test],
                                     cv.risk[split.repeat, split.test])[0]
    assert cv.splits["harrell_c"].iloc[0] == pytest.approx(ref)
    frame = cv.to_frame()
    assert len(frame) == 2 * ids.size and set(frame.risk_group) == {"low risk", "high risk"}


def test_loso_and_site_protocols(cohort):
    X, time, event, ids, sites = cohort
    loso = survival_fold_plan(ids, event, sites, protocol="loso")
    assert sorted(loso.fold_names) == sorted(set(sites))
    per_site = survival_fold_plan(ids, event, sites, protocol="site", n_splits=3, n_repeats=1)
    for split in per_site.splits():
        assert len(set(sites[split.train]) | set(sites[split.test])) == 1


def test_errors_no_events_in_site_or_too_few_events(cohort):
    X, time, event, ids, sites = cohort
    event = event.copy()
    event[sites == "UCSF"] = False
    with pytest.raises(SurvivalDataError, match=r"no events at site\(s\) UCSF \(\d+ patients\)"):
        survival_fold_plan(ids, event, sites, protocol="loso")
    few = np.zeros(ids.size, bool)
    few[:3] = True
    with pytest.raises(SurvivalDataError, match=r"only 3 events .* Use --folds 3 or fewer"):
        survival_fold_plan(ids, few, sites, n_splits=5)
    with pytest.raises(SurvivalDataError, match="has 12 patients with survival data; at least 20"):
        check_min_patients(12, min_patients=20)


def test_test_fold_without_events_is_named(cohort):
    from neurofeat.analysis.folds import FoldPlan

    X, time, event, ids, sites = cohort
    fold_ids = np.ones((1, ids.size), dtype=np.int64)
    censored = np.flatnonzero(~event)[:5]
    fold_ids[0, censored] = 0
    plan = FoldPlan(ids, fold_ids, ("fold0", "fold1"), "cv", "os", 0)
    with pytest.raises(SurvivalDataError, match="fold fold0 of repeat 0 has no events among "
                                                "its 5 test patients.*fewer folds"):
        cross_validated_risk(X, time, event, plan, model=PCACoxRisk(n_components=2))
