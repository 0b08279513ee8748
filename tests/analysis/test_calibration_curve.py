"""Calibration slope/intercept, Brier score and reliability bins (analysis/calibration.py)."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss

from neurofeat.analysis.calibration import (brier_score, calibration, logistic_recalibration,
                                            reliability_bins)


def simulated(n=5000, seed=0, slope=1.0, shift=0.0):
    """A predictor whose probabilities are the true risks (slope 1) or distorted."""
    rng = np.random.default_rng(seed)
    lp = rng.normal(0.0, 1.5, n)
    true_p = 1 / (1 + np.exp(-lp))
    y = rng.random(n) < true_p
    # the reported probability: logit(p) = (lp - shift) / slope -> recalibration slope = slope
    p = 1 / (1 + np.exp(-(lp - shift) / slope))
    return y, p


def test_perfectly_calibrated_predictor_has_slope_one_and_intercept_zero():
    y, p = simulated()
    result = calibration(y, p, n_boot=300)
    assert result.slope_ci_low <= 1.0 <= result.slope_ci_high
    assert result.intercept_ci_low <= 0.0 <= result.intercept_ci_high
    assert result.slope == pytest.approx(1.0, abs=0.08)
    assert result.intercept == pytest.approx(0.0, abs=0.08)


def test_overfitted_predictor_has_slope_below_one():
    y, p = simulated(slope=0.5, seed=1)   # probabilities too extreme
    (slope, low, high), _ = logistic_recalibration(y, p)
    assert high < 1.0 and slope == pytest.approx(0.5, abs=0.06)


def test_matches_statsmodels_directly():
    y, p = simulated(n=800, seed=2, slope=1.3, shift=0.4)
    (slope, s_low, s_high), (intercept, i_low, i_high) = logistic_recalibration(y, p, 0.9)
    lp = np.log(p / (1 - p))
    # statsmodels: glm(y ~ lp, binomial) and glm(y ~ 1 + offset(lp), binomial)
    fit = sm.GLM(y.astype(float), sm.add_constant(lp), family=sm.families.Binomial()).fit()
    assert slope == pytest.approx(fit.params[1], rel=1e-10)
    assert (s_low, s_high) == pytest.approx(tuple(fit.conf_int(0.1)[1]), rel=1e-10)
    fit = sm.GLM(y.astype(float), np.ones((y.size, 1)), offset=lp,
                 family=sm.families.Binomial()).fit()
    assert intercept == pytest.approx(fit.params[0], rel=1e-10)
    assert (i_low, i_high) == pytest.approx(tuple(fit.conf_int(0.1)[0]), rel=1e-10)


def test_brier_and_reliability_match_sklearn():
    y, p = simulated(n=1000, seed=3)
    assert brier_score(y, p)[0] == pytest.approx(brier_score_loss(y, p), rel=1e-12)
    bins = reliability_bins(y, p, n_bins=10, strategy="uniform")
    observed, predicted = calibration_curve(y, p, n_bins=10, strategy="uniform")
    assert bins["observed"].to_numpy() == pytest.approx(observed, rel=1e-12)
    assert bins["mean_predicted"].to_numpy() == pytest.approx(predicted, rel=1e-12)
    assert (bins["observed_ci_low"] <= bins["observed"]).all()
    quantile = reliability_bins(y, p, n_bins=5)
    assert len(quantile) == 5 and quantile["n"].sum() == 1000
    assert abs(quantile["n"] - 200).max() <= 1


def test_result_frame_and_summary():
    y, p = simulated(n=400, seed=4)
    result = calibration(y, p, n_boot=100)
    frame = result.to_frame()
    assert frame.shape[0] == 1 and frame["ci_level"].iloc[0] == 0.95
    assert result.brier_ci_low <= result.brier <= result.brier_ci_high
    assert result.brier_null == pytest.approx(y.mean() * (1 - y.mean()))
    assert "calibration slope" in result.summary()


def test_one_class_gives_nan_slope_not_a_crash():
    p = np.linspace(0.1, 0.9, 20)
    (slope, _, _), (intercept, _, _) = logistic_recalibration(np.zeros(20, bool), p)
    assert np.isnan(slope) and np.isnan(intercept)


@pytest.mark.parametrize(("y", "p", "match"), [
    (np.array([0, 1, 2]), np.array([0.1, 0.2, 0.3]), "labels must be 0/1"),
    (np.array([0, 1]), np.array([0.1, 1.2]), "within \\[0, 1\\]"),
    (np.array([0, 1]), np.array([0.1, 0.2, 0.3]), "same length"),
])
def test_bad_input(y, p, match):
    with pytest.raises(ValueError, match=match):
        calibration(y, p)
