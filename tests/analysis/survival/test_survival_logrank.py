"""Log-rank test against R survdiff and lifelines."""

from __future__ import annotations

import numpy as np
import pytest

from neurofeat.analysis.survival import SurvivalDataError, logrank_test


def test_ovarian_matches_r(ovarian):
    """R: survdiff(Surv(futime, fustat) ~ rx, data = ovarian)
          N Observed Expected (O-E)^2/E (O-E)^2/V
    rx=1 13        7  5.23353  0.596235   1.06274
    rx=2 13        5  6.76647  0.461158   1.06274
    Chisq= 1.1 on 1 degrees of freedom, p= 0.302591"""
    res = logrank_test(ovarian.futime, ovarian.fustat, ovarian.rx)
    assert res.statistic == pytest.approx(1.06274, abs=5e-6)
    assert res.p_value == pytest.approx(0.302591, abs=5e-7)
    assert res.df == 1
    np.testing.assert_allclose(res.expected, [5.23353, 6.76647], atol=5e-6)
    np.testing.assert_array_equal(res.observed, [7, 5])
    np.testing.assert_array_equal(res.n, [13, 13])
    np.testing.assert_allclose(res.to_frame()["o_minus_e_sq_over_e"], [0.596235, 0.461158],
                               atol=5e-6)


def test_aml_matches_r(aml):
    """R: survdiff(Surv(time, status) ~ x, data = aml)
    Maintained 11 7 10.69; Nonmaintained 12 11 7.31; Chisq= 3.4 on 1 df, p= 0.0653"""
    res = logrank_test(aml.time, aml.status, aml.x)
    assert res.groups == ("Maintained", "Nonmaintained")
    np.testing.assert_allclose(res.expected, [10.69, 7.31], atol=0.005)
    assert res.p_value == pytest.approx(0.0653, abs=5e-5)
    assert "log-rank chi-squared" in res.summary()


def test_multigroup_matches_lifelines(veteran):
    from lifelines.statistics import multivariate_logrank_test

    res = logrank_test(veteran.time, veteran.status, veteran.celltype)
    ref = multivariate_logrank_test(veteran.time, veteran.celltype, veteran.status)
    assert res.df == 3
    assert res.statistic == pytest.approx(ref.test_statistic, rel=1e-10)
    assert res.p_value == pytest.approx(ref.p_value, rel=1e-8)


def test_one_group_is_refused(aml):
    with pytest.raises(SurvivalDataError, match="at least two groups; all 23 patients are in"):
        logrank_test(aml.time, aml.status, ["a"] * len(aml))
