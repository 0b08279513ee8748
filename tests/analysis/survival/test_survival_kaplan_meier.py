"""Kaplan–Meier estimates against R survival, lifelines and scikit-survival."""

from __future__ import annotations

import numpy as np
import pytest

from neurofeat.analysis.survival import SurvivalDataError, kaplan_meier, number_at_risk


def test_aml_maintained_matches_r(aml):
    """R: summary(survfit(Surv(time, status) ~ x, data = aml))  (conf.type = "log")

    x=Maintained: time 9 n.risk 11 surv 0.9090909 lower 0.7541338;
    time 13 n.risk 10 surv 0.8181818 lower 0.6192490; time 18 n.risk 8 surv 0.715909
    std.err 0.139664970557228 lower 0.488426287422128 (jaspTools/qwraps2 outputs of R)."""
    m = aml[aml.x == "Maintained"]
    km = kaplan_meier(m.time, m.status)
    events = km.n_events > 0
    t, s, lo = km.time[events], km.survival[events], km.ci_low[events]
    np.testing.assert_allclose(t[:3], [9, 13, 18])
    np.testing.assert_allclose(s[:3], [0.9090909, 0.8181818, 0.715909090909091], atol=1e-7)
    np.testing.assert_allclose(lo[:3], [0.7541338, 0.6192490, 0.488426287422128], atol=1e-7)
    np.testing.assert_allclose(km.std_err[events][2], 0.139664970557228, atol=1e-9)
    np.testing.assert_array_equal(km.n_at_risk[events][:3], [11, 10, 8])


def test_aml_median_and_its_interval_match_r(aml):
    """R: print(survfit(Surv(time, status) ~ x, data = aml))
    median (0.95LCL, 0.95UCL): Maintained 31 (18, NA); Nonmaintained 23 (8, NA)."""
    m = aml[aml.x == "Maintained"]
    km = kaplan_meier(m.time, m.status)
    assert km.median == 31 and km.median_ci_low == 18 and np.isnan(km.median_ci_high)
    nm = aml[aml.x == "Nonmaintained"]
    km = kaplan_meier(nm.time, nm.status)
    assert km.median == 23 and km.median_ci_low == 8 and np.isnan(km.median_ci_high)


@pytest.mark.parametrize("conf_type, low, high", [
    ("log", 3.0, np.nan), ("log-log", 1.0, np.nan), ("plain", 2.0, 6.0)])
def test_median_on_a_flat_half_runs_to_the_next_event_not_a_censoring(conf_type, low, high):
    """R (survival 3.5-3):
    fit <- survfit(Surv(c(1, 2, 3, 4, 4.5, 5, 6, 7), c(1, 1, 1, 1, 0, 1, 1, 0)) ~ 1,
                   conf.type = conf_type)
    summary(fit)$table[c("median", "0.95LCL", "0.95UCL")]
    # log: 4.5 3 NA; log-log: 4.5 1 NA; plain: 4.5 2 6. quantile(fit, 0.5): 4.5

    S is 0.5 from t = 4. The next observed time, 4.5, is a censoring, and S next drops at
    5. The median is (4 + 5) / 2. The old rule gave (4 + 4.5) / 2 = 4.25.
    """
    km = kaplan_meier([1, 2, 3, 4, 4.5, 5, 6, 7], [1, 1, 1, 1, 0, 1, 1, 0],
                      conf_type=conf_type)
    np.testing.assert_array_equal([km.median, km.median_ci_low, km.median_ci_high],
                                  [4.5, low, high])


def test_median_where_s_never_leaves_half_follows_the_printed_table():
    """R (survival 3.5-3):
    fit <- survfit(Surv(1:6, c(1, 1, 1, 0, 0, 0)) ~ 1)
    summary(fit)$table[c("median", "0.95LCL", "0.95UCL")]   # 3 2 NA  (print(fit) too)
    quantile(fit, 0.5)$quantile                             # 4.5 = (3 + 6) / 2

    S reaches 0.5 at t = 3 and never drops again. R's table gives 3 and R's quantile()
    gives the midpoint to the last follow-up. neurofeat follows the table, which gives
    inf{t: S(t) <= 0.5} and does not depend on the longest censored follow-up (see
    kaplan_meier._first_time_at_or_below).
    """
    km = kaplan_meier(np.arange(1.0, 7.0), [1, 1, 1, 0, 0, 0])
    assert km.median == 3.0 and km.median_ci_low == 2.0 and np.isnan(km.median_ci_high)


def test_median_interval_bounds_on_a_flat_half_use_the_same_rule():
    """R (survival 3.5-3), survmean on hand-made curves:
    x <- list(n = 6, time = 1:6, surv = c(0.9, 0.8, 0.7, 0.6, 0.4, 0.3),
              lower = c(0.8, 0.6, 0.5, 0.5, 0.3, 0.2), upper = c(1, 0.7, 0.5, 0.6, 0.45, 0.4),
              n.risk = 6:1, n.event = rep(1, 6), conf.int = 0.95)
    survival:::survmean(x, rmean = "none")$matrix[c("median", "0.95LCL", "0.95UCL")]
    # 5 4 4

    The lower bound sits on 0.5 at t = 3 and 4 and falls at 5. The upper bound is 0.5 at
    t = 3, rises to 0.6, then falls below 0.5 at 5. Both give (3 + 5) / 2. The old rule
    gave 3.5 for both.
    """
    from neurofeat.analysis.survival.kaplan_meier import _first_time_at_or_below

    time = np.arange(1.0, 7.0)
    curves = {"surv": [0.9, 0.8, 0.7, 0.6, 0.4, 0.3], "lower": [0.8, 0.6, 0.5, 0.5, 0.3, 0.2],
              "upper": [1, 0.7, 0.5, 0.6, 0.45, 0.4]}
    got = {name: _first_time_at_or_below(time, np.array(curve), 0.5)
           for name, curve in curves.items()}
    assert got == {"surv": 5.0, "lower": 4.0, "upper": 4.0}
    # an undefined bound (NaN, as where S = 0) never counts as reaching 0.5
    assert np.isnan(_first_time_at_or_below(time, np.full(6, np.nan), 0.5))


def test_veteran_matches_lifelines_and_sksurv(veteran):
    from lifelines import KaplanMeierFitter
    from sksurv.nonparametric import kaplan_meier_estimator

    km = kaplan_meier(veteran.time, veteran.status, conf_type="log-log")
    kmf = KaplanMeierFitter().fit(veteran.time, veteran.status)
    ref = kmf.survival_function_.iloc[1:, 0]  # drop lifelines' t=0 row
    np.testing.assert_allclose(km.time, ref.index.to_numpy())
    np.testing.assert_allclose(km.survival, ref.to_numpy(), atol=1e-12)
    # lifelines' "exponential Greenwood" interval is the log-log interval
    ci = kmf.confidence_interval_.iloc[1:].to_numpy()
    finite = km.survival > 0
    np.testing.assert_allclose(km.ci_low[finite], ci[finite, 0], atol=1e-6)
    np.testing.assert_allclose(km.ci_high[finite], ci[finite, 1], atol=1e-6)
    table = kmf.event_table.iloc[1:]
    np.testing.assert_array_equal(km.n_at_risk, table["at_risk"].to_numpy())
    np.testing.assert_array_equal(km.n_events, table["observed"].to_numpy())
    np.testing.assert_array_equal(km.n_censored, table["censored"].to_numpy())
    t_sk, s_sk, ci_sk = kaplan_meier_estimator(veteran.status.astype(bool), veteran.time,
                                               conf_type="log-log")
    np.testing.assert_allclose(km.survival, s_sk)


def test_numbers_at_risk_and_step_function(aml):
    km = kaplan_meier(aml.time, aml.status)
    at = np.array([0, 9, 9.5, 45, 200])
    expected = [(aml.time >= t).sum() for t in at]
    np.testing.assert_array_equal(km.at_risk(at), expected)
    np.testing.assert_array_equal(number_at_risk(aml.time, at), expected)
    assert km.survival_at([0.0])[0] == 1.0
    k = np.flatnonzero(km.time == 9)[0]
    assert km.survival_at([9.0, 9.9])[0] == km.survival[k] == km.survival_at([9.9])[0]


def test_plain_interval_is_clipped_and_frame_has_columns(aml):
    km = kaplan_meier(aml.time, aml.status, conf_type="plain", conf_level=0.9, label="all")
    assert (km.ci_low[np.isfinite(km.ci_low)] >= 0).all()
    assert (km.ci_high[np.isfinite(km.ci_high)] <= 1).all()
    frame = km.to_frame()
    assert {"n_at_risk", "survival", "ci_low_90", "ci_high_90"} <= set(frame.columns)
    assert "median" in km.summary()


@pytest.mark.parametrize("time, match", [
    ([5.0, 0.0, 3.0], r"patient P1: survival time is 0; times must be > 0"),
    ([5.0, -2.0, 3.0], r"patient P1: survival time is -2"),
    ([5.0, np.nan, 3.0], r"patient P1: survival time is nan"),
])
def test_bad_times_name_the_patient(time, match):
    from neurofeat.analysis.survival import check_survival_data

    with pytest.raises(SurvivalDataError, match=match):
        check_survival_data(time, [1, 1, 0], patient_ids=["P0", "P1", "P2"])


def test_all_tied_times_and_no_events_are_refused():
    from neurofeat.analysis.survival import check_survival_data

    with pytest.raises(SurvivalDataError, match="all 3 survival times .* are tied at 7"):
        check_survival_data([7, 7, 7], [1, 0, 1])
    with pytest.raises(SurvivalDataError, match="no events among 3 patients"):
        check_survival_data([1, 2, 3], [0, 0, 0])
    with pytest.raises(ValueError, match="conf_type must be one of"):
        kaplan_meier([1, 2], [1, 1], conf_type="arcsin")
