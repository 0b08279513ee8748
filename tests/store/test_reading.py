"""(X, y) reads: alignment, cohorts, labels, errors."""

from __future__ import annotations

import numpy as np
import pytest

from neurofeat.store import StoreError, append_embeddings, connect, read_labels, read_xy, task_counts
from neurofeat.tasks import get_task, list_tasks

CKPT, PRE = "c" * 64, "p" * 64


@pytest.fixture
def embedded(store, ids):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(len(ids), 5)).astype(np.float32)
    # written in two batches, shuffled, one patient left out
    order = rng.permutation(len(ids) - 1)
    append_embeddings(store, "dino", [ids[i] for i in order], X[order], checkpoint_sha256=CKPT, preprocess_sha256=PRE, batch_size=17)
    return store, X


def test_rows_align_with_labels_and_are_sorted(embedded, ids):
    store, X = embedded
    data = read_xy(store, "dino", "idh1")
    assert list(data.patient_ids) == sorted(data.patient_ids)
    expected = connect(store).sql(
        "SELECT patient_id, idh1::DOUBLE, site FROM clinical WHERE idh1 IS NOT NULL ORDER BY patient_id"
    ).fetchall()
    expected = [row for row in expected if row[0] != ids[-1]]
    assert [r[0] for r in expected] == list(data.patient_ids)
    np.testing.assert_array_equal(data.y, [r[1] for r in expected])
    assert list(data.sites) == [r[2] for r in expected]
    np.testing.assert_array_equal(data.X, X[[ids.index(p) for p in data.patient_ids]])
    assert data.checkpoint_sha256 == CKPT and data.preprocess_sha256 == PRE


def test_missing_embeddings_are_counted(embedded, ids):
    store, _ = embedded
    data = read_xy(store, "dino", "ki67")
    assert data.n == len(ids) - 1
    assert data.n_missing_embedding == 1 and data.missing_patient_ids == (ids[-1],)


def test_null_labels_are_not_eligible(embedded):
    store, _ = embedded
    data = read_labels(store, "idh1")
    null_count = connect(store).sql("SELECT count(*) FROM clinical WHERE idh1 IS NULL").fetchall()[0][0]
    assert null_count > 0
    assert data.n == 60 - null_count


def test_survival_task_uses_its_cohort(embedded):
    store, _ = embedded
    data = read_xy(store, "dino", "os")
    expected = connect(store).sql(
        "SELECT patient_id, os_days, os_event FROM clinical WHERE idh1 = false AND grade = 4 "
        "AND patient_id <> 'P059' ORDER BY patient_id"
    ).fetchall()
    assert list(data.patient_ids) == [r[0] for r in expected]
    np.testing.assert_allclose(data.y, [r[1] for r in expected])
    np.testing.assert_array_equal(data.event, [r[2] for r in expected])
    with pytest.raises(ValueError, match="survival task"):
        _ = data.y_binary


def test_continuous_task_binarised_at_threshold(embedded):
    store, _ = embedded
    data = read_labels(store, "ki67")
    np.testing.assert_array_equal(data.y_binary, (data.y >= 10.0).astype(np.int8))


def test_unknown_backbone_names_the_closest(embedded):
    store, _ = embedded
    with pytest.raises(StoreError, match="Did you mean 'dino'"):
        read_xy(store, "dinno", "idh1")


def test_unknown_perturbation_lists_those_stored(embedded):
    store, _ = embedded
    with pytest.raises(StoreError, match="has: none"):
        read_xy(store, "dino", "idh1", perturbation="gibbs-0.5")


def test_duplicate_rows_are_an_error(embedded, ids):
    store, _ = embedded
    # A foreign tool copied a part file: the same keys twice.
    (path,) = list(store.partition_dir("dino").glob("*.parquet"))[:1]
    (path.parent / "part-copy.parquet").write_bytes(path.read_bytes())
    with pytest.raises(StoreError, match="stored more than once"):
        read_xy(store, "dino", "ki67")


def test_task_counts_per_site(embedded):
    store, _ = embedded
    counts = task_counts(store, [get_task("idh1"), get_task("os")])
    idh = connect(store).sql(
        "SELECT site, count(*), sum(idh1::INT) FROM clinical WHERE idh1 IS NOT NULL GROUP BY site ORDER BY site"
    ).fetchall()
    got = counts[(counts.task == "idh1") & (counts.site != "all")][["site", "n_eligible", "n_positive"]]
    assert [tuple(r) for r in got.itertuples(index=False)] == [(s, n, p) for s, n, p in idh]


def test_user_tasks_from_config(tmp_path):
    config = {"tasks": {"gbm_mgmt": {"label": "mgmt", "kind": "binary", "cohort": "grade = 4"}}}
    names = [t.name for t in list_tasks(config)]
    assert "gbm_mgmt" in names and "idh1" in names
    assert get_task("gbm_mgmt", config).cohort == "grade = 4"
    with pytest.raises(ValueError, match="needs a 'threshold'"):
        list_tasks({"tasks": {"x": {"kind": "continuous"}}})
    with pytest.raises(ValueError, match="unknown key"):
        list_tasks({"tasks": {"x": {"kind": "binary", "colour": 1}}})


def test_unknown_task_lists_known_and_closest():
    with pytest.raises(ValueError, match=r"unknown task 'cdkn2'. Did you mean 'cdkn2a'\? Known tasks: atrx"):
        get_task("cdkn2")
