"""Overall survival of the synthetic cohort: a Weibull proportional-hazards model.

The event time of patient *i* has survival function

.. math:: S(t \\mid x_i) = \\exp\\{-(t/\\lambda)^k \\, e^{\\eta_i}\\},\\qquad
          \\eta_i = \\beta^\\top x_i,

so the hazard ratios are ``exp(beta)`` and a Cox model on ``x`` is correctly specified.
The covariates are age (per 10 years above 60), grade 2 and grade 3 (grade 4 is the
reference), IDH1 mutation, MGMT promoter methylation and ``volume_z`` (the latent log
tumour-core volume, per SD).  Defaults (log hazard ratios): age +0.35 per decade, grade
2 -1.3, grade 3 -0.7, IDH1-mutant -0.9, MGMT-methylated -0.6, volume +0.25 per SD.
The scale λ is set so that the reference patient (60 years, grade 4, IDH-wild-type,
unmethylated, average volume) has a median survival of 420 days, and the shape k = 1.4
gives a rising hazard.  Sources: Stupp et al., NEJM 2005 and Hegi et al., NEJM 2005
(glioblastoma median ≈ 12.7 months unmethylated, 21.7 methylated: HR ≈ 0.5);
Eckel-Passow et al., NEJM 2015 and Brat et al., NEJM 2015 (IDH mutation HR ≈ 0.3-0.4);
age HR ≈ 1.3-1.4 per decade (Lamborn et al., Neuro-Oncol 2004).

Censoring is independent of everything: administrative end of follow-up after
Uniform(1, 6) years of accrual, or loss to follow-up at an exponential time with mean
10 years, whichever is first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

import numpy as np
import pandas as pd

__all__ = ["WeibullSurvivalModel", "hazard_covariates", "simulate_survival"]

_DAYS_PER_YEAR = 365.25


@dataclass(frozen=True)
class WeibullSurvivalModel:
    """Parameters of the Weibull proportional-hazards survival model.

    Parameters
    ----------
    log_hazard_ratios : Mapping[str, float]
        Coefficient per column of :func:`hazard_covariates`.
    shape : float
        Weibull shape k (> 0); > 1 means a rising hazard.
    median_reference_days : float
        Median survival of the reference patient (all covariates 0).
    accrual_years : tuple of float
        Range of the uniform administrative follow-up.
    loss_mean_years : float
        Mean of the exponential loss-to-follow-up time.
    """

    log_hazard_ratios: Mapping[str, float] = field(
        default_factory=lambda: MappingProxyType(
            {
                "age_per10": 0.35,
                "grade2": -1.3,
                "grade3": -0.7,
                "idh1": -0.9,
                "mgmt": -0.6,
                "volume_z": 0.25,
            }
        )
    )
    shape: float = 1.4
    median_reference_days: float = 420.0
    accrual_years: tuple[float, float] = (1.0, 6.0)
    loss_mean_years: float = 10.0

    @property
    def scale_days(self) -> float:
        """Weibull scale λ (days) giving the reference median."""
        return float(self.median_reference_days / np.log(2.0) ** (1.0 / self.shape))


def hazard_covariates(labels: pd.DataFrame) -> pd.DataFrame:
    """The covariates of the true hazard, from the truth table.

    Parameters
    ----------
    labels : pandas.DataFrame
        Needs ``age``, ``grade``, ``idh1_true``, ``mgmt_true``, ``volume_z``.

    Returns
    -------
    pandas.DataFrame, shape (n_patients, 6)
        ``age_per10`` ((age - 60) / 10), ``grade2``, ``grade3``, ``idh1``, ``mgmt``,
        ``volume_z`` as floats.
    """
    missing = [c for c in ("age", "grade", "idh1_true", "mgmt_true", "volume_z") if c not in labels]
    if missing:
        raise KeyError(f"hazard_covariates needs columns {missing}; pass the truth table of simulate_tables().")
    return pd.DataFrame(
        {
            "age_per10": (labels["age"].to_numpy(float) - 60.0) / 10.0,
            "grade2": (labels["grade"].to_numpy() == 2).astype(float),
            "grade3": (labels["grade"].to_numpy() == 3).astype(float),
            "idh1": labels["idh1_true"].to_numpy(bool).astype(float),
            "mgmt": labels["mgmt_true"].to_numpy(bool).astype(float),
            "volume_z": labels["volume_z"].to_numpy(float),
        },
        index=labels.index,
    )


def simulate_survival(
    labels: pd.DataFrame,
    rng: np.random.Generator,
    model: WeibullSurvivalModel | None = None,
) -> pd.DataFrame:
    """Draw event and censoring times for every patient.

    Parameters
    ----------
    labels : pandas.DataFrame, shape (n_patients, ...)
        The truth table (see :func:`hazard_covariates`).
    rng : numpy.random.Generator
        Source of randomness.
    model : WeibullSurvivalModel, optional
        Default :class:`WeibullSurvivalModel()`.

    Returns
    -------
    pandas.DataFrame, shape (n_patients, 5)
        ``os_log_hazard`` (η), ``event_days`` (true event time), ``censor_days``,
        ``os_days`` (min of the two, >= 1 day, rounded to 0.1) and ``os_event``.
    """
    model = model or WeibullSurvivalModel()
    covariates = hazard_covariates(labels)
    beta = np.asarray([model.log_hazard_ratios.get(c, 0.0) for c in covariates.columns])
    eta = covariates.to_numpy() @ beta
    n = len(labels)
    # Inverse transform: H(t) = (t/λ)^k e^η = -log U.
    event_days = model.scale_days * (-np.log(rng.random(n)) * np.exp(-eta)) ** (1.0 / model.shape)
    admin = rng.uniform(*model.accrual_years, n) * _DAYS_PER_YEAR
    loss = rng.exponential(model.loss_mean_years * _DAYS_PER_YEAR, n)
    censor_days = np.minimum(admin, loss)
    os_event = event_days <= censor_days
    os_days = np.maximum(np.round(np.minimum(event_days, censor_days), 1), 1.0)
    return pd.DataFrame(
        {
            "os_log_hazard": eta,
            "event_days": event_days,
            "censor_days": censor_days,
            "os_days": os_days,
            "os_event": os_event,
        },
        index=labels.index,
    )
