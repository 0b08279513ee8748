"""Harrell's and Uno's c-index against scikit-survival/lifelines; vectorised bootstrap."""

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


def test_uno_matches_sksurv_ipcw(whas500):
    from sksurv.metrics import concordance_index_ipcw
    from sksurv.util import Surv

    y = Surv.from_arrays(whas500.event.astype(bool), whas500.time)
    for tau in (365.0, 1000.0):
        ref = concordance_index_ipcw(y, y, whas500.risk.to_numpy(), tau=tau)[0]
        ours = uno_c(whas500.time, whas500.event.astype(bool), whas500.risk, tau=tau)
        assert ours == pytest.approx(ref, abs=1e-12)


def _ties_data(n=120, seed=0):
    rng = np.random.default_rng(seed)
    time = np.round(rng.exponential(1.0, n), 1) + 0.1  # many tied times
    event = rng.random(n) < 0.7
    risk = np.round(rng.standard_normal((3, n)), 1)  # tied risks, 3 "repeats"
    return time, event, risk


def test_vectorised_bootstrap_equals_sksurv_loop():
    from sksurv.metrics import concordance_index_censored, concordance_index_ipcw
    from sksurv.util import Surv

    time, event, risk = _ties_data()
    tau = 1.2
    pairs = concordance_pairs(time, event, tau=tau)
    rng = np.random.default_rng(1)
    idx = rng.integers(0, time.size, (40, time.size))
    idx[0] = np.arange(time.size)
    h, u = bootstrap_concordance(pairs, risk, idx, chunk_size=16)
    y = Surv.from_arrays(event, time)
    ref_h = [np.mean([concordance_index_censored(event[i], time[i], r[i])[0] for r in risk])
             for i in idx]
    ref_u = [np.mean([concordance_index_ipcw(y, y[i], r[i], tau=tau)[0] for r in risk])
             for i in idx]
    np.testing.assert_allclose(h, ref_h, rtol=0, atol=1e-12)
    np.testing.assert_allclose(u, ref_u, rtol=0, atol=1e-12)
    assert h[0] == pytest.approx(np.mean([harrell_c(time, event, r) for r in risk]), abs=1e-12)


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
