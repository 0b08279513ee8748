"""Multi-file commits: all or nothing, also across a crash."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from neurofeat.store import Store, StoreError, read_table, write_tables
from neurofeat.store.transaction import Transaction, recover


def test_open_missing_store_says_how_to_create(tmp_path):
    with pytest.raises(StoreError, match="no neurofeat store"):
        Store.open(tmp_path / "nope")


def test_create_refuses_a_non_empty_foreign_directory(tmp_path):
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(StoreError, match="not empty"):
        Store.open(tmp_path, create=True)


def test_create_opens_a_store_that_a_concurrent_create_finished_meanwhile(tmp_path, monkeypatch):
    """Two processes creating one store: the second saw no store.json, then finds the
    folder filled by the first (store.json and its tables). It opens that store; it
    does not call it someone else's folder (a race seen in the concurrency tests)."""
    from pathlib import Path

    root = tmp_path / "S"
    root.mkdir()
    iterdir = Path.iterdir

    def concurrent_create(self):
        if self == root.absolute() and not (root / "store.json").exists():
            (root / "store.json").write_text(json.dumps({"format_version": 1}))
            (root / "tables").mkdir()
        return iterdir(self)

    monkeypatch.setattr(Path, "iterdir", concurrent_create)
    store = Store.open(root, create=True)
    assert store.root == root.absolute()
    assert json.loads((root / "store.json").read_text()) == {"format_version": 1}


def test_store_json_records_version(tmp_path):
    store = Store.open(tmp_path / "s", create=True)
    info = json.loads((store.root / "store.json").read_text())
    assert info["format_version"] == 1 and "created_at" in info and "neurofeat_version" in info


def test_write_tables_is_all_or_nothing(store):
    before = read_table(store, "patients").num_rows
    bad = {
        "patients": pa.table({"patient_id": ["NEW1"], "site": ["siteA"]}),
        "clinical": pa.table({"patient_id": ["NEW1"], "idh1": ["not-a-bool"]}),
    }
    with pytest.raises(StoreError, match="column 'idh1'"):
        write_tables(store, bad)
    assert read_table(store, "patients").num_rows == before


def test_already_registered_patients_are_refused(store):
    with pytest.raises(StoreError, match="already registered"):
        write_tables(store, {"patients": pa.table({"patient_id": ["P001"], "site": ["siteA"]})})


def test_unknown_column_is_named(store):
    with pytest.raises(StoreError, match="unexpected column"):
        write_tables(store, {"patients": pa.table({"patient_id": ["X"], "site": ["s"], "colour": ["red"]})})


def test_crash_after_journal_is_rolled_forward(tmp_path):
    store = Store.open(tmp_path / "s", create=True)
    txn = Transaction(store.root).__enter__()
    txn.write_parquet(pa.table({"patient_id": ["A"], "site": ["x"]}), "patients/part-1.parquet")
    txn.write_parquet(pa.table({"patient_id": ["B"], "site": ["x"]}), "patients/part-2.parquet")
    # Simulate a crash after the commit point: journal written, first move done only.
    from neurofeat.store.transaction import _apply, atomic_write_bytes

    atomic_write_bytes(txn.dir / "journal.json", json.dumps({"moves": txn._moves}).encode())
    _apply(store.root, txn._moves[:1])
    txn._lock.release()  # the process "dies"
    assert recover(store.root) == 1
    assert sorted(read_table(store, "patients")["patient_id"].to_pylist()) == ["A", "B"]


def test_crash_before_journal_is_discarded(tmp_path):
    store = Store.open(tmp_path / "s", create=True)
    txn = Transaction(store.root).__enter__()
    txn.write_parquet(pa.table({"patient_id": ["A"], "site": ["x"]}), "patients/part-1.parquet")
    txn._lock.release()
    Store.open(store.root)  # opening recovers
    assert read_table(store, "patients").num_rows == 0
    assert not list(store.staging_dir.glob("txn-*"))


def test_live_transaction_is_left_alone_by_recovery(tmp_path):
    store = Store.open(tmp_path / "s", create=True)
    with Transaction(store.root) as txn:
        txn.write_parquet(pa.table({"patient_id": ["A"], "site": ["x"]}), "patients/part-1.parquet")
        assert recover(store.root) == 0
        assert txn.dir.exists()
    assert read_table(store, "patients").num_rows == 1


def test_recovery_never_sees_a_new_transaction_unlocked(tmp_path, monkeypatch):
    """The folder of a starting transaction appears only once its lock is held, so a
    concurrent Store.open (another rank, `neurofeat sql`) cannot delete it as dead."""
    import pathlib

    store = Store.open(tmp_path / "s", create=True)
    seen = []
    original = pathlib.Path.mkdir

    def mkdir_then_recover(self, *args, **kwargs):
        original(self, *args, **kwargs)
        if self.name.startswith("txn-"):
            seen.append((recover(store.root), self.exists()))

    monkeypatch.setattr(pathlib.Path, "mkdir", mkdir_then_recover)
    with Transaction(store.root) as txn:
        txn.write_parquet(pa.table({"patient_id": ["A"], "site": ["x"]}), "patients/part-1.parquet")
    assert seen and set(seen) == {(0, True)}
    assert read_table(store, "patients").num_rows == 1


def test_commit_renames_every_file_before_any_fsync(tmp_path, monkeypatch):
    """Readers listing the store mid-commit see a mix only while the renames run: no
    disk wait (fsync) between them."""
    import neurofeat.store.transaction as transaction

    store = Store.open(tmp_path / "s", create=True)
    calls = []
    real_replace, real_fsync = transaction.os.replace, transaction._fsync_dir
    monkeypatch.setattr(transaction.os, "replace", lambda a, b: (calls.append("rename"), real_replace(a, b))[1])
    monkeypatch.setattr(transaction, "_fsync_dir", lambda d: (calls.append("fsync"), real_fsync(d))[1])
    with Transaction(store.root) as txn:
        for k in range(3):
            txn.write_parquet(pa.table({"patient_id": [f"P{k}"], "site": ["x"]}), f"patients/part-{k}.parquet")
        calls.clear()
    assert calls[:2] == ["rename", "fsync"]  # the journal: the commit point, durable first
    moves = calls[2:]
    assert moves.count("rename") == 3 and moves.index("fsync") > max(i for i, c in enumerate(moves) if c == "rename")
    assert read_table(store, "patients").num_rows == 3
