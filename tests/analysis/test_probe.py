"""Probes against scikit-learn: same objective, same C selection, estimator checks."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV, RidgeCV
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from neurofeat.analysis.metrics import binary_metrics, regression_metrics
from neurofeat.analysis.probes import DECADE_CS, KNNProbe, LinearProbe, RidgeProbe


def _data(n, d, seed=0):
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 3))
    X = latent @ rng.normal(size=(3, d)) + rng.normal(size=(n, d)) + 5.0
    y = latent[:, 0] + 0.8 * rng.normal(size=n) > 0.4
    return X, y


@pytest.mark.parametrize("n, d", [(120, 10), (60, 300)])   # primal and Gram (dual) paths
@pytest.mark.parametrize("C", [1e-3, 0.1, 10.0])
def test_fixed_C_equals_sklearn_logistic(n, d, C):
    X, y = _data(n, d)
    ours = LinearProbe(Cs=[C], tol=1e-12).fit(X, y)
    ref = make_pipeline(StandardScaler(), LogisticRegression(
        C=C, class_weight="balanced", tol=1e-10, max_iter=10000)).fit(X, y)
    scale = max(1.0, np.abs(ref.decision_function(X)).max())
    assert np.abs(ours.decision_function(X) - ref.decision_function(X)).max() < 1e-4 * scale
    assert np.allclose(ours.predict_proba(X)[:, 1], ref.predict_proba(X)[:, 1], atol=1e-4)
    assert ours.coef_.shape == (1, d)


def test_auc_rule_chosen_like_logistic_regression_cv():
    # scoring='roc_auc' with the decade grid reproduces the rule before issue 13, which is
    # sklearn's LogisticRegressionCV(scoring='roc_auc') (both choose C = 1e-5 here).
    X, y = _data(80, 150, seed=3)
    ours = LinearProbe(Cs=DECADE_CS, scoring="roc_auc", inner_folds=3, random_state=0).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = make_pipeline(StandardScaler(), LogisticRegressionCV(
            Cs=list(DECADE_CS), cv=StratifiedKFold(3, shuffle=True, random_state=0),
            scoring="roc_auc", class_weight="balanced", tol=1e-6, max_iter=2000)).fit(X, y)
    lr = ref[-1]
    assert ours.C_ == pytest.approx(lr.C_[0])
    assert np.allclose(ours.cv_scores_, lr.scores_[True].mean(axis=0), atol=2e-3)


def test_labels_of_any_type_and_weights():
    X, y = _data(80, 6)
    names = np.where(y, "mutant", "wildtype")
    probe = LinearProbe(Cs=[1.0]).fit(X, names)
    assert list(probe.classes_) == ["mutant", "wildtype"]
    assert set(probe.predict(X)) <= {"mutant", "wildtype"}
    ref = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, class_weight={
        "mutant": 2.0, "wildtype": 0.5}, tol=1e-10, max_iter=5000)).fit(X, names)
    ours = LinearProbe(Cs=[1.0], class_weight={"mutant": 2.0, "wildtype": 0.5},
                       tol=1e-12).fit(X, names)
    assert np.allclose(ours.decision_function(X), ref.decision_function(X), atol=1e-4)


def test_binary_only_message():
    X, _ = _data(30, 4)
    with pytest.raises(ValueError, match="Only binary classification is supported. "
                                         "LinearProbe got 3 class"):
        LinearProbe().fit(X, np.arange(30) % 3)


def test_ridge_probe_equals_sklearn():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(70, 150)) * 3 + 1
    y = X[:, :3].sum(axis=1) + rng.normal(size=70)
    alphas = (0.1, 1.0, 10.0, 100.0)
    ours = RidgeProbe(alphas=alphas).fit(X, y)
    ref = make_pipeline(StandardScaler(), RidgeCV(alphas=alphas)).fit(X, y)
    assert ours.alpha_ == ref[-1].alpha_
    assert np.allclose(ours.predict(X), ref.predict(X))


def test_knn_balanced_vote_by_hand():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(40, 5))
    y = np.arange(40) < 10                       # 10 positives, 30 negatives
    probe = KNNProbe(n_neighbors=5).fit(X, y)
    Xq = rng.normal(size=(6, 5))
    mean, sd = X.mean(0), X.std(0)
    Z = (X - mean) / sd
    Zq = (Xq - mean) / sd
    sim = (Zq / np.linalg.norm(Zq, axis=1, keepdims=True)) @ \
        (Z / np.linalg.norm(Z, axis=1, keepdims=True)).T
    nearest = np.argsort(-sim, axis=1)[:, :5]
    k_pos = y[nearest].sum(axis=1)
    expected = (k_pos / 10) / (k_pos / 10 + (5 - k_pos) / 30)
    assert np.allclose(probe.predict_proba(Xq)[:, 1], expected)


def test_metrics_against_sklearn_and_scipy():
    from sklearn.metrics import balanced_accuracy_score, recall_score, roc_auc_score

    rng = np.random.default_rng(4)
    y = rng.random(50) < 0.4
    s = rng.random(50)
    m = binary_metrics(y, s, threshold=0.6)
    assert m.auc == pytest.approx(roc_auc_score(y, s))
    assert m.balanced_accuracy == pytest.approx(balanced_accuracy_score(y, s >= 0.6))
    assert m.sensitivity == pytest.approx(recall_score(y, s >= 0.6))
    assert m.specificity == pytest.approx(recall_score(~y, s < 0.6))
    value = rng.normal(size=50)
    pred = value + np.linspace(-1, 1, 50)
    r = regression_metrics(value, pred)
    assert r.spearman == pytest.approx(stats.spearmanr(value, pred)[0])
    assert r.mae == pytest.approx(np.mean(np.abs(value - pred)))


@pytest.mark.slow
@parametrize_with_checks([LinearProbe(Cs=(0.01, 1.0)), LinearProbe(Cs=(0.01, 1.0), scoring="roc_auc"),
                          RidgeProbe(), KNNProbe(n_neighbors=3)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_analysis_never_imports_torch_or_extract():
    import subprocess
    import sys

    code = ("import sys, neurofeat.analysis, neurofeat.analysis.protocols, "
            "neurofeat.analysis.compare, neurofeat.runs; "
            "print('torch' in sys.modules, 'neurofeat.extract' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False"]
