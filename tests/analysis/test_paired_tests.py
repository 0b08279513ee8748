"""Paired tests against scipy, the corrected t-test by hand, Holm/BH against statsmodels."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from neurofeat.analysis.paired_tests import adjust_pvalues, corrected_resampled_ttest, \
    paired_test


def test_ttest_matches_scipy():
    rng = np.random.default_rng(0)
    a = rng.normal(0.80, 0.03, 25)
    b = a - rng.normal(0.01, 0.02, 25)
    res = paired_test(a, b, method="ttest")
    ref = stats.ttest_rel(a, b)
    assert res.statistic == pytest.approx(ref.statistic) and res.p_value == pytest.approx(ref.pvalue)
    assert res.df == 24 and res.mean_diff == pytest.approx(np.mean(a - b))


def test_wilcoxon_matches_scipy():
    rng = np.random.default_rng(1)
    a = rng.normal(0.8, 0.05, 25)
    b = a - rng.exponential(0.02, 25) + 0.01
    res = paired_test(a, b, method="wilcoxon")
    ref = stats.wilcoxon(a, b)
    assert res.statistic == pytest.approx(ref.statistic) and res.p_value == pytest.approx(ref.pvalue)
    greater = paired_test(a, b, method="wilcoxon", alternative="greater")
    assert greater.p_value == pytest.approx(stats.wilcoxon(a, b, alternative="greater").pvalue)


def test_auto_follows_shapiro():
    rng = np.random.default_rng(2)
    normal = rng.normal(0.01, 0.02, 30)
    skewed = rng.exponential(0.02, 30) ** 3
    r_norm = paired_test(normal, method="auto")
    r_skew = paired_test(skewed, method="auto")
    assert stats.shapiro(normal).pvalue > 0.05 and r_norm.test == "ttest"
    assert stats.shapiro(skewed).pvalue <= 0.05 and r_skew.test == "wilcoxon"
    assert r_skew.normality_p == pytest.approx(stats.shapiro(skewed).pvalue)


def test_all_zero_differences():
    res = paired_test(np.ones(5), np.ones(5))
    assert res.p_value == 1.0 and np.isnan(res.statistic)


def test_corrected_t_by_hand():
    # d = (0.02, 0.04, 0.00, 0.06): mean 0.03; s^2 = (1e-4 + 1e-4 + 9e-4 + 9e-4) / 3
    # = 0.002 / 3; J = 4, n_test / n_train = 20 / 80 = 0.25 -> factor 1/4 + 1/4 = 0.5
    # t = 0.03 / sqrt(0.5 * 0.002 / 3) = 0.03 * sqrt(3000) = 1.6431677; df = 3
    res = corrected_resampled_ttest(np.array([0.02, 0.04, 0.00, 0.06]), n_train=80, n_test=20)
    assert res.statistic == pytest.approx(0.03 * np.sqrt(3000))
    assert res.df == 3
    assert res.p_value == pytest.approx(2 * stats.t.sf(0.03 * np.sqrt(3000), 3))
    # without the n_test/n_train term it is the ordinary one-sample t-test
    naive = stats.ttest_1samp([0.02, 0.04, 0.00, 0.06], 0)
    assert res.statistic < naive.statistic
    assert res.statistic == pytest.approx(naive.statistic * np.sqrt((1 / 4) / 0.5))


def test_corrected_t_errors():
    with pytest.raises(ValueError, match="n_train and n_test must be > 0"):
        corrected_resampled_ttest(np.ones(3), n_train=0, n_test=2)
    with pytest.raises(ValueError, match="at least 2 folds"):
        corrected_resampled_ttest(np.ones(1), n_train=8, n_test=2)


def test_holm_bh_match_statsmodels():
    p = np.array([0.01, 0.04, 0.03, 0.2, 0.001, np.nan])
    finite = p[:5]
    holm = adjust_pvalues(p, "holm")
    bh = adjust_pvalues(p, "bh")
    assert np.allclose(holm[:5], multipletests(finite, method="holm")[1])
    assert np.allclose(bh[:5], multipletests(finite, method="fdr_bh")[1])
    assert np.isnan(holm[5]) and np.isnan(bh[5])
    with pytest.raises(ValueError, match="method must be 'holm' or 'bh'"):
        adjust_pvalues(p, "bonferroni")


def test_smallest_attainable_p_bounds_every_vector_with_that_many_zeros():
    """With m of J fold differences non-zero, no data give a smaller corrected-t p than
    m equal differences (scipy's t distribution and a search over random vectors), and
    the closed form sqrt(m (J - 1) / (J - m)) of the largest fold t holds."""
    from neurofeat.analysis.paired_tests import smallest_attainable_p

    rng = np.random.default_rng(11)
    j, n_train, n_test, c = 25, 96, 24, 1.4
    inflate = np.sqrt(1 + c * j * n_test / n_train)
    for m in (1, 6, 15, 16, 19, 24):
        floor = smallest_attainable_p(m, j, n_train=n_train, n_test=n_test, correction=c)
        t_max = np.sqrt(m * (j - 1) / (j - m)) / inflate
        assert floor == pytest.approx(2 * stats.t.sf(t_max, j - 1), rel=1e-10)
        for _ in range(200):
            d = np.zeros(j)
            d[:m] = rng.normal(0.05, rng.uniform(0.001, 0.1), m)
            p = corrected_resampled_ttest(d, n_train=n_train, n_test=n_test,
                                          correction=c).p_value
            assert p >= floor - 1e-12
    assert smallest_attainable_p(0, j, n_train=96, n_test=24) == 1.0
    assert smallest_attainable_p(j, j, n_train=96, n_test=24) == 0.0
    # the threshold the README states for continuous BA (c = 1.4): 16 differing folds
    assert smallest_attainable_p(15, j, n_train=96, n_test=24, correction=1.4) > 0.05
    assert smallest_attainable_p(16, j, n_train=96, n_test=24, correction=1.4) < 0.05
    with pytest.raises(ValueError, match="n_differing"):
        smallest_attainable_p(26, j, n_train=96, n_test=24)
