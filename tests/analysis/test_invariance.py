"""Site invariance (analysis/invariance.py): silhouette, Davies-Bouldin, site probe.

The cohort: the synthetic generator's tables (``neurofeat.synth.simulate_tables``) at a
given ``site_effect``; each patient's "embedding" mixes its latent imaging traits with
its site's acquisition protocol (the parameters ``site_protocols`` draws, which are
identical for every site at ``site_effect = 0``), plus noise. No images are rendered.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, davies_bouldin_score, silhouette_score

from neurofeat.analysis.invariance import (BETTER, SITE_PROBE_CI, balanced_accuracy_multiclass,
                                           principal_components, site_invariance,
                                           site_probe, site_separability)
from neurofeat.synth import TRAITS, simulate_tables


ACQ_WEIGHT = 0.5


def synthetic_embeddings(site_effect: float, n: int = 150, dim: int = 48, seed: int = 0):
    tables = simulate_tables(n, n_sites=3, seed=seed, site_effect=site_effect)
    truth = tables.truth
    protocols = {p.site: p.to_dict() for p in tables.protocols}
    keys = [k for k in protocols[truth["site"].iloc[0]] if k != "site"]
    acq = np.array([[float(protocols[s][k]) for k in keys] for s in truth["site"]])
    baseline = np.array([float(simulate_tables(3, n_sites=3, seed=seed, site_effect=0.0)
                               .protocols[0].to_dict()[k]) for k in keys])
    traits = truth[list(TRAITS)].to_numpy(float)
    rng = np.random.default_rng(seed + 1)
    X = (traits @ rng.normal(size=(traits.shape[1], dim))
         + ACQ_WEIGHT * (acq - baseline) @ rng.normal(size=(len(keys), dim))
         + 1.0 * rng.normal(size=(n, dim)))
    return X, truth["site"].to_numpy(str), truth["patient_id"].to_numpy(str)


@pytest.fixture(scope="module")
def by_strength():
    out = {}
    for strength in (0.0, 0.75, 2.0):
        X, sites, ids = synthetic_embeddings(strength)
        out[strength] = site_invariance(X, sites, ids, n_boot=200, tsne=False, n_splits=5)
    return out


def test_separability_rises_with_site_effect_and_is_near_chance_at_zero(by_strength):
    sil = [by_strength[s].silhouette for s in (0.0, 0.75, 2.0)]
    ba = [by_strength[s].probe.balanced_accuracy for s in (0.0, 0.75, 2.0)]
    db = [by_strength[s].davies_bouldin for s in (0.0, 0.75, 2.0)]
    assert sil[0] < sil[1] < sil[2], sil
    assert ba[0] < ba[1] < ba[2], ba
    assert db[0] > db[1] > db[2], db
    zero = by_strength[0.0]
    assert abs(zero.silhouette) < 0.05
    assert zero.probe.ci_low <= 1 / 3 <= zero.probe.ci_high
    strong = by_strength[2.0].probe
    assert strong.ci_low > 1 / 3 and strong.balanced_accuracy > 0.8


def test_numbers_match_sklearn(by_strength):
    X, sites, ids = synthetic_embeddings(0.75)
    scores, ratio = principal_components(X, 10)
    sil, db = site_separability(scores, sites)
    # sklearn.metrics on the same PCA scores (Euclidean silhouette)
    assert sil == pytest.approx(silhouette_score(scores, sites), rel=1e-12)
    assert db == pytest.approx(davies_bouldin_score(scores, sites), rel=1e-12)
    result = by_strength[0.75]
    assert result.silhouette == pytest.approx(sil, rel=1e-9)
    assert result.n_components == 10 and 0 < result.explained_variance < 1
    assert ratio.shape == (10,)


def test_multiclass_balanced_accuracy_matches_sklearn():
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 4, 200)
    predicted = np.where(rng.random(200) < 0.6, truth, rng.integers(0, 4, 200))
    ours = balanced_accuracy_multiclass(truth, predicted, 4)[0]
    assert ours == pytest.approx(balanced_accuracy_score(truth, predicted), rel=1e-12)
    index = rng.integers(0, 200, (5, 200))
    batched = balanced_accuracy_multiclass(truth, predicted, 4, index)
    for b in range(5):
        assert batched[b] == pytest.approx(
            balanced_accuracy_score(truth[index[b]], predicted[index[b]]), rel=1e-12)


def test_site_probe_result_and_frame(by_strength):
    probe = by_strength[2.0].probe
    assert probe.chance == pytest.approx(1 / 3) and probe.n_sites == 3
    assert probe.fold_values.shape == (1, 5)
    assert probe.confusion.to_numpy().sum() == probe.n
    assert probe.boot_low <= probe.pooled_balanced_accuracy <= probe.boot_high
    frame = by_strength[2.0].to_frame()
    assert set(frame["metric"]) == set(BETTER)
    assert set(frame["ci_method"]) == {"none", SITE_PROBE_CI, "percentile"}
    assert "lower is better" in by_strength[2.0].summary()


def test_coordinates_pca_and_tsne():
    X, sites, ids = synthetic_embeddings(1.0, n=60, dim=16)
    result = site_invariance(X, sites, ids, n_boot=50, tsne=True, n_splits=3)
    coords = result.coordinates
    assert set(coords["method"]) == {"pca", "tsne"}
    assert len(coords) == 2 * 60 and np.isfinite(coords[["x", "y"]].to_numpy()).all()


def test_one_group_is_refused():
    X = np.random.default_rng(0).normal(size=(20, 5))
    with pytest.raises(ValueError, match="at least 2 groups"):
        site_invariance(X, np.array(["A"] * 20), tsne=False)


def test_site_probe_is_reproducible():
    X, sites, ids = synthetic_embeddings(0.75, n=60, dim=16)
    scores, _ = principal_components(X, 10)
    a = site_probe(scores, sites, ids, n_boot=20, n_splits=3, seed=4)
    b = site_probe(scores, sites, ids, n_boot=20, n_splits=3, seed=4)
    assert a.balanced_accuracy == b.balanced_accuracy and a.boot_low == b.boot_low
    assert (a.predicted == b.predicted).all()
