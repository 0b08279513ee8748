"""Weibull overall survival: the generator, the censoring and the Cox model it implies.

References: scipy.stats.kstest (probability-integral transform of the event times),
lifelines' WeibullFitter (shape and scale) and CoxPHFitter (standard errors), scikit-survival's
CoxPHSurvivalAnalysis and concordance_index_censored (concordance).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.metrics import concordance_index_censored
from sksurv.util import Surv

from neurofeat.synth import WeibullSurvivalModel, hazard_covariates, simulate_survival, simulate_tables


@pytest.fixture(scope="module")
def cohort():
    return simulate_tables(4000, n_sites=3, seed=2).truth


def test_event_times_follow_the_weibull_model(cohort):
    model = WeibullSurvivalModel()
    # S(T | x) = exp(-(T/λ)^k e^η) is Uniform(0, 1) if T is drawn from the model.
    u = np.exp(-((cohort["event_days"] / model.scale_days) ** model.shape) * np.exp(cohort["os_log_hazard"]))
    assert stats.kstest(u, "uniform").pvalue > 1e-3


def test_reference_median_and_shape_from_lifelines():
    from lifelines import WeibullFitter

    model = WeibullSurvivalModel()
    reference = pd.DataFrame({"age": [60.0] * 3000, "grade": 4, "idh1_true": False, "mgmt_true": False, "volume_z": 0.0})
    times = simulate_survival(reference, np.random.default_rng(0), model)
    assert np.median(times["event_days"]) == pytest.approx(model.median_reference_days, rel=0.05)
    # lifelines' Weibull: S(t) = exp(-(t/lambda_)^rho_)
    fit = WeibullFitter().fit(times["event_days"], np.ones(3000, dtype=bool))
    assert fit.rho_ == pytest.approx(model.shape, rel=0.05)
    assert fit.lambda_ == pytest.approx(model.scale_days, rel=0.05)


def test_censoring_is_independent_and_plausible(cohort):
    assert (cohort["os_days"] >= 1).all()
    assert (cohort["os_days"] <= np.maximum(np.round(cohort["event_days"], 1), 1.0) + 1e-9).all()
    assert cohort.loc[cohort["os_event"], "os_days"].sub(np.maximum(np.round(cohort.loc[cohort["os_event"], "event_days"], 1), 1.0)).abs().max() < 1e-9
    gbm = cohort["histology"] == "glioblastoma"
    assert cohort.loc[gbm, "os_event"].mean() > 0.65
    assert cohort.loc[cohort["grade"] == 2, "os_event"].mean() < 0.3
    # independent censoring: censoring times do not track the hazard
    rho = stats.spearmanr(cohort["censor_days"], cohort["os_log_hazard"]).statistic
    assert abs(rho) < 0.06


def test_cox_on_true_covariates_recovers_hazard_ratios_and_concordance(cohort):
    from lifelines import CoxPHFitter

    model = WeibullSurvivalModel()
    covariates = hazard_covariates(cohort)
    y = Surv.from_arrays(cohort["os_event"].to_numpy(), cohort["os_days"].to_numpy())
    cox = CoxPHSurvivalAnalysis().fit(covariates, y)
    lifelines_fit = CoxPHFitter().fit(covariates.assign(T=cohort["os_days"], E=cohort["os_event"]), "T", "E")
    np.testing.assert_allclose(cox.coef_, lifelines_fit.params_[covariates.columns].to_numpy(), atol=1e-3)
    se = lifelines_fit.standard_errors_[covariates.columns].to_numpy()
    truth = np.asarray([model.log_hazard_ratios[c] for c in covariates.columns])
    z = (cox.coef_ - truth) / se
    assert np.all(np.abs(z) < 4.0), dict(zip(covariates.columns, np.round(z, 2)))
    # The fitted model reaches the concordance of the true linear predictor.
    c_fit = cox.score(covariates, y)
    c_true = concordance_index_censored(cohort["os_event"].to_numpy(), cohort["os_days"].to_numpy(), cohort["os_log_hazard"].to_numpy())[0]
    assert abs(c_fit - c_true) < 0.01
    assert 0.72 < c_true < 0.82


def test_os_task_cohort_has_weaker_but_real_signal(cohort):
    # IDH-wild-type grade 4 (the built-in 'os' task): age, MGMT and volume still drive risk.
    gbm = cohort[(~cohort["idh1_true"]) & (cohort["grade"] == 4)]
    c_true = concordance_index_censored(gbm["os_event"].to_numpy(), gbm["os_days"].to_numpy(), gbm["os_log_hazard"].to_numpy())[0]
    assert 0.6 < c_true < 0.72


def test_hazard_covariates_need_the_truth_columns():
    with pytest.raises(KeyError, match=r"needs columns \['idh1_true'"):
        hazard_covariates(pd.DataFrame({"age": [50.0], "grade": [4], "mgmt_true": [True], "volume_z": [0.0]}))
