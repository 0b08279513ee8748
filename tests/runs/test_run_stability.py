"""`stability_run`: perturbed partitions of the store, declared tables, named errors."""

from __future__ import annotations

import numpy as np
import pytest

from trust_helpers import check_stored, make_probe_store

from neurofeat.runs import NoPerturbationsError, stability_run
from neurofeat.store import append_embeddings, read_embeddings

FAST = dict(n_splits=3, n_repeats=1, n_boot=50)


def add_perturbations(store, backbone: str, seed: int = 0) -> None:
    """contrast-* equal to the clean embeddings (ignored), gibbs-* clean + growing noise."""
    table = read_embeddings(store, backbone, columns=("patient_id", "embedding",
                                                      "checkpoint_sha256", "preprocess_sha256"))
    ids = table["patient_id"].to_pylist()
    X = np.array(table["embedding"].to_pylist(), np.float32)
    rng = np.random.default_rng(seed)
    hashes = dict(checkpoint_sha256=table["checkpoint_sha256"][0].as_py(),
                  preprocess_sha256=table["preprocess_sha256"][0].as_py())
    for strength in (0.2, 0.4):
        append_embeddings(store, backbone, ids, X, perturbation=f"contrast-{1 + strength:g}",
                          **hashes)
        noisy = X + 6 * strength * rng.normal(size=X.shape).astype(np.float32)
        append_embeddings(store, backbone, ids, noisy, perturbation=f"gibbs-{strength:g}", **hashes)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    store = make_probe_store(tmp_path_factory.mktemp("stab") / "store", n=90, dim=8)
    add_perturbations(store, "dino")
    add_perturbations(store, "dino_dro", seed=1)
    return store


def test_stability_run_writes_declared_tables(store):
    run = stability_run(store, ["dino", "dino_dro"], "idh1", **FAST)
    check_stored(run.info, "stability", run.tables)
    assert set(run.info.figures) == {"stability_auc", "embedding_drift"}
    curve = run.tables["stability"]
    assert set(curve["backbone"]) == {"dino", "dino_dro"}
    contrast = curve[(curve["kind"] == "contrast") & (curve["backbone"] == "dino")
                     & (curve["metric"] == "auc")]
    assert np.ptp(contrast["estimate"]) == 0.0
    drift = run.tables["drift"]
    assert len(drift) == 2 * 4 * 90 and drift["checkpoint_sha256"].notna().all()
    metrics = run.tables["metrics"]
    assert (metrics["command"] == "stability").all()
    assert set(metrics["perturbation"]) == {"none", "contrast-1.2", "contrast-1.4",
                                            "gibbs-0.2", "gibbs-0.4"}


def test_one_perturbation_asked_for(store):
    run = stability_run(store, "dino", "idh1", perturbations=["gibbs-0.4"], write=False, **FAST)
    assert run.params["perturbations"] == ["gibbs-0.4"]


def test_backbone_without_perturbations_is_a_named_error(store):
    with pytest.raises(NoPerturbationsError,
                       match="backbone 'mae' has no perturbed embeddings .* --perturb"):
        stability_run(store, ["dino", "mae"], "idh1", write=False, **FAST)


def test_missing_perturbation_and_survival_task(store):
    with pytest.raises(NoPerturbationsError, match="no embeddings with perturbation 'bias-0.3'"):
        stability_run(store, "dino", "idh1", perturbations=["bias-0.3"], write=False, **FAST)
    with pytest.raises(ValueError, match="survival task"):
        stability_run(store, "dino", "os", write=False, **FAST)
