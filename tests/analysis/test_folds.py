"""Fold plans: deterministic from task + seed + patient ids, stratified, clear errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from neurofeat.analysis.folds import (FoldError, derive_seed, fraction_subsample,
                                      leave_one_site_out_plan, per_site_kfold_plan,
                                      stratified_kfold_plan, survival_kfold_plan)


@pytest.fixture
def cohort():
    rng = np.random.default_rng(0)
    n = 103
    ids = np.array([f"GBM-{i:03d}" for i in range(n)])
    y = rng.random(n) < 0.3
    sites = np.array(["CUIMC", "UCSF", "UPenn"])[rng.integers(0, 3, n)]
    return ids, y, sites


def test_reproducible_and_independent_of_row_order(cohort):
    ids, y, _ = cohort
    plan = stratified_kfold_plan(ids, y, n_splits=5, n_repeats=3, task="idh1", seed=4)
    again = stratified_kfold_plan(ids, y, n_splits=5, n_repeats=3, task="idh1", seed=4)
    assert np.array_equal(plan.fold_ids, again.fold_ids)
    perm = np.random.default_rng(1).permutation(ids.size)
    shuffled = stratified_kfold_plan(ids[perm], y[perm], n_splits=5, n_repeats=3,
                                     task="idh1", seed=4)
    # the same patient lands in the same fold, whatever the row order (= any backbone)
    assert np.array_equal(shuffled.fold_ids, plan.fold_ids[:, perm])
    assert np.array_equal(shuffled.align(ids).fold_ids, plan.fold_ids)


def test_seed_and_task_change_the_folds(cohort):
    ids, y, _ = cohort
    base = stratified_kfold_plan(ids, y, task="idh1", seed=0).fold_ids
    assert not np.array_equal(base, stratified_kfold_plan(ids, y, task="idh1", seed=1).fold_ids)
    assert not np.array_equal(base, stratified_kfold_plan(ids, y, task="mgmt", seed=0).fold_ids)
    assert not np.array_equal(base[0], base[1])            # repeats differ


def test_derive_seed_is_stable_across_processes():
    code = ("from neurofeat.analysis.folds import derive_seed;"
            "print(derive_seed('bootstrap', 'idh1', 0, 'all'))")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout.strip()
    assert int(other) == derive_seed("bootstrap", "idh1", 0, "all")


def test_stratified_and_balanced(cohort):
    ids, y, _ = cohort
    plan = stratified_kfold_plan(ids, y, n_splits=5, n_repeats=2, task="t", seed=0)
    n_pos, n_neg = y.sum(), (~y).sum()
    for r in range(2):
        sizes = np.bincount(plan.fold_ids[r], minlength=5)
        assert sizes.max() - sizes.min() <= 1
        pos = np.bincount(plan.fold_ids[r][y], minlength=5)
        neg = np.bincount(plan.fold_ids[r][~y], minlength=5)
        assert set(pos) <= {n_pos // 5, -(-n_pos // 5)}
        assert set(neg) <= {n_neg // 5, -(-n_neg // 5)}
    splits = list(plan.splits())
    assert len(splits) == 10
    for s in splits:
        assert np.intersect1d(s.train, s.test).size == 0
        assert s.train.size + s.test.size == ids.size


def test_too_few_positives(cohort):
    ids, _, _ = cohort
    y = np.zeros(ids.size, bool)
    y[:3] = True
    with pytest.raises(FoldError, match=r"only 3 positive patients \(of 103\); 5-fold .* "
                                        r"Use --folds 3 or fewer or --protocol loso"):
        stratified_kfold_plan(ids, y, n_splits=5, task="cdkn2a")
    with pytest.raises(FoldError, match="all 103 patients are in one class"):
        stratified_kfold_plan(ids, np.zeros(ids.size, bool), task="cdkn2a")


def test_duplicate_ids_refused(cohort):
    ids, y, _ = cohort
    ids = ids.copy()
    ids[5] = ids[4]
    with pytest.raises(ValueError, match="patient id 'GBM-004' appears 2 times"):
        stratified_kfold_plan(ids, y, task="t")


def test_loso(cohort):
    ids, y, sites = cohort
    plan = leave_one_site_out_plan(ids, sites, task="idh1", y=y)
    assert plan.fold_names == ("CUIMC", "UCSF", "UPenn")
    for s in plan.splits():
        assert set(sites[s.test]) == {s.name}
        assert s.name not in set(sites[s.train])
    y_bad = y.copy()
    y_bad[sites == "UCSF"] = False
    with pytest.raises(FoldError, match=r"site\(s\) with one class: UCSF \(\d+ patients, all "
                                        r"negative\)"):
        leave_one_site_out_plan(ids, sites, task="idh1", y=y_bad)
    with pytest.raises(FoldError, match="needs at least 2 sites"):
        leave_one_site_out_plan(ids, np.full(ids.size, "UCSF"), task="idh1")


def test_per_site_trains_within_site(cohort):
    ids, y, sites = cohort
    plan = per_site_kfold_plan(ids, sites, y, n_splits=3, n_repeats=2, task="idh1")
    for s in plan.splits():
        site = s.name.split("/")[0]
        assert set(sites[s.test]) == {site} == set(sites[s.train])
    # within a site the folds equal the site's own plan
    rows = np.flatnonzero(sites == "UCSF")
    sub = stratified_kfold_plan(ids[rows], y[rows], n_splits=3, n_repeats=2,
                                task="idh1@UCSF", seed=0)
    assert np.array_equal(plan.fold_ids[:, rows] - 3, sub.fold_ids)


def test_fraction_subsample_nested_and_stratified(cohort):
    ids, y, _ = cohort
    train = np.arange(0, 100)
    kw = dict(patient_ids=ids, task="idh1", seed=0, repeat=1, fold=2)
    small = fraction_subsample(train, y, 0.1, **kw)
    mid = fraction_subsample(train, y, 0.5, **kw)
    assert set(small) <= set(mid) <= set(train)
    pos = y[train].sum()
    assert y[mid].sum() == int(np.ceil(0.5 * pos))
    assert y[small].sum() >= 1 and (~y[small]).sum() >= 1
    assert np.array_equal(fraction_subsample(train, y, 1.0, **kw), train)
    with pytest.raises(ValueError, match="fraction must be in"):
        fraction_subsample(train, y, 0.0, **kw)


def test_survival_plan_has_events_in_every_fold(cohort):
    ids, event, _ = cohort
    plan = survival_kfold_plan(ids, event, n_splits=5, n_repeats=2, task="os")
    for r in range(2):
        assert (np.bincount(plan.fold_ids[r][event], minlength=5) > 0).all()
    few = np.zeros(ids.size, bool)
    few[:2] = True
    with pytest.raises(FoldError, match=r"only 2 events \(of 103 patients\).*--folds 2"):
        survival_kfold_plan(ids, few, task="os")
    with pytest.raises(FoldError, match="no events"):
        survival_kfold_plan(ids, np.zeros(ids.size, bool), task="os")
