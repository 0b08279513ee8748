"""`invariance_run`: tables match their schemas, provenance on every row, figures stored."""

from __future__ import annotations

import pytest

from trust_helpers import check_stored, make_probe_store

from neurofeat.runs import invariance_run

FAST = dict(n_boot=50, n_splits=3, tsne=False)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_probe_store(tmp_path_factory.mktemp("inv") / "store", n=60, dim=8)


def test_invariance_run_writes_declared_tables(store):
    run = invariance_run(store, ["dino", "dino_dro"], label="idh1", **FAST)
    check_stored(run.info, "invariance", run.tables)
    assert set(run.info.figures) == {"invariance_scatter", "invariance_summary"}
    inv = run.tables["invariance"]
    assert set(inv["backbone"]) == {"dino", "dino_dro"}
    assert inv["checkpoint_sha256"].notna().all() and (inv["seed"] == 0).all()
    assert set(inv["better"]) == {"lower", "higher", "lower (towards chance)"}
    metrics = run.tables["metrics"]
    assert (metrics["command"] == "invariance").all() and (metrics["task"] == "site").all()
    coords = run.tables["coordinates"]
    assert set(coords["label"].dropna()) <= {"True", "False"}
    side = run.side_by_side()
    assert list(side["backbone"]) == ["dino", "dino_dro"]
    assert side["chance"].tolist() == pytest.approx([1 / 3, 1 / 3])


def test_family_selects_members_and_pairs_twins(store):
    run = invariance_run(store, family="all", write=False, **FAST)
    assert run.info is None
    assert list(run.side_by_side()["backbone"]) == [
        "byol", "byol_dro", "dino", "dino_dro", "mae", "mae_dro", "moco", "moco_dro"]


def test_by_a_clinical_column(store):
    run = invariance_run(store, ["mae"], by="mgmt", write=False, **FAST)
    assert run.results["mae"].n_groups == 2


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(backbones=["dinoo"]), "unknown backbone 'dinoo'. Did you mean 'dino'"),
    (dict(family="nope"), "--family must be one of base, dro, all"),
    (dict(backbones=["dino"], by="idh"), "'idh' is not a column of the clinical view"),
    (dict(backbones=["dino"], perturbation="gibbs-0.2"),
     "has no embeddings with perturbation 'gibbs-0.2'"),
])
def test_named_errors(store, kwargs, match):
    with pytest.raises(Exception, match=match):
        invariance_run(store, write=False, **FAST, **kwargs)
