"""Permutation log-rank test of cross-validated risk groups (issue 13; Simon et al. 2011).

The level of the test is checked by simulation in
tests/calibration/test_survival_permutation_calibration.py; here: the statistic against
scikit-survival's log-rank, the observed statistic against the published row of
``evaluate_survival``, reproducibility, within-site permutations, a planted effect,
and bad input.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import BaseEstimator

from neurofeat.analysis.folds import derive_seed
from neurofeat.analysis.survival import (
    PCACoxRisk,
    SurvivalDataError,
    cross_validated_risk,
    evaluate_survival,
    logrank_chisq,
    logrank_test,
    permutation_logrank_test,
    site_subsets,
    survival_fold_plan,
)
from neurofeat.analysis.survival.permutation import permutation_indices, sequential_p_value

MODEL = PCACoxRisk(n_components=3)


class _SpyRisk(BaseEstimator):
    """Least-squares risk score that records which outcome each patient got.

    Column 0 of ``X`` is the patient's row number; the other columns are the features.
    """

    fits: list = []

    def fit(self, X, y):
        _SpyRisk.fits.append((X[:, 0].astype(int), np.asarray(y["time"]),
                              np.asarray(y["event"])))
        Z = X[:, 1:]
        target = -np.log(y["time"])
        self.mean_ = Z.mean(axis=0)
        self.coef_ = np.linalg.lstsq(Z - self.mean_, target - target.mean(), rcond=None)[0]
        return self

    def predict(self, X):
        return (X[:, 1:] - self.mean_) @ self.coef_


@pytest.mark.parametrize("seed", range(6))
def test_logrank_chisq_equals_sksurv_logrank(seed):
    # reference: sksurv.compare.compare_survival (itself checked against R survdiff in
    # test_survival_logrank.py); integer times give many ties
    rng = np.random.default_rng(seed)
    n = int(rng.integers(8, 80))
    time = rng.integers(1, 15, n).astype(float)
    event = rng.random(n) < 0.6
    event[0] = True
    group = rng.random(n) < 0.4
    group[:2] = [True, False]
    ref = logrank_test(time, event, np.where(group, "high", "low")).statistic
    assert logrank_chisq(time, event, group) == pytest.approx(ref, rel=1e-10, abs=1e-12)


def test_logrank_chisq_one_group_is_zero():
    time, event = np.arange(1.0, 7.0), np.ones(6, bool)
    assert logrank_chisq(time, event, np.zeros(6, bool)) == 0.0
    assert logrank_chisq(time, event, np.ones(6, bool)) == 0.0


@pytest.fixture(scope="module")
def result(cohort):
    X, time, event, ids, sites = cohort
    return permutation_logrank_test(X, time, event, patient_ids=ids, sites=sites,
                                    subsets=site_subsets(sites, event), model=MODEL,
                                    n_splits=3, seed=4, n_permutations=19, stop_after=None)


@pytest.fixture(scope="module")
def sequential(cohort):
    X, time, event, ids, sites = cohort
    return permutation_logrank_test(X, time, event, patient_ids=ids, sites=sites,
                                    subsets=site_subsets(sites, event), model=MODEL,
                                    n_splits=3, seed=4, n_permutations=19, stop_after=2)


def test_observed_statistic_is_the_published_rows(cohort, result):
    """The observed statistic is evaluate_survival's chi-squared of repeat 0, pooled and
    per site, although the CV there ran 2 repeats (repeat 0 does not depend on them)."""
    X, time, event, ids, sites = cohort
    plan = survival_fold_plan(ids, event, sites, n_splits=3, n_repeats=2, seed=4)
    cv = cross_validated_risk(X, time, event, plan, model=MODEL, sites=sites)
    ev = evaluate_survival(cv, n_boot=50, seed=4, permutation=result)
    chisq = ev.metrics[ev.metrics["metric"] == "logrank_chisq"].set_index("site")["estimate"]
    assert set(chisq.index) == set(result.statistic) == {"all", "UCSF", "UPenn", "CUIMC"}
    for site, stat in result.statistic.items():
        assert stat == pytest.approx(chisq[site], rel=1e-10)
    # the permutation p is the primary log-rank row; the chi-squared p stays, labelled
    rows = ev.metrics[ev.metrics["metric"] == "logrank_p"]
    for site, block in rows.groupby("site"):
        primary = block[block["primary"]]
        assert len(primary) == 1 and len(block) == 2
        assert primary["estimate"].iloc[0] == result.p_value[site]
        assert primary["ci_method"].iloc[0] == result.method
        assert "exact" in result.method and "within site" in result.method
        published = block[~block["primary"]]["ci_method"].iloc[0]
        assert "not calibrated" in published and "permutation log-rank p" in published
    assert "log-rank p" in ev.summary() and "(permutation)" in ev.summary()


def test_p_values_are_permutation_p_values(result):
    B = result.n_permutations
    for site, p in result.p_value.items():
        assert 0 < p <= 1
        k = p * (B + 1)
        assert k == pytest.approx(round(k))  # (1 + count) / (B + 1)
        null = result.null_statistics[site]
        assert null.shape == (B,)
        assert p == (1 + np.sum(null >= result.statistic[site] - 1e-9)) / (B + 1)
    assert result.min_p == 1 / 20
    assert "B = 19" in result.summary() and "within site (3 strata)" in result.summary()
    assert list(result.to_frame()["subset"]) == list(result.statistic)


def test_reproducible_under_a_seed(cohort, result):
    X, time, event, ids, sites = cohort
    kwargs = dict(patient_ids=ids, sites=sites, subsets=site_subsets(sites, event),
                  model=MODEL, n_splits=3, n_permutations=19, stop_after=None)
    again = permutation_logrank_test(X, time, event, seed=4, **kwargs)
    for site in result.statistic:
        np.testing.assert_array_equal(again.null_statistics[site],
                                      result.null_statistics[site])
        assert again.p_value[site] == result.p_value[site]
    other = permutation_logrank_test(X, time, event, seed=5, **kwargs)
    assert not np.array_equal(other.null_statistics["all"], result.null_statistics["all"])


def test_within_site_permutations_keep_each_sites_outcomes(cohort):
    X, time, event, ids, sites = cohort
    rng = np.random.default_rng(derive_seed("survival-permutation", 0, "os"))
    perms = permutation_indices(sites, sites.size, 50, rng)
    assert (sites[perms] == sites[None]).all()  # every outcome stays in its site
    assert len({tuple(p) for p in perms}) == 50
    # ... and the test refits on exactly those outcomes: the (time, event) pair each
    # patient receives comes, jointly, from a patient of the same site
    _SpyRisk.fits = []
    Xs = np.column_stack([np.arange(time.size), X[:, :4]])
    permutation_logrank_test(Xs, time, event, patient_ids=ids, sites=sites,
                             model=_SpyRisk(), n_splits=3, n_permutations=5)
    pairs = {site: sorted(zip(time[sites == site], event[sites == site]))
             for site in np.unique(sites)}
    assert len(_SpyRisk.fits) == 6 * 3  # observed + 5 permutations, 3 folds each
    moved = 0
    for patients, t, e in _SpyRisk.fits:
        for i, ti, ei in zip(patients, t, e):
            assert (ti, ei) in pairs[sites[i]]
            moved += (ti, ei) != (time[i], event[i])
    assert moved > 0
    # each fit of one permutation sees each site's outcome multiset (full data = union)
    for b in range(6):
        seen = {}
        for patients, t, e in _SpyRisk.fits[3 * b: 3 * b + 3]:
            for i, ti, ei in zip(patients, t, e):
                seen[i] = (ti, ei)
        for site in np.unique(sites):
            got = sorted(v for i, v in seen.items() if sites[i] == site)
            assert got == pairs[site]


def test_without_sites_permutes_across_everyone(cohort):
    X, time, event, ids, _ = cohort
    res = permutation_logrank_test(X, time, event, patient_ids=ids, model=MODEL,
                                   n_splits=3, n_permutations=9)
    assert res.strata is None and res.n_strata == 1 and set(res.p_value) == {"all"}
    assert "across all patients" in res.method


def test_planted_strong_effect_gives_the_smallest_p():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((150, 5))
    t_event = rng.exponential(400.0 * np.exp(-2.0 * X[:, :3].sum(axis=1))) + 1.0
    t_cens = rng.uniform(300.0, 1500.0, 150)
    time, event = np.minimum(t_event, t_cens), t_event <= t_cens
    ids = np.array([f"P{i:04d}" for i in range(150)])
    sites = np.array(["A", "B", "C"])[np.arange(150) % 3]
    res = permutation_logrank_test(X, time, event, patient_ids=ids, sites=sites,
                                   model=MODEL, n_splits=3, n_permutations=19)
    assert res.p_value["all"] == pytest.approx(1 / 20)
    assert res.statistic["all"] > res.null_statistics["all"].max()
    assert res.n_drawn == 19  # sequential stopping never stops a clear effect early


def test_site_without_events_is_named(cohort):
    X, time, event, ids, sites = cohort
    event = event.copy()
    event[sites == "UPenn"] = False
    with pytest.raises(SurvivalDataError, match=r"subset 'UPenn': none of its \d+ patients "
                                                r"has an event"):
        permutation_logrank_test(X, time, event, patient_ids=ids, sites=sites, model=MODEL,
                                 subsets={"UPenn": sites == "UPenn"}, n_permutations=3)
    # evaluate_survival's subsets skip it, so neurofeat survival never asks for it
    assert "UPenn" not in site_subsets(sites, event)


def test_bad_arguments(cohort):
    X, time, event, ids, sites = cohort
    with pytest.raises(ValueError, match="n_permutations must be >= 1"):
        permutation_logrank_test(X, time, event, patient_ids=ids, model=MODEL,
                                 n_permutations=0)
    with pytest.raises(ValueError, match="X has 10 rows"):
        permutation_logrank_test(X[:10], time, event, patient_ids=ids, model=MODEL)
    with pytest.raises(ValueError, match="'all' is reserved"):
        permutation_logrank_test(X, time, event, patient_ids=ids, model=MODEL,
                                 subsets={"all": np.arange(5)}, n_permutations=1)
    with pytest.raises(SurvivalDataError, match="fewer folds|--folds"):
        permutation_logrank_test(X, time, event, patient_ids=ids, model=MODEL,
                                 n_splits=int(event.sum()) + 1, n_permutations=1)


def test_progress_is_called_once_per_data_set(cohort):
    X, time, event, ids, sites = cohort
    calls = []
    permutation_logrank_test(X, time, event, patient_ids=ids, sites=sites, model=MODEL,
                             n_splits=3, n_permutations=4, progress=calls.append,
                             stop_after=None)
    assert calls == [1] * 5


def test_sequential_p_is_besag_clifford_on_the_same_permutations(result, sequential):
    """Same permutations, drawn in the same order: the sequential test's null statistics
    are the plain test's first ones, and each subset's p is h / l at its h-th
    exceedance (or (1 + g) / (B + 1) when it never reaches h)."""
    assert sequential.stop_after == 2 and sequential.n_drawn < 19
    assert "sequential: stops at 2 exceedances" in sequential.method
    assert f"h = 2: {sequential.n_drawn} drawn" in sequential.summary()
    for site, stat in result.statistic.items():
        assert sequential.statistic[site] == stat
        null = sequential.null_statistics[site]
        np.testing.assert_array_equal(null, result.null_statistics[site][:null.size])
        exceed = np.flatnonzero(result.null_statistics[site] >= stat - 1e-9)
        expected = (2 / (exceed[1] + 1) if exceed.size >= 2
                    else (1 + exceed.size) / 20)
        assert sequential.p_value[site] == pytest.approx(expected, rel=1e-12), site
    assert sequential.n_drawn == max(
        sequential_p_value(result.null_statistics[s] >= result.statistic[s] - 1e-9, 19, 2)[1]
        for s in result.statistic)


def test_sequential_p_value_rules():
    assert sequential_p_value(np.array([0, 1, 0, 1], bool), 99, 2) == (0.5, 4)
    assert sequential_p_value(np.array([0, 1, 0], bool), 99, 2)[1] == 3
    assert np.isnan(sequential_p_value(np.array([0, 1, 0], bool), 99, 2)[0])  # not yet
    assert sequential_p_value(np.r_[np.ones(3), np.zeros(96)].astype(bool), 99, 10) == \
        (0.04, 99)
    assert sequential_p_value(np.ones(99, bool), 99, None) == (1.0, 99)


def test_sequential_p_value_is_exact_under_the_null():
    """Besag & Clifford (1991): P(p <= a) <= a at every a, and = a at the attainable
    values h / l and (g + 1) / (B + 1). Simulated: the observed statistic and B = 99
    permuted ones are exchangeable (iid continuous), 200,000 sequences; the p of each
    is computed by :func:`sequential_p_value` for a sample and vectorised for all."""
    rng = np.random.default_rng(0)
    m, B, h = 200_000, 99, 10
    stats = rng.random((m, B + 1))
    exceed = stats[:, 1:] >= stats[:, :1]
    count = np.cumsum(exceed, axis=1)
    reached = count[:, -1] >= h
    l_h = np.argmax(count >= h, axis=1) + 1
    p = np.where(reached, h / l_h, (1 + count[:, -1]) / (B + 1))
    for i in range(200):
        assert sequential_p_value(exceed[i], B, h)[0] == pytest.approx(p[i], rel=1e-15)
    se = lambda a: 4 * np.sqrt(a * (1 - a) / m)  # noqa: E731
    for a in (0.01, 0.02, 0.05, 0.1, 10 / 97, 0.25, 0.5, 10 / 11):
        assert (p <= a + 1e-12).mean() <= a + se(a)
    for a in (0.01, 0.05, 0.1, 10 / 99, 0.5, 10 / 11):  # attainable: level exactly a
        assert abs((p <= a + 1e-12).mean() - a) <= se(a), a
    # the saving: a null sequence stops after 2 h / (1 + ...) permutations on average
    used = np.where(reached, l_h, B)
    assert used.mean() < 40


@pytest.mark.parametrize("stop_after", [None, 2])
def test_worker_processes_give_the_same_result(cohort, result, sequential, stop_after):
    X, time, event, ids, sites = cohort
    calls = []
    parallel = permutation_logrank_test(X, time, event, patient_ids=ids, sites=sites,
                                        subsets=site_subsets(sites, event), model=MODEL,
                                        n_splits=3, seed=4, n_permutations=19, n_jobs=2,
                                        progress=calls.append, stop_after=stop_after)
    assert sum(calls) == 20 and calls[0] == 1  # a stopped test completes the bar
    serial = result if stop_after is None else sequential
    assert parallel.n_drawn == serial.n_drawn
    for site in serial.statistic:
        np.testing.assert_array_equal(parallel.null_statistics[site],
                                      serial.null_statistics[site])
        assert parallel.p_value[site] == serial.p_value[site]


def test_evaluate_refuses_a_permutation_test_of_other_groups(cohort, result):
    X, time, event, ids, sites = cohort
    plan = survival_fold_plan(ids, event, sites, n_splits=3, n_repeats=1, seed=5)
    cv = cross_validated_risk(X, time, event, plan, model=MODEL, sites=sites)
    with pytest.raises(ValueError, match="all: the permutation test's observed log-rank"):
        evaluate_survival(cv, n_boot=20, seed=5, permutation=result)  # result: seed 4
