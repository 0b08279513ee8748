"""Shared fixtures for the survival tests: public reference data sets in tests/data/."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

DATA = Path(__file__).resolve().parents[2] / "data"


@pytest.fixture(scope="session")
def ovarian() -> pd.DataFrame:
    """R survival's ovarian data (26 patients; futime, fustat, rx)."""
    return pd.read_csv(DATA / "survival_ovarian.csv")


@pytest.fixture(scope="session")
def aml() -> pd.DataFrame:
    """R survival's aml data (23 patients; time, status, x)."""
    return pd.read_csv(DATA / "survival_aml.csv")


@pytest.fixture(scope="session")
def veteran() -> pd.DataFrame:
    """R survival's veteran lung cancer trial (137 patients)."""
    return pd.read_csv(DATA / "survival_veteran.csv")


@pytest.fixture(scope="session")
def whas500() -> pd.DataFrame:
    """scikit-survival's whas500 predictions (event, time, risk score)."""
    return pd.read_csv(DATA / "whas500_predictions.csv", header=None,
                       names=["event", "time", "risk"])


def synthetic_cohort(n: int = 120, d: int = 40, seed: int = 0, n_sites: int = 3,
                     strength: float = 0.6):
    """Embeddings with a proportional-hazards signal in the first 3 dimensions."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    lp = strength * X[:, :3].sum(axis=1)
    t_event = rng.exponential(400.0 * np.exp(-lp)) + 1.0
    t_cens = rng.uniform(300.0, 1500.0, n)
    time = np.round(np.minimum(t_event, t_cens), 1)
    event = t_event <= t_cens
    ids = np.array([f"P{i:04d}" for i in range(n)])
    sites = np.array(["UCSF", "UPenn", "CUIMC"][:n_sites])[rng.integers(0, n_sites, n)]
    return X, time, event, ids, sites


@pytest.fixture(scope="session")
def cohort():
    """(X, time, event, patient_ids, sites) of a small synthetic cohort."""
    return synthetic_cohort()
