"""Perturbation stability (analysis/stability.py): clean-trained probe on perturbed embeddings.

The "encoder" here is a fixed map from latent traits to embeddings. A perturbation it
ignores by construction leaves every embedding unchanged (contrast here); one it does
not ignore moves the embeddings by noise that grows with the strength (Gibbs here).
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics.pairwise import cosine_distances

from neurofeat.analysis.stability import (embedding_drift, parse_perturbation_label,
                                          perturbation_stability)

STRENGTHS = (0.1, 0.2, 0.4)


@pytest.fixture(scope="module")
def result():
    rng = np.random.default_rng(0)
    n, d = 150, 20
    latent = rng.normal(size=(n, 3))
    y = latent[:, 0] + 0.5 * rng.normal(size=n) > 0
    X = latent @ rng.normal(size=(3, d)) + 0.7 * rng.normal(size=(n, d))
    perturbed = {}
    for s in STRENGTHS:
        perturbed[f"contrast-{1 + s:g}"] = X.copy()                      # ignored
        perturbed[f"gibbs-{s:g}"] = X + 8 * s * rng.normal(size=X.shape)   # not ignored
    ids = np.array([f"P{i:03d}" for i in range(n)])
    sites = np.array(["A", "B", "C"])[np.arange(n) % 3]
    return perturbation_stability(X, y, perturbed, patient_ids=ids, sites=sites, task="idh1",
                                  n_repeats=2, n_boot=200)


def _curve(result, kind, metric="auc"):
    c = result.curve
    return c[(c["kind"] == kind) & (c["metric"] == metric)].sort_values("strength")


def test_curve_is_flat_for_a_perturbation_the_encoder_ignores(result):
    contrast = _curve(result, "contrast")
    assert contrast["strength"].tolist() == [1.0, 1.1, 1.2, 1.4]
    assert np.ptp(contrast["estimate"]) == 0.0
    assert (contrast["delta"] == 0).all()
    drift = result.drift[result.drift["kind"] == "contrast"]["cosine_distance"]
    assert drift.abs().max() < 1e-12


def test_curve_falls_for_a_perturbation_the_encoder_does_not_ignore(result):
    gibbs = _curve(result, "gibbs")
    assert gibbs["strength"].tolist() == [0.0, 0.1, 0.2, 0.4]
    estimates = gibbs["estimate"].to_numpy()
    assert estimates[-1] < estimates[0] - 0.05
    last = gibbs.iloc[-1]
    assert last["delta_ci_high"] < 0          # the drop at 0.4 is beyond noise
    assert last["ci_low"] <= last["estimate"] <= last["ci_high"]
    drift = result.drift[result.drift["kind"] == "gibbs"].groupby("strength")[
        "cosine_distance"].median()
    assert drift.is_monotonic_increasing and drift.iloc[0] > 0


def test_metrics_hold_every_perturbation_and_the_clean_baseline(result):
    assert set(result.metrics["perturbation"]) == {"none", "contrast-1.1", "contrast-1.2",
                                                   "contrast-1.4", "gibbs-0.1", "gibbs-0.2",
                                                   "gibbs-0.4"}
    assert "probe trained on clean embeddings" in result.summary()


def test_drift_matches_sklearn_cosine_distance():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(30, 8)), rng.normal(size=(30, 8))
    assert embedding_drift(a, b) == pytest.approx(np.diag(cosine_distances(a, b)), abs=1e-12)


@pytest.mark.parametrize(("label", "expected"), [
    ("gibbs-0.2", ("gibbs", 0.2)), ("contrast-1.5", ("contrast", 1.5)),
    ("bias-0.3", ("bias", 0.3)), ("bias-0.2+gibbs-0.1", ("bias+gibbs", None)),
    ("none", ("none", None)),
])
def test_labels(label, expected):
    kind, strength = parse_perturbation_label(label)
    assert kind == expected[0]
    assert (np.isnan(strength) if expected[1] is None else strength == expected[1])


def test_no_perturbation_is_refused():
    with pytest.raises(ValueError, match="no perturbed embeddings"):
        perturbation_stability(np.zeros((10, 2)), np.arange(10) % 2, {}, patient_ids=np.arange(10),
                               sites=np.zeros(10), task="idh1")


def test_continuous_task_primary_interval_uses_the_continuous_correction():
    """Regression: the clean and perturbed rows of a continuous task carried the binary
    calibrated correction (evaluate_probe was not told the task kind)."""
    from neurofeat.analysis.folds import stratified_kfold_plan
    from neurofeat.analysis.paired_tests import DEFAULT_TEST, corrected_resampled_interval
    from neurofeat.analysis.probes import RidgeProbe
    from neurofeat.analysis.scoring import get_scorer, score_folds

    rng = np.random.default_rng(3)
    n, d = 90, 6
    z = rng.normal(size=n)
    y = z + rng.normal(size=n)
    X = np.c_[z, rng.normal(size=(n, d - 1))] + 0.5 * rng.normal(size=(n, d))
    ids = np.array([f"P{i:03d}" for i in range(n)])
    sites = np.full(n, "A")
    res = perturbation_stability(X, y, {"gibbs-0.2": X + 0.3 * rng.normal(size=X.shape)},
                                 patient_ids=ids, sites=sites, task="tumour_volume",
                                 kind="continuous", threshold=0.0, n_repeats=2, n_boot=50)
    row = res.metrics[(res.metrics["perturbation"] == "none") & (res.metrics["metric"] == "auc")
                      & (res.metrics["ci_method"] == DEFAULT_TEST)].iloc[0]
    assert row["probe"] == "ridge"
    # the same interval computed independently from the per-fold AUCs of the same plan
    labels = y >= 0.0
    plan = stratified_kfold_plan(ids, labels, n_splits=5, n_repeats=2, task="tumour_volume")
    scores = np.full(plan.fold_ids.shape, np.nan)
    sizes = []
    for split in plan.splits():
        model = RidgeProbe().fit(X[split.train], y[split.train])
        scores[split.repeat, split.test] = model.predict(X[split.test])
        sizes.append((split.train.size, split.test.size))
    folds = score_folds(get_scorer("auc"), labels, scores, plan.fold_ids, plan.n_folds)
    n_train, n_test = np.mean(sizes, axis=0)
    want = {k: corrected_resampled_interval(folds, n_train=n_train, n_test=n_test,
                                            metric="auc", kind=k, bounds=(0.0, 1.0))
            for k in ("continuous", "binary")}
    assert row["estimate"] == pytest.approx(want["continuous"].estimate, abs=1e-12)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(
        (want["continuous"].ci_low, want["continuous"].ci_high), abs=1e-12)
    # and it is not the binary one (the factors differ, so the widths do)
    assert row["ci_high"] - row["ci_low"] < want["binary"].ci_high - want["binary"].ci_low - 1e-6
