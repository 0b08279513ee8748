"""A crash between any two steps of any commit, and of the recovery that follows, leaves a
store that opens, validates and holds each commit entirely or not at all.

Every transaction kind (ingest, store import, extract append, extract --replace) is run
once to list its steps, then again once per step with a crash injected there
(``transaction.fault_hook`` raises :class:`SimulatedCrash`, which skips every clean-up,
as ``kill -9`` would). The store is then opened (which recovers); recovery itself is
crashed at each of its own steps and run again. Plain readers (pyarrow over the
folders, no neurofeat) are checked right after the crash, before any recovery.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from reliability_helpers import (
    CKPT_A,
    KINDS,
    N_BASE,
    PRE,
    base_store,
    committed,
    do_append,
    do_import,
    do_ingest,
    do_replace,
    embeddings,
    patient_ids,
    plain_count,
    staging_entries,
)

from neurofeat.store import EmbeddingWriter, Store, read_table, transaction
from neurofeat.store.transaction import SimulatedCrash
from neurofeat.store.validate import validate_store

N = N_BASE
_ingest, _import, _append, _replace, _committed = do_ingest, do_import, do_append, do_replace, committed


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("template") / "store"
    base_store(root)
    return root


def _steps(kind: str, template: Path, work: Path, monkeypatch) -> list[str]:
    seen: list[str] = []
    monkeypatch.setattr(transaction, "fault_hook", seen.append)
    root = work / "count"
    shutil.copytree(template, root)
    KINDS[kind](root, work)
    monkeypatch.setattr(transaction, "fault_hook", lambda step: None)
    return seen


def _crash_at(index: int) -> Callable[[str], None]:
    calls = iter(range(10**6))

    def hook(step: str) -> None:
        if next(calls) == index:
            raise SimulatedCrash(step)

    return hook


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_crash_at_every_step_recovers(kind, template, tmp_path, monkeypatch):
    steps = _steps(kind, template, tmp_path, monkeypatch)
    assert steps[0] == "staged" and "journal" in steps and steps[-1] == "cleanup"
    outcomes = []
    for index, step in enumerate(steps):
        root = tmp_path / f"crash-{index}"
        shutil.copytree(template, root)
        monkeypatch.setattr(transaction, "fault_hook", _crash_at(index))
        with pytest.raises(SimulatedCrash):
            KINDS[kind](root, tmp_path)
        monkeypatch.setattr(transaction, "fault_hook", lambda step: None)
        before_recovery = _committed(kind, root)
        past_commit_point = index >= steps.index("journal")
        if kind == "import":
            # appends publish with one rename: a plain reader never sees part of one
            assert before_recovery is not None, (kind, step)
        if kind == "append":
            # the embeddings are one file, renamed last: whoever sees them sees the
            # failures recorded with them (extract_failures is renamed one step earlier)
            rows = plain_count(root, "embeddings", backbone="dino")
            assert rows in (0, 11) and (rows == 0 or plain_count(root, "extract_failures") == 1), step
        if kind == "ingest":
            # patients are published last: a reader starting from patients sees all or nothing
            new_patients = plain_count(root, "patients") - N
            assert new_patients in (0, 4) and (new_patients == 0 or plain_count(root, "clinical") == N + 4)

        # Recovery, itself crashed at each of its steps, then run to the end (from the
        # commit point, where it has every step to redo).
        recovery_steps: list[str] = []
        if step == "journal":
            probe = tmp_path / f"probe-{index}"
            shutil.copytree(root, probe)
            monkeypatch.setattr(transaction, "fault_hook", recovery_steps.append)
            Store.open(probe)
            monkeypatch.setattr(transaction, "fault_hook", lambda step: None)
            assert len(recovery_steps) >= 3
        for r_index in range(len(recovery_steps)):
            again = tmp_path / f"again-{index}-{r_index}"
            shutil.copytree(root, again)
            monkeypatch.setattr(transaction, "fault_hook", _crash_at(r_index))
            with pytest.raises(SimulatedCrash):
                Store.open(again)
            monkeypatch.setattr(transaction, "fault_hook", lambda step: None)
            Store.open(again)
            assert _committed(kind, again) is past_commit_point, (kind, step, recovery_steps[r_index])
            shutil.rmtree(again)

        store = Store.open(root)
        assert _committed(kind, root) is past_commit_point, (kind, step)
        report = validate_store(store)
        assert report.ok, (kind, step, report.to_frame().to_string())
        assert not [e for e in staging_entries(root) if not e.startswith("pending")], (kind, step)
        outcomes.append(past_commit_point)
        # A rerun completes the work and leaves one row per key.
        KINDS[kind](root, tmp_path) if not past_commit_point else None
        assert _committed(kind, root) is True, (kind, step)
        assert validate_store(Store.open(root)).ok
        shutil.rmtree(root)
    assert False in outcomes and True in outcomes


def test_a_killed_append_resumes_from_its_pending_parts(template, tmp_path, monkeypatch):
    root = tmp_path / "s"
    shutil.copytree(template, root)
    monkeypatch.setattr(transaction, "fault_hook", _crash_at(0))  # "staged": before the journal
    with pytest.raises(SimulatedCrash):
        _append(root, tmp_path)
    monkeypatch.setattr(transaction, "fault_hook", lambda step: None)
    store = Store.open(root)
    writer = EmbeddingWriter(store, "dino", checkpoint_sha256=CKPT_A, preprocess_sha256=PRE)
    assert len(writer.done_ids()) == 11  # both batches survived as pending parts
    writer.write_batch(patient_ids(N), embeddings(N, 9))  # only the 12th is new
    writer.commit()
    writer._lock.release()
    (path,) = store.partition_dir("dino").glob("*.parquet")
    assert pq.read_table(path).num_rows == N
    assert not list(store.staging_dir.glob("pending/**/*.parquet"))


def test_a_killed_analysis_run_is_removed_and_a_live_one_kept(template, tmp_path):
    root = tmp_path / "s"
    shutil.copytree(template, root)
    store = Store.open(root)
    dead = store.staging_dir / "run-probe-dead"
    dead.mkdir(parents=True)
    (dead / "metrics.parquet").write_bytes(b"partial")
    transaction.run_staging_lock(dead).release()  # its process died: the lock file stays, free
    live = store.staging_dir / "run-probe-live"
    lock = transaction.run_staging_lock(live)
    live.mkdir()
    orphan = store.staging_dir / "txn-0123456789ab.lock"
    orphan.write_text('{"pid": 1}')  # held once: its transaction finished or died
    empty = store.staging_dir / "pending" / "backbone=x" / "perturbation=none"
    empty.mkdir(parents=True)
    report = Store.open(root, recover=False).recover()
    assert not dead.exists() and live.exists() and not orphan.exists() and not empty.parent.exists()
    assert "run-probe-dead" in report.removed_leftovers and "run-probe-live" in report.skipped_live
    problems = validate_store(store).to_frame()
    assert list(problems["where"]) == [str(live)] and "in progress" in problems["message"][0]
    transaction.release_run_lock(lock)
    assert read_table(store, "patients").num_rows == N


def test_an_error_after_the_commit_point_finishes_the_commit(template, tmp_path, monkeypatch):
    """A disk error during the renames used to delete the staged files with some already
    moved: the commit was left half done for good. Now it is rolled forward."""
    root = tmp_path / "s"
    shutil.copytree(template, root)
    failed = []

    def flaky(step: str) -> None:
        if step == "move 0" and not failed:
            failed.append(step)
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(transaction, "fault_hook", flaky)
    _ingest(root, tmp_path)
    assert failed and _committed("ingest", root) is True
    assert validate_store(Store.open(root)).ok


def test_a_replace_killed_after_moving_the_old_backbone_and_creating_the_new_folder(template, tmp_path, monkeypatch):
    """Audit item 3: the old recovery took the fresh, empty backbone folder for the one
    still to move aside, re-ran that rename ("Directory not empty") and every command
    crashed on open. Now a rename whose target exists counts as done."""
    import json

    root = tmp_path / "s"
    shutil.copytree(template, root)
    monkeypatch.setattr(transaction, "fault_hook", _crash_at(1))  # "journal": moves not started
    with pytest.raises(SimulatedCrash):
        _replace(root, tmp_path)
    monkeypatch.setattr(transaction, "fault_hook", lambda step: None)
    (journal,) = root.glob(".staging/txn-*/journal.json")
    moves = json.loads(journal.read_text())["moves"]
    (root / moves[0][0]).rename(root / moves[0][1])  # the old backbone moved aside...
    (root / moves[1][1]).parent.mkdir(parents=True)  # ...and the new partition folder made: killed here
    store = Store.open(root)
    assert _committed("replace", root) is True and validate_store(store).ok


def test_recovery_leaves_alone_the_lock_file_of_a_transaction_that_is_starting(template, tmp_path):
    """A transaction creates its (empty) lock file, then locks it, then makes its folder.
    A recovery that ran between the first two steps took the free, folderless lock file
    for a leftover, locked it and deleted it, and the starting transaction failed with
    "already running" (a flaky concurrency test showed it). An empty, young lock file
    without its folder is now left alone; an hour-old one is a leftover."""
    root = tmp_path / "s"
    shutil.copytree(template, root)
    store = Store.open(root)
    starting = [store.staging_dir / "txn-aaaaaaaaaaaa.lock", store.staging_dir / "run-probe-starting.lock"]
    for path in starting:
        path.write_text("")  # created, not yet locked
    report = Store.open(root, recover=False).recover()
    assert all(path.exists() for path in starting) and report.removed_leftovers == []
    for path in starting:
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    report = Store.open(root, recover=False).recover()
    assert not any(path.exists() for path in starting)
    assert sorted(report.removed_leftovers) == sorted(path.name for path in starting)
