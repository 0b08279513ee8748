"""Survival branch of the paired comparison: c-index scorers through the generic engine."""

from __future__ import annotations

import numpy as np
import pytest

from neurofeat.analysis.survival import harrell_c, uno_c
from neurofeat.analysis.survival.compare import (
    HARRELL,
    UNO,
    compare_survival_backbones,
    survival_target,
)


@pytest.fixture(scope="module")
def comparison(cohort):
    X, time, event, ids, sites = cohort
    rng = np.random.default_rng(7)
    emb = {"dino": X + rng.standard_normal(X.shape),
           "dino_dro": X + 0.3 * rng.standard_normal(X.shape)}
    return compare_survival_backbones(emb, time, event, patient_ids=ids, sites=sites,
                                      pairs=[("dino_dro", "dino")], model="pca-cox",
                                      model_params={"n_components": 3}, n_splits=3,
                                      n_repeats=2, n_boot=100, seed=0, tau=800.0)


def test_scorers_equal_sksurv_on_resamples(cohort):
    from sksurv.metrics import concordance_index_ipcw
    from sksurv.util import Surv

    X, time, event, _, sites = cohort
    rows = np.flatnonzero(sites == "UPenn")
    target = survival_target(time, event, rows=rows, tau=700.0)
    risk = np.vstack([X[:, 0], X[:, 1]])
    idx = rows[np.random.default_rng(0).integers(0, rows.size, (5, rows.size))]
    h = HARRELL(target, risk, idx)
    u = UNO(target, risk, idx)
    y_site = Surv.from_arrays(event[rows], time[rows])
    for b in range(5):
        for r in range(2):
            i = idx[b]
            assert h[b, r] == pytest.approx(harrell_c(time[i], event[i], risk[r, i]), abs=1e-12)
            ref = concordance_index_ipcw(y_site, Surv.from_arrays(event[i], time[i]),
                                         risk[r, i], tau=target.tau)[0]
            assert u[b, r] == pytest.approx(ref, abs=1e-12)


def test_pooled_rows_and_fold_values(cohort, comparison):
    X, time, event, ids, sites = cohort
    cv_a = comparison.cv["dino_dro"]
    cv_b = comparison.cv["dino"]
    pc = next(p for p in comparison.results["all"].pairs if p.metric == "harrell_c")
    expected_a = np.mean([harrell_c(time, event, r) for r in cv_a.risk])
    expected_b = np.mean([harrell_c(time, event, r) for r in cv_b.risk])
    assert pc.a.estimate == pytest.approx(expected_a, abs=1e-12)
    assert pc.diff.estimate == pytest.approx(expected_a - expected_b, abs=1e-12)
    assert pc.diff.ci_low <= pc.diff.estimate <= pc.diff.ci_high
    # per-fold differences feed the paired tests: 2 repeats x 3 folds
    assert pc.fold_test.n == 6 and pc.corrected.test == "corrected-t"
    uno_row = next(p for p in comparison.results["all"].pairs if p.metric == "uno_c")
    expected_uno = np.mean([uno_c(time, event, r, tau=comparison.taus["all"])
                            for r in cv_a.risk])
    assert uno_row.a.estimate == pytest.approx(expected_uno, abs=1e-12)


def test_tests_table_has_sites_tau_and_holm(comparison):
    tests = comparison.tests
    assert set(tests.site) == {"all", "UCSF", "UPenn", "CUIMC"}
    assert tests.loc[tests.metric == "uno_c", "tau"].notna().all()
    assert tests.loc[tests.metric == "harrell_c", "tau"].isna().all()
    assert (tests.p_holm >= tests.p_value - 1e-15).all()
    assert {"backbone_a", "backbone_b", "diff", "diff_ci_low", "p_bh"} <= set(tests.columns)
    assert comparison.taus["all"] == pytest.approx(800.0)


def test_more_features_than_training_patients_warns_on_the_rows_it_concerns(cohort,
                                                                             comparison):
    X, time, event, ids, sites = cohort
    rng = np.random.default_rng(3)
    wide = np.hstack([X, rng.standard_normal((X.shape[0], 60))])   # 100 > 80 training
    res = compare_survival_backbones({"wide": wide, "narrow": X}, time, event,
                                     patient_ids=ids, sites=sites,
                                     pairs=[("wide", "narrow"), ("narrow", "narrow")],
                                     model="pca-cox", model_params={"n_components": 3},
                                     n_splits=3, n_repeats=1, n_boot=50, seed=0, tau=800.0)
    assert res.cv["wide"].n_features == 100 and res.cv["narrow"].n_features == X.shape[1]
    tests = res.tests
    flagged = tests.warning.str.contains("100 features > 80 training patients per fold")
    # the pairs with the wide backbone (and the pooled row over them), every site and test
    assert flagged[tests.backbone_a == "wide"].all()
    assert flagged[tests.pooled].all()
    assert not flagged[(tests.backbone_a == "narrow") & ~tests.pooled].any()
    rows = res.results["all"].to_frame()
    assert rows.loc[rows.backbone_a == "wide", "warning"].str.contains("under-covered").all()
    # the narrow fixture (40 features, 80 training patients) carries no such warning
    assert not comparison.tests.warning.str.contains("features >").any()
