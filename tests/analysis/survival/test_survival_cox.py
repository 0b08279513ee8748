"""Cox estimators against lifelines (coefficients) and scikit-survival (survival curves)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from neurofeat.analysis.survival import CoxnetRisk, PCACoxRisk, make_cox_model

COVARIATES = ["karno", "diagtime", "age", "prior"]


def _veteran(veteran, jitter=False):
    from sksurv.util import Surv

    X = veteran[COVARIATES].to_numpy(float)
    time = veteran.time.to_numpy(float)
    if jitter:  # unique times: Breslow == Efron, so glmnet-style Coxnet can match lifelines
        time = time + np.random.default_rng(0).uniform(0, 0.01, time.size)
    return X, time, veteran.status.to_numpy().astype(bool), Surv.from_arrays(
        veteran.status.to_numpy().astype(bool), time)


def _lifelines_coef(X, time, event):
    import pandas as pd
    from lifelines import CoxPHFitter

    df = pd.DataFrame(X, columns=COVARIATES).assign(T=time, E=event)
    return CoxPHFitter().fit(df, "T", "E").params_[COVARIATES].to_numpy()


def test_pca_cox_with_all_components_is_the_lifelines_cox_model(veteran):
    """Full-rank PCA is a rotation, so PCA+Cox (no penalty) = ordinary Cox (Efron)."""
    X, time, event, y = _veteran(veteran)
    model = PCACoxRisk(n_components=len(COVARIATES), alpha=0.0).fit(X, y)
    ours = model.coef_ / model.scale_  # back to the original covariate scale
    np.testing.assert_allclose(ours, _lifelines_coef(X, time, event), rtol=1e-5, atol=1e-7)


def test_coxnet_with_tiny_penalty_matches_lifelines(veteran):
    X, time, event, y = _veteran(veteran, jitter=True)
    model = CoxnetRisk(alpha=1e-7, l1_ratio=0.5).fit(X, y)
    ours = model.coef_ / model.scale_
    np.testing.assert_allclose(ours, _lifelines_coef(X, time, event), rtol=1e-3, atol=1e-5)


def test_predict_survival_matches_sksurv_breslow(veteran):
    from sksurv.linear_model import CoxPHSurvivalAnalysis

    X, time, event, y = _veteran(veteran)
    model = PCACoxRisk(n_components=len(COVARIATES), alpha=0.0).fit(X, y)
    Xs = (X - model.mean_) / model.scale_
    ref = CoxPHSurvivalAnalysis(ties="efron").fit(Xs, y)
    times = np.array([5.0, 30.0, 100.0, 400.0])
    expected = np.vstack([f(times) for f in ref.predict_survival_function(Xs[:5])])
    np.testing.assert_allclose(model.predict_survival(X[:5], times), expected, atol=1e-5)


def test_coxnet_inner_cv_picks_an_alpha_on_the_path(cohort):
    from sksurv.util import Surv

    X, time, event, _, _ = cohort
    model = CoxnetRisk(n_alphas=10).fit(X, Surv.from_arrays(event, time))
    assert model.alpha_ in model.alphas_
    best = np.nanmax(model.inner_scores_)
    assert model.inner_scores_[list(model.alphas_).index(model.alpha_)] == best
    assert model.predict(X).shape == (X.shape[0],)
    assert clone(model).get_params() == model.get_params()


def test_unfitted_and_unknown_models_raise():
    with pytest.raises(NotFittedError):
        PCACoxRisk().predict(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="unknown survival model 'cox-ph'; use one of coxnet"):
        make_cox_model("cox-ph")
