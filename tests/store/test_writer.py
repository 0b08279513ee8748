"""Embedding writes: atomic, resumable, one checkpoint per backbone."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow.parquet as pq
import pytest

from neurofeat.store import (
    CheckpointMismatchError,
    EmbeddingWriter,
    Store,
    StoreError,
    StoreLock,
    StoreLockedError,
    append_embeddings,
    connect,
    read_xy,
)

CKPT_A, CKPT_B, PRE = "a" * 64, "b" * 64, "p" * 64


def committed_rows(store: Store, backbone: str) -> int:
    return connect(store).sql(f"SELECT count(*) FROM embeddings WHERE backbone = '{backbone}'").fetchall()[0][0]


def test_round_trip_schema_and_provenance(store, ids):
    X = np.random.default_rng(1).normal(size=(len(ids), 8)).astype(np.float32)
    assert append_embeddings(store, "dino", ids, X, checkpoint_sha256=CKPT_A, preprocess_sha256=PRE, seed=7) == len(ids)
    files = list(store.partition_dir("dino").glob("*.parquet"))
    assert files
    schema = pq.read_schema(files[0])
    assert str(schema.field("embedding").type) == "fixed_size_list<element: float>[8]"
    assert b"neurofeat" in schema.metadata
    row = connect(store).sql(
        "SELECT checkpoint_sha256, preprocess_sha256, seed, neurofeat_version FROM embeddings LIMIT 1"
    ).fetchall()[0]
    import neurofeat

    assert row == (CKPT_A, PRE, 7, neurofeat.__version__)
    data = read_xy(store, "dino", "ki67")
    order = [ids.index(p) for p in data.patient_ids]
    np.testing.assert_array_equal(data.X, X[order])


def test_rows_sorted_by_site_within_a_file(store, ids):
    append_embeddings(store, "dino", ids, np.ones((len(ids), 4)), checkpoint_sha256=CKPT_A, preprocess_sha256=PRE)
    (path,) = store.partition_dir("dino").glob("*.parquet")
    sites = pq.read_table(path, columns=["site"])["site"].to_pylist()
    assert sites == sorted(sites)


def test_rerun_skips_stored_keys(store, ids):
    X = np.ones((len(ids), 4), np.float32)
    append_embeddings(store, "dino", ids[:20], X[:20], checkpoint_sha256=CKPT_A, preprocess_sha256=PRE)
    assert append_embeddings(store, "dino", ids, X, checkpoint_sha256=CKPT_A, preprocess_sha256=PRE) == len(ids) - 20
    assert committed_rows(store, "dino") == len(ids)


def test_uncommitted_batches_are_invisible_until_commit(store, ids):
    writer = EmbeddingWriter(store, "dino", checkpoint_sha256=CKPT_A, preprocess_sha256=PRE).open()
    writer.write_batch(ids[:10], np.ones((10, 4)))
    assert committed_rows(store, "dino") == 0
    assert writer.commit() == 1
    writer._lock.release()
    assert committed_rows(store, "dino") == 10


def test_exception_inside_writer_leaves_nothing_visible(store, ids):
    with pytest.raises(RuntimeError, match="boom"):
        with EmbeddingWriter(store, "dino", checkpoint_sha256=CKPT_A, preprocess_sha256=PRE) as writer:
            writer.write_batch(ids[:10], np.ones((10, 4)))
            raise RuntimeError("boom")
    assert committed_rows(store, "dino") == 0
    # ...and the next run resumes from the staged batch.
    with EmbeddingWriter(store, "dino", checkpoint_sha256=CKPT_A, preprocess_sha256=PRE) as writer:
        assert set(ids[:10]) <= writer.done_ids()
        writer.write_batch(ids, np.ones((len(ids), 4)))
    assert committed_rows(store, "dino") == len(ids)


KILLED_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    from neurofeat.store import EmbeddingWriter, Store
    store = Store.open(sys.argv[1])
    ids = [f"P{i:03d}" for i in range(60)]
    writer = EmbeddingWriter(store, "dino", checkpoint_sha256="a" * 64, preprocess_sha256="p" * 64).open()
    writer.write_batch(ids[:25], np.full((25, 4), 1.0))
    writer.write_batch(ids[25:40], np.full((15, 4), 1.0))
    os.kill(os.getpid(), signal.SIGKILL)   # dies between write and commit
    """
)


def test_kill_between_write_and_commit_then_rerun_completes(store, ids):
    process = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(store.root)], capture_output=True)
    assert process.returncode == -signal.SIGKILL
    reopened = Store.open(store.root)
    assert committed_rows(reopened, "dino") == 0  # nothing visible
    with EmbeddingWriter(reopened, "dino", checkpoint_sha256=CKPT_A, preprocess_sha256=PRE) as writer:
        todo = [p for p in ids if p not in writer.done_ids()]
        assert todo == ids[40:]
        writer.write_batch(todo, np.full((len(todo), 4), 1.0))
    counts = connect(reopened).sql(
        "SELECT count(*), count(DISTINCT patient_id) FROM embeddings WHERE backbone = 'dino'"
    ).fetchall()[0]
    assert counts == (len(ids), len(ids))


def test_second_checkpoint_refused_unless_replace(store, ids):
    append_embeddings(store, "dino", ids, np.ones((len(ids), 4)), checkpoint_sha256=CKPT_A, preprocess_sha256=PRE)
    with pytest.raises(CheckpointMismatchError, match="pass replace=True"):
        append_embeddings(store, "dino", ids, np.ones((len(ids), 4)), checkpoint_sha256=CKPT_B, preprocess_sha256=PRE)
    assert committed_rows(store, "dino") == len(ids)
    append_embeddings(
        store, "dino", ids[:5], np.full((5, 6), 2.0), checkpoint_sha256=CKPT_B, preprocess_sha256=PRE, replace=True
    )
    rows = connect(store).sql(
        "SELECT DISTINCT checkpoint_sha256, len(embedding) FROM embeddings WHERE backbone = 'dino'"
    ).fetchall()
    assert rows == [(CKPT_B, 6)]
    assert committed_rows(store, "dino") == 5


def test_replace_swaps_every_perturbation(store, ids):
    for label in ("none", "gibbs-0.2"):
        append_embeddings(
            store, "dino", ids, np.ones((len(ids), 4)), checkpoint_sha256=CKPT_A, preprocess_sha256=PRE, perturbation=label
        )
    append_embeddings(store, "dino", ids, np.ones((len(ids), 4)), checkpoint_sha256=CKPT_B, preprocess_sha256=PRE, replace=True)
    assert store.perturbations("dino") == ["none"]


@pytest.mark.parametrize(
    ("batch_ids", "matrix", "message"),
    [
        (["P000", "P001"], np.ones((3, 4)), r"shape \(n_patients, dim\)"),
        (["P000", "P001"], np.array([[1.0, np.nan, 0, 0], [0, 0, 0, 0]]), "patient 'P000' contains NaN"),
        (["P000", "P000"], np.ones((2, 4)), "appears twice"),
        (["P000", "ZZZ-9"], np.ones((2, 4)), "patient 'ZZZ-9' is not registered"),
    ],
)
def test_bad_batches_are_refused_with_the_patient_named(store, batch_ids, matrix, message):
    with pytest.raises(StoreError, match=message):
        append_embeddings(store, "dino", batch_ids, matrix, checkpoint_sha256=CKPT_A, preprocess_sha256=PRE)
    assert committed_rows(store, "dino") == 0


def test_dimension_must_match_the_backbone(store, ids):
    append_embeddings(store, "dino", ids[:5], np.ones((5, 4)), checkpoint_sha256=CKPT_A, preprocess_sha256=PRE)
    with pytest.raises(StoreError, match="has 4-d embeddings"):
        append_embeddings(store, "dino", ids[5:9], np.ones((4, 8)), checkpoint_sha256=CKPT_A, preprocess_sha256=PRE)


def test_bad_backbone_name(store):
    with pytest.raises(StoreError, match="not allowed"):
        EmbeddingWriter(store, "../evil", checkpoint_sha256=CKPT_A, preprocess_sha256=PRE)


def test_concurrent_writer_of_the_same_backbone_is_refused(store, ids):
    with EmbeddingWriter(store, "dino", checkpoint_sha256=CKPT_A, preprocess_sha256=PRE):
        with pytest.raises(StoreLockedError, match="already running"):
            EmbeddingWriter(store, "dino", checkpoint_sha256=CKPT_A, preprocess_sha256=PRE).open()
        # another backbone is fine
        EmbeddingWriter(store, "mae", checkpoint_sha256=CKPT_A, preprocess_sha256=PRE).open()._lock.release()


def test_a_writer_waits_out_a_recovery_probing_its_lock(store, ids):
    """Every Store.open's recovery takes a free backbone lock for a moment to learn
    whether its writer died; a writer starting in that moment waits it out instead of
    failing with "already running"."""
    import threading

    probe = StoreLock(store.locks_dir / "embeddings-dino.lock", "recovery").acquire()
    threading.Timer(0.2, probe.release).start()
    writer = EmbeddingWriter(store, "dino", checkpoint_sha256=CKPT_A, preprocess_sha256=PRE).open()
    assert writer._lock.held and not probe.held
    writer.write_batch(ids[:3], np.ones((3, 4)))
    writer.commit()
    assert committed_rows(store, "dino") == 3


def test_failures_are_recorded(store, ids):
    with EmbeddingWriter(store, "dino", checkpoint_sha256=CKPT_A, preprocess_sha256=PRE) as writer:
        writer.write_batch(ids[1:], np.ones((len(ids) - 1, 4)))
        writer.record_failure(ids[0], "flair unreadable")
    rows = connect(store).sql("SELECT patient_id, backbone, reason FROM extract_failures").fetchall()
    assert rows == [(ids[0], "dino", "flair unreadable")]


def test_ranks_write_separately_and_rank0_commits_all(store, ids):
    kwargs = dict(checkpoint_sha256=CKPT_A, preprocess_sha256=PRE, world_size=2)
    rank1 = EmbeddingWriter(store, "dino", rank=1, **kwargs).open()
    rank1.write_batch(ids[1::2], np.ones((len(ids) // 2, 4)))
    assert rank1.commit() == 0
    rank0 = EmbeddingWriter(store, "dino", rank=0, **kwargs).open()
    rank0.write_batch(ids[0::2], np.ones((len(ids) // 2, 4)))
    assert rank0.commit() == 2
    rank0._lock.release()
    assert committed_rows(store, "dino") == len(ids)
    assert not list(store.staging_dir.glob("pending/**/*.parquet"))
