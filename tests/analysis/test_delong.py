"""DeLong variance, CI and paired test against published pROC outputs on aSAH.

Expected values are copied from pROC 1.18's test suite (tests/testthat/test-var.R,
test-cov.R, test-ci.auc.R, test-roc.test.R, test-auc.R), which ran on the aSAH data set
shipped with pROC (tests/data/aSAH.csv). The R calls are in the comments.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from neurofeat.analysis.delong import delong_auc, delong_covariance, delong_placements, \
    delong_test

DATA = Path(__file__).resolve().parents[1] / "data" / "aSAH.csv"


@pytest.fixture(scope="module")
def asah():
    frame = pd.read_csv(DATA)
    y = (frame["outcome"] == "Poor").to_numpy()   # pROC: controls = Good, cases = Poor
    return y, frame


def test_auc_matches_proc_and_sklearn(asah):
    y, d = asah
    # R: auc(aSAH$outcome, aSAH$wfns); auc(..., aSAH$ndka); auc(..., aSAH$s100b)
    for col, expected in [("wfns", 0.823678861788618), ("ndka", 0.611957994579946),
                          ("s100b", 0.731368563685637)]:
        r = delong_auc(y, d[col].to_numpy())
        assert r.auc == pytest.approx(expected, abs=1e-12)
        assert r.auc == pytest.approx(roc_auc_score(y, d[col]), abs=1e-12)


def test_variance_matches_proc(asah):
    y, d = asah
    # R: r.wfns <- roc(aSAH$outcome, aSAH$wfns); var(r.wfns)   (method = "delong")
    expected = {"wfns": 0.00146991470882363, "ndka": 0.0031908105493913,
                "s100b": 0.00266868245717244}
    for col, var in expected.items():
        assert delong_auc(y, d[col].to_numpy()).variance == pytest.approx(var, rel=1e-9)


def test_covariance_matches_proc(asah):
    y, d = asah
    # R: cov(r.wfns, r.ndka); cov(r.ndka, r.s100b); cov(r.s100b, r.wfns)
    _, cov = delong_covariance(y, np.vstack([d["wfns"], d["ndka"], d["s100b"]]))
    assert cov[0, 1] == pytest.approx(-0.000532967856762438, rel=1e-9)
    assert cov[1, 2] == pytest.approx(-0.000756164938056579, rel=1e-9)
    assert cov[2, 0] == pytest.approx(0.00119615567376754, rel=1e-9)
    assert np.allclose(cov, cov.T)


def test_ci_matches_proc(asah):
    y, d = asah
    # R: ci.auc(r.ndka)  -> 0.501244999271703 0.611957994579946 0.722670989888189
    r = delong_auc(y, d["ndka"].to_numpy())
    assert (r.ci_low, r.auc, r.ci_high) == pytest.approx(
        (0.501244999271703, 0.611957994579946, 0.722670989888189), abs=1e-12)


@pytest.mark.parametrize("a, b, z, p, lo, hi", [
    # R: roc.test(r.wfns, r.s100b)
    ("wfns", "s100b", 2.20898359144091, 0.0271757822291882, 0.0104061769564846,
     0.174214419249478),
    # R: roc.test(r.wfns, r.ndka)
    ("wfns", "ndka", 2.79777591868904, 0.00514557970691098, 0.0634011709339876,
     0.3600405634833566),
    # R: roc.test(r.ndka, r.s100b)
    ("ndka", "s100b", -1.39077002573558, 0.164295175223054, -0.2876917446341914,
     0.0488706064228094),
])
def test_paired_test_matches_proc(asah, a, b, z, p, lo, hi):
    y, d = asah
    res = delong_test(y, d[a].to_numpy(), d[b].to_numpy())
    assert res.z == pytest.approx(z, rel=1e-9)
    assert res.p_value == pytest.approx(p, rel=1e-9)
    assert (res.diff_ci_low, res.diff_ci_high) == pytest.approx((lo, hi), abs=1e-12)
    reverse = delong_test(y, d[b].to_numpy(), d[a].to_numpy())
    assert reverse.z == pytest.approx(-z, rel=1e-9)
    assert reverse.p_value == pytest.approx(p, rel=1e-9)


def test_one_sided_matches_proc(asah):
    y, d = asah
    # R: roc.test(r.wfns, r.s100b, alternative = "greater") -> p 0.0135878911145941
    #    roc.test(r.wfns, r.s100b, alternative = "less")    -> p 0.986412108885406
    greater = delong_test(y, d["wfns"].to_numpy(), d["s100b"].to_numpy(), alternative="greater")
    less = delong_test(y, d["wfns"].to_numpy(), d["s100b"].to_numpy(), alternative="less")
    assert greater.p_value == pytest.approx(0.0135878911145941, rel=1e-9)
    assert less.p_value == pytest.approx(0.986412108885406, rel=1e-9)


def test_identical_curves(asah):
    y, d = asah
    # R: roc.test(r.wfns, r.wfns) -> Z = 0, p = 1
    res = delong_test(y, d["wfns"].to_numpy(), d["wfns"].to_numpy())
    assert res.z == 0 and res.p_value == 1


def _naive_placements(y, s):
    """DeLong 1988 structural components by the O(m n) double loop (independent)."""
    pos, neg = s[y], s[~y]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    return psi.mean(), psi.mean(axis=1), psi.mean(axis=0)


def test_fast_placements_equal_naive_with_ties():
    rng = np.random.default_rng(3)
    y = rng.random(80) < 0.4
    s = np.round(rng.normal(size=(2, 80)) + y, 1)   # many ties
    auc, v10, v01 = delong_placements(y, s)
    for k in range(2):
        a, p10, p01 = _naive_placements(y, s[k])
        assert auc[k] == pytest.approx(a, abs=1e-12)
        assert np.allclose(v10[k], p10) and np.allclose(v01[k], p01)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="needs positives and negatives; got 0 positives"):
        delong_auc(np.zeros(5, bool), np.arange(5.0))
    with pytest.raises(ValueError, match="must be 0/1 or bool"):
        delong_auc(np.array([0, 2, 1]), np.arange(3.0))
    with pytest.raises(ValueError, match="score of row 1 is not finite"):
        delong_auc(np.array([0, 1, 1]), np.array([0.1, np.nan, 0.3]))
