"""Issue 13, item 5: coxnet's inner CV never returns a null model that a non-null one beats."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sksurv.linear_model import CoxnetSurvivalAnalysis
from sksurv.util import Surv

from neurofeat.analysis.survival.cox import CoxnetRisk, _partial_loglik


def _weak_cohort(seed: int, n: int = 60, d: int = 5, strength: float = 0.5):
    """Exponential survival with log-hazard ``strength * x_0``, uniform censoring."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    t_event = rng.exponential(400.0 * np.exp(-strength * X[:, 0])) + 1.0
    t_censor = rng.uniform(200.0, 1200.0, n)
    return X, Surv.from_arrays(t_event <= t_censor, np.minimum(t_event, t_censor))


def test_null_refit_is_not_chosen_when_a_non_null_model_wins():
    # (c) A case built for it (searched over seeds 0-199 with the rule before issue 13,
    # which returned the null model here): at alpha_max of the whole training set the
    # inner-fold fits are NOT null (an inner training set has its own, larger alpha_max),
    # so the old rule scored that path point with them (inner C 0.67, the best) and
    # then refitted it on all the data, where it is null by definition.
    X, y = _weak_cohort(162)
    model = CoxnetRisk(n_alphas=10).fit(X, y)
    Xs = (X - X.mean(0)) / X.std(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        at_alpha_max = CoxnetSurvivalAnalysis(l1_ratio=0.5, alphas=model.alphas_[:1]).fit(Xs, y)
    assert not np.any(at_alpha_max.coef_)                  # the refit at alpha_max is null
    assert model.inner_scores_[0] == 0.5                   # ... so it is scored as null
    assert not model.null_ and np.count_nonzero(model.coef_) >= 1
    assert model.alpha_ < model.alphas_[0]
    best = int(np.argmax(model.inner_scores_))
    assert model.alpha_ == model.alphas_[best] and model.inner_scores_[best] > 0.5
    assert np.argmax(np.abs(model.coef_)) == 0             # the prognostic feature


@pytest.mark.parametrize("scoring", ["harrell_c", "cvpl"])
def test_null_only_when_no_non_null_point_beats_it(scoring):
    # The rule as an invariant over weak and null signals: a null fit is returned only if
    # the null model's inner score is at least every non-null path point's.
    kinds = set()
    for seed in range(12):
        X, y = _weak_cohort(seed, strength=0.5 if seed % 2 else 0.0)
        model = CoxnetRisk(n_alphas=10, scoring=scoring).fit(X, y)
        kinds.add(model.null_)
        path_null = model.inner_scores_ == model.inner_scores_[0]
        assert model.null_ == (model.alpha_ == model.alphas_[0])
        if model.null_:
            assert np.all(model.inner_scores_ <= model.inner_scores_[0] + 1e-9), seed
        else:
            assert model.inner_scores_.max() > model.inner_scores_[0], seed
            assert not path_null[list(model.alphas_).index(model.alpha_)], seed
    assert kinds == {True, False}                          # both cases were exercised


def test_partial_loglik_by_hand():
    # Breslow partial log-likelihood written out as a loop, with tied times.
    rng = np.random.default_rng(3)
    time = np.round(rng.exponential(5.0, 40))
    event = rng.random(40) < 0.7
    lp = rng.normal(size=(40, 3))
    expected = [sum(lp[i, k] - np.log(np.exp(lp[time >= time[i], k]).sum())
                    for i in range(40) if event[i]) for k in range(3)]
    assert np.unique(time).size < 40
    np.testing.assert_allclose(_partial_loglik(time, event, lp), expected, rtol=1e-12)


def test_cvpl_matches_the_verweij_van_houwelingen_formula():
    # cvpl score of each alpha = mean over inner folds of l(beta_-k) - l_-k(beta_-k),
    # recomputed with sksurv fits on the same folds.
    from sklearn.model_selection import StratifiedKFold

    X, y = _weak_cohort(5, n=80, strength=0.8)
    model = CoxnetRisk(n_alphas=6, scoring="cvpl").fit(X, y)
    event, time = y["event"], y["time"]
    total = np.zeros(model.alphas_.size)
    for train, _ in StratifiedKFold(3, shuffle=True, random_state=0).split(X, event):
        mean, scale = X[train].mean(0), X[train].std(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = CoxnetSurvivalAnalysis(l1_ratio=0.5, alphas=model.alphas_).fit(
                (X[train] - mean) / scale, y[train])
        lp = ((X - mean) / scale) @ fit.coef_
        lp[:, 0] = 0.0                                     # alpha_max: the null model
        total += (_partial_loglik(time, event, lp)
                  - _partial_loglik(time[train], event[train], lp[train]))
    np.testing.assert_allclose(model.inner_scores_, total / 3, rtol=1e-6, atol=1e-8)


def test_auto_path_end_depends_on_the_shape():
    X, y = _weak_cohort(1, n=60, d=5, strength=1.0)
    narrow = CoxnetRisk(n_alphas=5).fit(X, y)
    assert narrow.alphas_[-1] / narrow.alphas_[0] == pytest.approx(1e-4, rel=1e-6)
    wide = CoxnetRisk(n_alphas=5).fit(np.hstack([X, np.random.default_rng(0).normal(
        size=(60, 60))]), y)
    assert wide.alphas_[-1] / wide.alphas_[0] == pytest.approx(0.05, rel=1e-6)


def test_unknown_scoring_is_refused():
    X, y = _weak_cohort(0)
    with pytest.raises(ValueError, match="scoring must be one of harrell_c, cvpl, got 'c'"):
        CoxnetRisk(scoring="c").fit(X, y)


def _diverging_below(monkeypatch, threshold: float, *, max_rows: int | None = None):
    """sksurv's path raises its ArithmeticError (weights too large) when it reaches a
    penalty below ``threshold`` (only on fits of fewer than ``max_rows`` patients when
    given: the inner folds), as it does on near-separable data."""
    original = CoxnetSurvivalAnalysis.fit

    def fit(self, X, y):
        out = original(self, X, y)
        if (max_rows is None or X.shape[0] < max_rows) and \
                np.min(np.asarray(out.alphas_)) < threshold:
            raise ArithmeticError("Numerical error, because weights are too large. "
                                  "Consider increasing alpha.")
        return out

    monkeypatch.setattr(CoxnetSurvivalAnalysis, "fit", fit)


def test_inner_folds_whose_path_diverges_drop_those_penalties(monkeypatch):
    """An inner fold whose small-penalty end diverges (scikit-survival's ArithmeticError,
    met at n = 300, d = 128) refits the path without it; those penalties are not
    candidates, and the rest of the inner scores are unchanged."""
    X, y = _weak_cohort(4, n=90, d=8, strength=1.0)
    reference = CoxnetRisk(n_alphas=12).fit(X, y)
    threshold = reference.alphas_[6]
    _diverging_below(monkeypatch, threshold, max_rows=90)
    model = CoxnetRisk(n_alphas=12).fit(X, y)
    np.testing.assert_array_equal(model.alphas_, reference.alphas_)
    candidate = np.isfinite(model.inner_scores_)
    assert candidate[:7].all() and not candidate[7:].any()
    np.testing.assert_allclose(model.inner_scores_[candidate],
                               reference.inner_scores_[candidate], rtol=1e-12)
    assert model.alpha_ >= threshold
    best = int(np.nanargmax(model.inner_scores_))
    assert model.alpha_ == model.alphas_[best]


def test_a_diverging_path_end_is_raised_and_a_diverging_fixed_penalty_is_named(monkeypatch):
    X, y = _weak_cohort(4, n=90, d=8, strength=1.0)
    reference = CoxnetRisk(n_alphas=12).fit(X, y)
    alpha_max = reference.alphas_[0]
    _diverging_below(monkeypatch, alpha_max * 10 ** -2.5)
    model = CoxnetRisk(n_alphas=12).fit(X, y)      # 1e-4 and 1e-3 diverge, 1e-2 fits
    assert model.alphas_[-1] / model.alphas_[0] == pytest.approx(1e-2, rel=1e-6)
    assert model.alphas_[0] == pytest.approx(alpha_max, rel=1e-12)
    with pytest.raises(ValueError, match=r"fixed penalty alpha=0\.0001 diverges on these "
                                         r"90 training patients.*use a larger alpha"):
        CoxnetRisk(alpha=1e-4).fit(X, y)
