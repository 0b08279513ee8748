"""The label model: site sizes, prevalences, dependencies, missingness, trait effects.

Reference values are the numbers of the generative model itself (the per-patient
probabilities ``p_<marker>`` and the documented effect sizes); the checks use
binomial z-scores, least squares (numpy) and cross-validated probes (sklearn).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from neurofeat.synth import MARKERS, TRAITS, GenerativeModel, simulate_tables, site_names, site_sizes

N_BIG = 20000


@pytest.fixture(scope="module")
def big():
    return simulate_tables(N_BIG, n_sites=3, seed=11).truth


@pytest.fixture(scope="module")
def probe_cohort():
    return simulate_tables(3000, n_sites=3, seed=1).truth


def _imaging_features(truth: pd.DataFrame) -> pd.DataFrame:
    features = truth[list(TRAITS) + ["centre_x_mm", "centre_y_mm", "centre_z_mm"]].copy()
    features["abs_x_mm"] = features["centre_x_mm"].abs()
    return features


def _probe_auc(features: pd.DataFrame, y: np.ndarray) -> float:
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    p = cross_val_predict(model, features, y, cv=folds, method="predict_proba")[:, 1]
    return float(roc_auc_score(y, p))


def test_site_sizes_are_imbalanced_50_30_20():
    assert site_sizes(240, 3).tolist() == [120, 72, 48]
    assert site_sizes(241, 3).sum() == 241
    assert site_sizes(10, 5).min() >= 1 and site_sizes(10, 5).sum() == 10
    assert site_names(3) == ["siteA", "siteB", "siteC"]


def test_bad_site_counts_are_refused():
    with pytest.raises(ValueError, match="n_sites is 27; use 1 to 26"):
        site_names(27)
    with pytest.raises(ValueError, match="n is 2 but there are 3 sites"):
        site_sizes(2, 3)
    with pytest.raises(ValueError, match="seed is -1"):
        simulate_tables(10, seed=-1)


def test_patient_ids_and_sites(big):
    small = simulate_tables(240, n_sites=3, seed=0).truth
    assert small["patient_id"].iloc[0] == "siteA-0001"
    assert small["patient_id"].is_unique and small["patient_id"].is_monotonic_increasing
    assert small.groupby("site").size().to_dict() == {"siteA": 120, "siteB": 72, "siteC": 48}
    assert (small["patient_id"].str.split("-").str[0] == small["site"]).all()


def test_same_seed_same_tables_other_seed_differs():
    a = simulate_tables(300, seed=4)
    b = simulate_tables(300, seed=4)
    c = simulate_tables(300, seed=5)
    pd.testing.assert_frame_equal(a.truth, b.truth)
    assert not a.truth["age"].equals(c.truth["age"])


@pytest.mark.parametrize("marker", MARKERS)
def test_prevalence_matches_model_probabilities(big, marker):
    # Sum of independent Bernoulli(p_i): mean sum p, variance sum p(1-p).
    p = big[f"p_{marker}"].to_numpy()
    observed = big[f"{marker}_true"].sum()
    z = (observed - p.sum()) / np.sqrt((p * (1 - p)).sum())
    assert abs(z) < 4.5, f"{marker}: observed {observed}, expected {p.sum():.0f} (z = {z:.2f})"


def test_overall_prevalences_are_realistic(big):
    prevalence = {m: big[f"{m}_true"].mean() for m in MARKERS}
    assert 0.25 < prevalence["idh1"] < 0.35
    assert 0.10 <= prevalence["cdkn2a"] <= 0.15  # rare endpoint, issue 4
    assert 0.08 < prevalence["codel_1p19q"] < 0.13
    assert 0.45 < prevalence["mgmt"] < 0.60
    assert 0.25 < prevalence["egfr"] < 0.35


def test_dependencies_between_markers(big):
    idh = big["idh1_true"]
    codel = big["codel_1p19q_true"]
    astro = idh & ~codel
    assert not (codel & ~idh).any(), "1p/19q codeletion only on an IDH-mutant background"
    assert big.loc[astro, "atrx_true"].mean() > 0.65
    assert big.loc[codel, "atrx_true"].mean() < 0.08
    assert big.loc[~idh, "atrx_true"].mean() < 0.10
    assert big.loc[big["atrx_true"], "idh1_true"].mean() > 0.6, "ATRX loss is mostly IDH-mutant"
    assert big.loc[codel, "tert_true"].mean() > 0.9
    assert big.loc[idh, "egfr_true"].mean() < 0.05
    assert big.loc[astro & big["cdkn2a_true"], "grade"].eq(4).all(), "CDKN2A-deleted astrocytoma is grade 4"
    assert big.loc[codel, "grade"].isin([2, 3]).all()
    assert big.loc[codel, "histology"].eq("oligodendroglioma").all()
    assert big.loc[~idh & big["grade"].eq(4), "histology"].eq("glioblastoma").all()
    assert big.loc[idh, "mgmt_true"].mean() > 0.8 > 0.5 > big.loc[~idh, "mgmt_true"].mean()


def test_clinical_variables(big):
    idh = big["idh1_true"]
    assert big.loc[idh, "age"].median() < 45 < 55 < big.loc[~idh, "age"].median()
    assert big["age"].between(18, 89).all()
    assert 0.55 < (big["sex"] == "M").mean() < 0.61
    ki67 = big.groupby("grade")["ki67_true"].median()
    assert ki67[2] < ki67[3] < ki67[4]
    assert 2 < ki67[2] < 5 and 15 < ki67[4] < 30
    assert big.loc[big["tp53_true"], "p53_ihc_true"].median() > 50 > 15 > big.loc[~big["tp53_true"], "p53_ihc_true"].median()


def test_label_shift_between_sites(big):
    idh_by_site = big.groupby("site")["idh1_true"].mean()
    assert idh_by_site["siteA"] < idh_by_site["siteB"] < idh_by_site["siteC"]
    assert idh_by_site["siteC"] - idh_by_site["siteA"] > 0.12


def test_missing_labels_at_documented_rates(big):
    model = GenerativeModel()
    multipliers = {"siteA": 1.0, "siteB": 0.6, "siteC": 1.4}
    for column, rate in model.missing_rates.items():
        for site, multiplier in multipliers.items():
            rows = big[big["site"] == site]
            expected = min(rate * multiplier, 0.9)
            observed = rows[column].isna().mean()
            se = np.sqrt(expected * (1 - expected) / len(rows))
            assert abs(observed - expected) < 4.5 * se, f"{column} at {site}: {observed:.3f} vs {expected:.3f}"
    for column in ("idh1", "age", "sex", "grade", "histology", "os_days", "os_event"):
        assert big[column].notna().all(), column
    known = big["egfr"].notna()
    assert (big.loc[known, "egfr"].astype(bool) == big.loc[known, "egfr_true"]).all()


def test_trait_effects_are_recovered_by_least_squares(big):
    model = GenerativeModel()
    causes = pd.DataFrame(
        {
            "idh_wt": ~big["idh1_true"],
            "astro": big["idh1_true"] & ~big["codel_1p19q_true"],
            "codel": big["codel_1p19q_true"],
            "grade4": big["grade"] == 4,
            "egfr": big["egfr_true"],
            "cdkn2a": big["cdkn2a_true"],
            "mgmt": big["mgmt_true"],
        }
    ).astype(float)
    # No intercept column: idh_wt + astro + codel = 1 already spans it (and the model's
    # baseline is 0).
    design = causes.to_numpy()
    for trait in TRAITS:
        coef, *_ = np.linalg.lstsq(design, big[trait].to_numpy(), rcond=None)
        for j, cause in enumerate(causes.columns):
            # SE of a coefficient ~ 1/sqrt(n p (1-p)) ≈ 0.03 at n = 20000; allow 0.12
            assert abs(coef[j] - model.effect(trait, cause)) < 0.12, (trait, cause, coef[j])


def test_idh1_is_strongly_and_cdkn2a_weakly_predictable(probe_cohort):
    features = _imaging_features(probe_cohort)
    auc_idh = _probe_auc(features, probe_cohort["idh1_true"].to_numpy())
    auc_cdkn2a = _probe_auc(features, probe_cohort["cdkn2a_true"].to_numpy())
    auc_mgmt = _probe_auc(features, probe_cohort["mgmt_true"].to_numpy())
    auc_codel = _probe_auc(features, probe_cohort["codel_1p19q_true"].to_numpy())
    assert auc_idh > 0.9
    assert 0.86 < auc_codel < 0.94  # the module docstring states about 0.90 (0.896 at seed 1)
    assert 0.55 < auc_cdkn2a < 0.78
    assert 0.55 < auc_mgmt < 0.78
    assert auc_idh > auc_mgmt + 0.1


def test_effect_scale_zero_removes_the_imaging_signal():
    causes = ("idh_wt", "astro", "codel", "grade4", "egfr", "cdkn2a", "mgmt", "location")
    null_model = GenerativeModel(effect_scale={c: 0.0 for c in causes})
    truth = simulate_tables(3000, seed=1, model=null_model).truth
    auc = _probe_auc(_imaging_features(truth), truth["idh1_true"].to_numpy())
    assert abs(auc - 0.5) < 0.05


def test_location_depends_on_idh(big):
    frontal = big["region"].str.startswith(("frontal", "insular"))
    assert big.loc[big["idh1_true"], "region"].str.startswith(("frontal", "insular")).mean() > 0.5
    assert frontal[~big["idh1_true"]].mean() < 0.35


def test_unknown_causes_are_refused():
    with pytest.raises(ValueError, match="effect_scale names 'idh'; use one of"):
        simulate_tables(10, model=GenerativeModel(effect_scale={"idh": 0.0}))
    with pytest.raises(ValueError, match="trait_effects names trait 'size_z'"):
        simulate_tables(10, model=GenerativeModel(trait_effects={"size_z": {"egfr": 1.0}}))


def test_a_direct_effect_can_be_given_to_any_marker():
    model = GenerativeModel(trait_effects={**GenerativeModel().trait_effects, "oedema_z": {"tert": 2.0}})
    truth = simulate_tables(4000, seed=3, model=model).truth
    shift = truth.loc[truth["tert_true"], "oedema_z"].mean() - truth.loc[~truth["tert_true"], "oedema_z"].mean()
    assert shift == pytest.approx(2.0, abs=0.12)
