"""Harrell's and Uno's c-index against R survival, scikit-survival and lifelines;
vectorised bootstrap."""

from __future__ import annotations

import numpy as np
import pytest

from neurofeat.analysis.survival import (
    SurvivalDataError,
    bootstrap_concordance,
    concordance_pairs,
    harrell_c,
    uno_c,
)


def test_harrell_whas500_matches_sksurv_published_value(whas500):
    # scikit-survival tests/test_metrics.py: concordance_index_censored on
    # whas500_predictions.csv = 0.7697907
    c = harrell_c(whas500.time, whas500.event.astype(bool), whas500.risk)
    assert c == pytest.approx(0.7697907, abs=1e-7)


def test_harrell_matches_lifelines_without_ties(veteran):
    from lifelines.utils import concordance_index

    rng = np.random.default_rng(3)
    time = veteran.time.to_numpy() + rng.uniform(0, 0.1, len(veteran))  # break time ties
    risk = -veteran.karno.to_numpy() + rng.uniform(0, 1e-3, len(veteran))
    ours = harrell_c(time, veteran.status, risk)
    # lifelines scores "higher = longer survival"
    assert ours == pytest.approx(concordance_index(time, -risk, veteran.status), abs=1e-12)


def test_uno_whas500_matches_r_and_sksurv_before_ties(whas500):
    """R: w <- read.csv("tests/data/whas500_predictions.csv", header = FALSE,
                        col.names = c("event", "time", "risk"))
    concordance(Surv(time, event) ~ risk, data = w, reverse = TRUE, timewt = "n/G2",
                ymax = 365)$concordance    # 0.77111197314938185
    ... ymax = 1000 ...                    # 0.777585235934251

    No event falls on 365 or 1000, so R's ``time <= ymax`` and our ``time < tau`` agree.
    Before day 365 no event shares its time with a censoring, so sksurv's
    concordance_index_ipcw (weights 1/G(T)^2) gives the same value. Before day 1000 seven
    such ties exist. There sksurv gives 0.7776114186970012, and we follow R's 1/G(T-)^2.
    This test used to compare with sksurv at tau=1000 too.
    """
    from sksurv.metrics import concordance_index_ipcw
    from sksurv.util import Surv

    event = whas500.event.astype(bool)
    y = Surv.from_arrays(event, whas500.time)
    sksurv_365 = concordance_index_ipcw(y, y, whas500.risk.to_numpy(), tau=365.0)[0]
    ours_365 = uno_c(whas500.time, event, whas500.risk, tau=365.0)
    assert ours_365 == pytest.approx(sksurv_365, abs=1e-12)
    assert ours_365 == pytest.approx(0.77111197314938185, abs=1e-12)
    assert uno_c(whas500.time, event, whas500.risk, tau=1000.0) == pytest.approx(
        0.777585235934251, abs=1e-12)


def test_uno_event_tied_with_censoring_matches_r_concordance():
    """scikit-survival issue #428 example. R (survival 3.5-3):
    futime <- c(11, 11, 26, 89, 128, 299, 300); fustat <- c(1, 0, 0, 1, 0, 1, 0)
    lp <- c(-0.02, 1.20, -0.56, -1.33, -0.81, 1.02, -1.29)
    concordance(Surv(futime, fustat) ~ lp, reverse = TRUE, timewt = "n/G2",
                ymax = 200)$concordance      # 0.31372549019607843 (= 16/51)
    ... ymax = 299.5 ...                     # 0.50877192982456143 (= 29/57)

    At day 11 an event and a censoring are tied. The event's weight is 1/G(11-)^2 = 1 in
    R. sksurv uses 1/G(11)^2 = (6/5)^2 and gets 0.37426900584795325 at tau=299 (the
    issue's number). By hand: G(89-) = 2/3, G(299-) = 4/9; the event at 11 is
    concordant in 4 of its 6 pairs, the one at 89 in 0 of 3, the one at 299 in 1 of 1.
    """
    time = [11, 11, 26, 89, 128, 299, 300]
    event = [1, 0, 0, 1, 0, 1, 0]
    risk = [-0.02, 1.20, -0.56, -1.33, -0.81, 1.02, -1.29]
    assert uno_c(time, event, risk, tau=200) == pytest.approx(0.31372549019607843, abs=1e-12)
    assert uno_c(time, event, risk, tau=299.5) == pytest.approx(0.50877192982456143,
                                                                abs=1e-12)
    pairs = concordance_pairs(time, event, tau=299.5)
    np.testing.assert_allclose(pairs.uno_weight, [1, 0, 0, 9 / 4, 0, 81 / 16, 0], rtol=1e-15)


def _untied_data(n, seed):
    """Continuous event and censoring times (no event shares a censoring's time), risks
    rounded to one decimal (tied risks)."""
    rng = np.random.default_rng(seed)
    event_time, censor_time = rng.exponential(1.0, n), rng.exponential(2.0, n)
    risk = np.round(rng.standard_normal((3, n)) - 0.5 * np.log(event_time), 1)
    return np.minimum(event_time, censor_time), event_time <= censor_time, risk


@pytest.mark.parametrize("seed", range(6))
def test_uno_matches_sksurv_ipcw_without_event_censoring_ties(seed):
    # sksurv: concordance_index_ipcw(y, y, risk, tau=tau)[0]; without ties G(T-) = G(T)
    # at every event time, so its weights are ours.
    from sksurv.metrics import concordance_index_ipcw
    from sksurv.util import Surv

    time, event, risk = _untied_data(40 + 50 * seed, seed)
    y = Surv.from_arrays(event, time)
    for tau in np.quantile(time, [0.5, 0.8, 0.95]):
        ours = uno_c(time, event, risk[0], tau=tau)
        assert ours == pytest.approx(concordance_index_ipcw(y, y, risk[0], tau=tau)[0],
                                     abs=1e-12)


def test_uno_with_separate_censoring_data():
    # censoring distribution from other patients: same weights as the pair sums by hand
    time, event, risk = _untied_data(60, 11)
    cens_time, cens_event, _ = _untied_data(200, 12)
    tau = float(np.quantile(time, 0.7))
    ours = uno_c(time, event, risk[0], tau=tau, censor_time=cens_time,
                 censor_event=cens_event)
    pairs = concordance_pairs(time, event, tau=tau, censor_time=cens_time,
                              censor_event=cens_event)
    conc = (risk[0][:, None] > risk[0][None, :]) + 0.5 * (risk[0][:, None] == risk[0][None, :])
    by_hand = ((pairs.uno_weight[:, None] * pairs.comparable * conc).sum()
               / (pairs.uno_weight[:, None] * pairs.comparable).sum())
    assert ours == pytest.approx(by_hand, abs=1e-12)
    with pytest.raises(SurvivalDataError, match=r"later than the last time of the "
                                                r"censoring data \(0\.5\)"):
        uno_c(time, event, risk[0], tau=tau, censor_time=[0.2, 0.5], censor_event=[0, 1])
    with pytest.raises(SurvivalDataError, match=r"the censoring distribution is zero before "
                                                r"the event at time 0\.5"):
        uno_c(time, event, risk[0], tau=tau, censor_time=[0.2, 0.5], censor_event=[0, 0])


def _ties_data(n=120, seed=0):
    rng = np.random.default_rng(seed)
    time = np.round(rng.exponential(1.0, n), 1) + 0.1  # many tied times
    event = rng.random(n) < 0.7
    risk = np.round(rng.standard_normal((3, n)), 1)  # tied risks, 3 "repeats"
    return time, event, risk


def test_vectorised_bootstrap_equals_the_point_estimates_on_resamples():
    # With tied event and censoring times the Uno reference is our uno_c on the
    # resampled arrays, with the censoring distribution of the full data. sksurv's
    # concordance_index_ipcw(y, y[i], ...) would use G(T) rather than G(T-); this test
    # compared with it before uno_c followed R.
    from sksurv.metrics import concordance_index_censored

    time, event, risk = _ties_data()
    tau = 1.2
    pairs = concordance_pairs(time, event, tau=tau)
    rng = np.random.default_rng(1)
    idx = rng.integers(0, time.size, (40, time.size))
    idx[0] = np.arange(time.size)
    h, u = bootstrap_concordance(pairs, risk, idx, chunk_size=16)
    ref_h = [np.mean([concordance_index_censored(event[i], time[i], r[i])[0] for r in risk])
             for i in idx]
    ref_u = [np.mean([uno_c(time[i], event[i], r[i], tau=tau, censor_time=time,
                            censor_event=event) for r in risk])
             for i in idx]
    np.testing.assert_allclose(h, ref_h, rtol=0, atol=1e-12)
    np.testing.assert_allclose(u, ref_u, rtol=0, atol=1e-12)
    assert h[0] == pytest.approx(np.mean([harrell_c(time, event, r) for r in risk]), abs=1e-12)
    assert u[0] == pytest.approx(np.mean([uno_c(time, event, r, tau=tau) for r in risk]),
                                 abs=1e-12)


def test_vectorised_uno_bootstrap_equals_sksurv_loop_without_ties():
    # sksurv: concordance_index_ipcw(y, y[i], r[i], tau=tau) on each resample
    from sksurv.metrics import concordance_index_ipcw
    from sksurv.util import Surv

    time, event, risk = _untied_data(80, 4)
    tau = float(np.quantile(time, 0.8))
    pairs = concordance_pairs(time, event, tau=tau)
    idx = np.random.default_rng(5).integers(0, time.size, (25, time.size))
    _, u = bootstrap_concordance(pairs, risk, idx, chunk_size=8)
    y = Surv.from_arrays(event, time)
    ref_u = [np.mean([concordance_index_ipcw(y, y[i], r[i], tau=tau)[0] for r in risk])
             for i in idx]
    np.testing.assert_allclose(u, ref_u, rtol=0, atol=1e-12)


def test_jackknife_rows_equal_leave_one_out():
    from neurofeat.analysis.bootstrap import jackknife_indices

    time, event, risk = _ties_data(n=40, seed=2)
    pairs = concordance_pairs(time, event, tau=1.0)
    h, _ = bootstrap_concordance(pairs, risk[0], jackknife_indices(time.size))
    keep = np.arange(time.size) != 7
    assert h[7] == pytest.approx(harrell_c(time[keep], event[keep], risk[0][keep]), abs=1e-12)


def test_uno_tau_without_events_is_refused():
    with pytest.raises(SurvivalDataError, match=r"no event before the truncation time tau=1"):
        uno_c([2.0, 3.0, 4.0], [1, 1, 0], [0.1, 0.2, 0.3], tau=1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_null_variance_equals_enumeration_over_all_score_orders(seed):
    """Under risk scores unrelated to the outcome every ordering of m patients is
    equally likely: the variance over all m! orderings, scored by scikit-survival (Harrell;
    Uno's IPCW C with the same censoring data), is the exact value."""
    import itertools

    from sksurv.metrics import concordance_index_censored, concordance_index_ipcw
    from sksurv.util import Surv

    from neurofeat.analysis.survival import concordance_null_variance

    rng = np.random.default_rng(seed)
    m = 6
    time = rng.permutation(np.arange(1.0, m + 1) * 3.0)  # distinct times
    event = rng.random(m) < 0.6
    event[np.argmin(time)] = True
    tau = float(time.max())  # every event but one at the last time counts
    pairs = concordance_pairs(time, event, tau=tau)
    y = Surv.from_arrays(event, time)
    harrell, uno = [], []
    for order in itertools.permutations(range(m)):
        risk = np.asarray(order, dtype=float)
        harrell.append(concordance_index_censored(event, time, risk)[0])
        uno.append(concordance_index_ipcw(y, y, risk, tau=tau)[0])
    assert concordance_null_variance(pairs.comparable, np.ones(m)) == pytest.approx(
        np.var(harrell), rel=1e-10)
    # no censoring tied with an event: sksurv's G(T) equals the left limit G(T-)
    assert concordance_null_variance(pairs.comparable, pairs.uno_weight) == pytest.approx(
        np.var(uno), rel=1e-10)


def test_null_variance_is_mann_whitney_when_events_precede_censorings():
    from neurofeat.analysis.survival import concordance_null_variance

    n_events, n_censored = 9, 14
    # every event at one time (tied events are not comparable), every censoring later:
    # the comparable pairs are exactly the events x censorings of a Mann-Whitney AUC
    time = np.concatenate([np.ones(n_events), np.arange(2.0, n_censored + 2)])
    event = np.arange(time.size) < n_events
    pairs = concordance_pairs(time, event, tau=float(time.max()))
    n = n_events + n_censored
    assert concordance_null_variance(pairs.comparable, np.ones(n)) == pytest.approx(
        (n + 1) / (12 * n_events * n_censored), rel=1e-12)
    assert np.isnan(concordance_null_variance(np.zeros((3, 3), bool), np.ones(3)))
