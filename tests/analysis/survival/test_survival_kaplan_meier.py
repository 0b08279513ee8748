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
