"""Issue 13, item 5: the inner-CV choice of C does not collapse.

References are independent fits (scikit-learn ``LogisticRegression``) and the numbers of
the synthetic cohort's generative model (:mod:`neurofeat.synth.labels`).
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold

from neurofeat.analysis.delong import delong_auc
from neurofeat.analysis.probes import DECADE_CS, DEFAULT_CS, LinearProbe
from neurofeat.synth import TRAITS, simulate_tables

#: The synthetic cohort's true latent traits as a backbone (oracle_traits.csv of a
#: generated cohort: the six latent imaging traits).
LATENT_COLUMNS = list(TRAITS)

#: Population AUC of a linear logistic probe on LATENT_COLUMNS, per marker, computed from
#: the generator (the cohort card states some only roughly, and not for every marker):
#: sklearn LogisticRegression(C=1e4) fitted on simulate_tables(40000, n_sites=3,
#: seed=101).truth and scored on simulate_tables(40000, n_sites=3, seed=102).truth, true
#: labels (Monte-Carlo SE <= 0.004). The card (neurofeat/synth/labels.py) states "about
#: 0.96 for IDH1, 0.92 for 1p/19q, 0.7 for MGMT and CDKN2A" for the traits plus the
#: tumour centre (0.897 for 1p/19q by this computation); checked below.
EXPECTED_AUC = {"idh1": 0.957, "mgmt": 0.707, "codel_1p19q": 0.893, "egfr": 0.763,
                "atrx": 0.801, "tp53": 0.635, "cdkn2a": 0.691, "tert": 0.694}
STATED_AUC = {"idh1": 0.96, "codel_1p19q": 0.92, "mgmt": 0.70, "cdkn2a": 0.70}


def _marker_rows(tables, marker):
    known = tables.clinical[marker].notna().to_numpy()
    X = tables.truth.loc[known, LATENT_COLUMNS].to_numpy(float)
    return X, tables.clinical.loc[known, marker].astype(bool).to_numpy()


def _cv_scores(X, y, make, seed=0):
    """Out-of-fold decision values of one stratified 5-fold CV; also returns the C_s."""
    scores, chosen = np.empty(y.size), []
    for train, test in StratifiedKFold(5, shuffle=True, random_state=seed).split(X, y):
        model = make().fit(X[train], y[train])
        scores[test] = model.decision_function(X[test])
        chosen.append(getattr(model, "C_", np.nan))
    return scores, np.array(chosen)


def _sklearn_reference():
    """The issue's reference: standardise + plain LogisticRegression(C=1), class-balanced."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, class_weight="balanced"))


def test_log_loss_curve_equals_sklearn_fits():
    # Independent reference: for each C, sklearn LogisticRegression on each inner training
    # fold (standardised on the whole training set, the probe's class-balanced weights of
    # the whole training set as sample_weight), validation rows pooled, sklearn log_loss.
    rng = np.random.default_rng(7)
    X = rng.normal(size=(150, 8)) @ rng.normal(size=(8, 8)) + 3.0
    y = X[:, 0] - X[:, 1] + 2.0 * rng.normal(size=150) > 1.0
    Cs = (1e-3, 1e-2, 0.1, 1.0, 10.0)
    probe = LinearProbe(Cs=Cs, inner_folds=3, tol=1e-12).fit(X, y)
    Z = (X - X.mean(0)) / X.std(0)
    weight = np.where(y, y.size / (2.0 * y.sum()), y.size / (2.0 * (~y).sum()))
    folds = list(StratifiedKFold(3, shuffle=True, random_state=0).split(Z, y))
    expected = []
    for C in Cs:
        proba = np.empty(y.size)
        for train, valid in folds:
            fit = LogisticRegression(C=C, tol=1e-12, max_iter=10000).fit(
                Z[train], y[train], sample_weight=weight[train])
            proba[valid] = fit.predict_proba(Z[valid])[:, 1]
        expected.append(log_loss(y, proba, sample_weight=weight))
    np.testing.assert_allclose(-probe.cv_scores_, expected, rtol=1e-6)
    assert probe.C_ == Cs[int(np.argmin(expected))]
    np.testing.assert_array_equal(probe.Cs_, np.sort(Cs))


def test_known_logistic_model_at_n_3000_matches_sklearn():
    # (a) Correlated features (equicorrelation 0.9, so the heavily shrunk direction, the
    # class mean difference, is not the model's), rare-ish positives (~16 %), raw scales.
    rng = np.random.default_rng(0)
    n_train, n_test, d = 3000, 20000, 12
    shared = rng.standard_normal((n_train + n_test, 1))
    latent = np.sqrt(0.9) * shared + np.sqrt(0.1) * rng.standard_normal((n_train + n_test, d))
    beta = np.zeros(d)
    beta[:3] = (1.5, -1.0, 0.5)
    eta = latent @ beta - 2.0
    y = rng.random(eta.size) < 1.0 / (1.0 + np.exp(-eta))
    X = latent * rng.uniform(0.5, 20.0, d) + rng.normal(0.0, 5.0, d)
    train, test = slice(0, n_train), slice(n_train, None)
    probe = LinearProbe().fit(X[train], y[train])
    reference = LogisticRegression(C=1.0, max_iter=5000).fit(X[train], y[train])
    auc_probe = roc_auc_score(y[test], probe.decision_function(X[test]))
    auc_reference = roc_auc_score(y[test], reference.decision_function(X[test]))
    auc_true_model = roc_auc_score(y[test], eta[test])
    assert abs(auc_probe - auc_reference) < 0.02
    assert abs(auc_probe - auc_true_model) < 0.02
    assert DEFAULT_CS[0] < probe.C_ < DEFAULT_CS[-1]


def test_expected_aucs_agree_with_the_cohort_card():
    for marker, stated in STATED_AUC.items():
        assert abs(EXPECTED_AUC[marker] - stated) <= 0.03, marker


def test_latent_traits_reach_the_cohorts_effects():
    # (b) n = 1500 (about 1,000-1,400 labelled patients per marker), one stratified
    # 5-fold CV: each marker's 99.4 % DeLong interval (95 % Bonferroni over the 8
    # markers) contains the generator's AUC, and the probe is within 0.02 of the sklearn
    # reference on the same folds. With these folds, over cohort seeds 0-14 the probe
    # covers all eight markers in 15 of 15 cohorts, the reference fit in 14 (seed 13:
    # EGFR) and the old rule (mean per-fold AUC, decade grid, ties to the smaller C) in
    # 5; at seed 3 the old rule misses MGMT.
    tables = simulate_tables(1500, n_sites=3, seed=3)
    for marker, expected in EXPECTED_AUC.items():
        X, y = _marker_rows(tables, marker)
        ours, _ = _cv_scores(X, y, LinearProbe)
        reference, _ = _cv_scores(X, y, _sklearn_reference)
        interval = delong_auc(y, ours, alpha=0.05 / len(EXPECTED_AUC))
        assert interval.ci_low <= expected <= interval.ci_high, (marker, interval.summary())
        assert abs(interval.auc - roc_auc_score(y, reference)) < 0.02, marker


def test_latent_traits_at_the_issues_size_match_sklearn_and_avoid_the_edges():
    # (b, d) The issue's setting: n = 240, where the old rule (mean per-fold AUC, decade
    # grid, ties to the smaller C) chose C = 1e-5 in 4 of 10 folds for IDH1 (issue 13,
    # traits + tumour centre, 5 x 2 CV). Within 0.03 of sklearn: with 20-70 positives
    # the two rules' C differ, and so do their AUCs, by up to ~0.02 here.
    tables = simulate_tables(240, n_sites=3, seed=0)
    for marker in EXPECTED_AUC:
        X, y = _marker_rows(tables, marker)
        ours, chosen = _cv_scores(X, y, LinearProbe)
        reference, _ = _cv_scores(X, y, _sklearn_reference)
        assert abs(roc_auc_score(y, ours) - roc_auc_score(y, reference)) < 0.03, marker
        if marker in ("idh1", "mgmt", "codel_1p19q", "egfr", "atrx"):
            assert np.all((chosen > DEFAULT_CS[0]) & (chosen < DEFAULT_CS[-1])), (marker, chosen)


def test_old_rule_collapses_on_the_latent_traits():
    # The regression this fixes, kept visible (cohort seed 0, n = 240, MGMT): AUC criterion
    # + decade grid + ties to the smaller C picks the grid's lower edge in 3 of 5 folds
    # (and anything from 1e-5 to 1 in the others); the log-loss rule picks C within one
    # decade (0.03-0.1) in every fold.
    X, y = _marker_rows(simulate_tables(240, n_sites=3, seed=0), "mgmt")
    _, old = _cv_scores(X, y, lambda: LinearProbe(scoring="roc_auc", Cs=DECADE_CS))
    _, new = _cv_scores(X, y, LinearProbe)
    assert np.sum(old == DECADE_CS[0]) >= 3
    assert np.all(new > DEFAULT_CS[0]) and new.max() / new.min() <= 10.0 + 1e-9


def test_selected_C_is_interior_on_wide_informative_embeddings():
    # (d) The bench_compare kind of embedding (16 latent factors in d = 512 ReLU features),
    # n = 200: the loss curve has an interior minimum and C is not at an edge.
    rng = np.random.default_rng(1)
    latent = rng.normal(size=(200, 16))
    y = latent[:, 0] + 0.7 * rng.normal(size=200) > 0.3
    X = np.maximum(latent @ rng.normal(size=(16, 512)) + 2.0 * rng.normal(size=(200, 512)), 0)
    probe = LinearProbe().fit(X, y)
    best = int(np.argmax(probe.cv_scores_))
    assert 0 < best < len(DEFAULT_CS) - 1
    assert DEFAULT_CS[0] < probe.C_ < DEFAULT_CS[-1]


def test_noise_features_shrink_to_the_most_regularised_C():
    # Without signal the loss is smallest at the strongest penalty (predictions ~ 1/2).
    rng = np.random.default_rng(2)
    X = rng.normal(size=(120, 40))
    y = rng.random(120) < 0.3
    assert LinearProbe().fit(X, y).C_ == DEFAULT_CS[0]


def test_unknown_scoring_is_refused():
    X = np.random.default_rng(0).normal(size=(20, 3))
    with pytest.raises(ValueError, match="scoring must be one of log_loss, roc_auc, got 'auc'"):
        LinearProbe(scoring="auc").fit(X, np.arange(20) % 2)
