"""All-or-nothing commits of several files into the store, and crash recovery.

Files are first written complete under ``.staging/txn-<id>/`` (invisible to every
reader, since views only glob the table folders). The commit point is the atomic
creation of ``journal.json``, which lists the renames to perform in order and the
files to delete after them. Then:

1. the renames, in order (a rename whose target already exists was done before);
2. the deletions (missing files were deleted before);
3. ``journal.json`` is deleted: the transaction is complete;
4. the staging folder and the lock file are removed.

A process killed before step 0 (no journal) leaves only a staging folder that the
next :func:`recover` deletes; one killed anywhere after it is rolled forward by
:func:`recover`, which repeats steps 1-4 and is itself safe to kill and repeat at any
point: every step checks what is already done. So a commit either happens entirely
or not at all. Every target of a rename is a fresh name (``part-<uuid>``, a folder
inside the staging folder) or was moved away by an earlier rename of the same
journal, which is what makes "target exists" mean "done".

:func:`recover` runs on every :meth:`Store.open`; ``neurofeat store recover`` runs
it alone and reports what it did.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from neurofeat.store.locks import PROBE_WAIT_S, StoreLock

__all__ = [
    "STORAGE_ERRNOS",
    "RecoveryReport",
    "SimulatedCrash",
    "Transaction",
    "atomic_write_bytes",
    "recover",
    "release_run_lock",
    "run_staging_lock",
    "write_parquet_atomic",
]

STAGING = ".staging"
JOURNAL = "journal.json"
# Leftovers of a run whose owner died are only removed once they are this old
# (seconds) when no lock tells whether their owner is alive.
_TMP_GRACE_S = 600.0
# A transaction or run that is starting creates its (empty) lock file, then locks it and
# writes its pid into it, then makes its folder. Recovery must not take the lock between
# the first two steps (it did, and the starter failed with "already running"): an empty
# lock file without its folder is only a leftover once it is this old (seconds).
_ORPHAN_LOCK_GRACE_S = 60.0
# OS errors that mean "the store (or disk) cannot take this write", not a bug.
STORAGE_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


class SimulatedCrash(BaseException):
    """Raised by a test's :data:`fault_hook` to stop a commit the way ``kill -9``
    would: nothing is cleaned up, only the lock is released (as the kernel does)."""


def fault_hook(step: str) -> None:
    """Called between the steps of a commit and of a recovery; a no-op.

    Tests replace it (``monkeypatch.setattr(transaction, "fault_hook", ...)``) to
    crash or pause at a chosen step (``"staged"``, before the commit point;
    ``"journal"``; ``"move 0"``...; ``"delete 0"``...; ``"done"``; ``"cleanup"``).
    """


def _step(name: str) -> None:
    fault_hook(name)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename.

    On failure (disk full, file size limit, read-only folder) the temporary file is
    removed and the error raised; ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def write_parquet_atomic(
    table: pa.Table,
    path: Path,
    metadata: dict[bytes, bytes] | None = None,
    fsync: bool = False,
    **kwargs: object,
) -> None:
    """Write ``table`` to ``path`` as Parquet, visible only once complete.

    The rename makes the file appear whole to readers and survives a killed process;
    ``fsync`` also makes it survive a power loss (slower: it waits for the disk).
    A failed write removes its temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if metadata:
        merged = dict(table.schema.metadata or {})
        merged.update(metadata)
        table = table.replace_schema_metadata(merged)
    tmp = _tmp_name(path)
    try:
        pq.write_table(table, tmp, **kwargs)
        if fsync:
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class Transaction:
    """Stage files, then move them into the store in one commit.

    Use as a context manager: a clean exit commits, an exception before the commit
    point aborts (deletes the staged files; nothing in the store changes). An error
    after the commit point (disk full during the renames) leaves the journal for
    :func:`recover` to finish, and is raised.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.id = uuid.uuid4().hex[:12]
        self.dir = self.root / STAGING / f"txn-{self.id}"
        self._moves: list[tuple[str, str]] = []
        self._deletes: list[str] = []
        self._lock = StoreLock(self.dir.with_suffix(".lock"), f"transaction {self.id}")
        self._done = False
        self._journalled = False

    def __enter__(self) -> Transaction:
        # Lock first: recovery skips a transaction whose lock is held, so it never
        # sees this folder unlocked and takes it for a dead one.
        self._lock.acquire(PROBE_WAIT_S)
        try:
            self.dir.mkdir(parents=True, exist_ok=False)
        except BaseException:
            self._lock.release()
            self._lock.path.unlink(missing_ok=True)
            raise
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if isinstance(exc, SimulatedCrash):
            self._lock.release()  # what the kernel does for a killed process
            return
        try:
            if exc_type is None and not self._done:
                self.commit()
            elif not self._done:
                self.abort()
        except SimulatedCrash:
            self._lock.release()
            raise

    def stage_file(self, final: str) -> Path:
        """Return a path to write, which :meth:`commit` moves to ``root/final``."""
        staged = self.dir / f"f{len(self._moves):05d}-{Path(final).name}"
        self._moves.append((str(staged.relative_to(self.root)), final))
        return staged

    def write_parquet(
        self, table: pa.Table, final: str, metadata: dict[bytes, bytes] | None = None, **kwargs: object
    ) -> None:
        write_parquet_atomic(table, self.stage_file(final), metadata, **kwargs)

    def move(self, source: str, final: str) -> None:
        """Also move an existing file or folder (relative to root) at commit.

        ``final`` must not exist when the commit starts, unless an earlier move of
        this transaction moves it away.
        """
        self._moves.append((source, final))

    def delete_after(self, path: str) -> None:
        """Delete a file or folder (relative to root) once every move is done."""
        self._deletes.append(path)

    def commit(self) -> None:
        _step("staged")
        journal = {"moves": self._moves, "deletes": self._deletes}
        atomic_write_bytes(self.dir / JOURNAL, json.dumps(journal).encode())
        self._journalled = True
        _step("journal")
        moves = [tuple(m) for m in self._moves]
        try:
            _roll_forward(self.root, self.dir, moves, self._deletes)
        except OSError:
            # Past the commit point the only way is forward: try once more (a disk
            # that was briefly full); else the journal stays for recovery to finish.
            try:
                _roll_forward(self.root, self.dir, moves, self._deletes)
            except OSError:
                self._lock.release()
                self._done = True
                raise
        self._lock.release()
        self._lock.path.unlink(missing_ok=True)
        self._done = True

    def abort(self) -> None:
        if self._journalled or (self.dir / JOURNAL).exists():
            # Past the commit point: finishing is the only way back to a consistent
            # store. Try once now; if that fails too, recovery finishes it later.
            try:
                _roll_forward(self.root, self.dir, [tuple(m) for m in self._moves], self._deletes)
            except OSError:
                pass
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        self._lock.release()
        if not self.dir.exists():
            self._lock.path.unlink(missing_ok=True)
        self._done = True


def _apply(root: Path, moves: Sequence[Sequence[str]], deletes: Sequence[str] = ()) -> None:
    """Do the renames then the deletions of a journal; each step skips what is done.

    All renames first, then one fsync per folder: a reader that lists the store while
    a commit runs sees part of it only for the microseconds the renames take.
    """
    touched: dict[Path, None] = {}
    for index, (source, final) in enumerate(moves):
        src, dst = root / source, root / final
        if os.path.lexists(dst):
            continue  # done by an earlier, interrupted attempt
        if not os.path.lexists(src):
            continue  # nothing to move (it never existed, or was moved and then moved on)
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
        touched[dst.parent] = None
        _step(f"move {index}")
    for folder in touched:
        _fsync_dir(folder)
    for index, relative in enumerate(deletes):
        path = root / relative
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        _step(f"delete {index}")


def _roll_forward(root: Path, txn_dir: Path, moves: Sequence[Sequence[str]], deletes: Sequence[str]) -> None:
    _apply(root, moves, deletes)
    # The journal goes first: from here on the folder holds only garbage (old
    # versions moved aside by a replace), which recovery deletes without looking.
    (txn_dir / JOURNAL).unlink(missing_ok=True)
    _fsync_dir(txn_dir)
    _step("done")
    shutil.rmtree(txn_dir, ignore_errors=True)
    _step("cleanup")


def run_staging_lock(staging: Path) -> StoreLock:
    """Hold the lock of an analysis run's staging folder (``.staging/run-<id>``) while it
    is written, so that recovery removes the folder of a killed run and never a live one.

    Release it with :func:`release_run_lock`.

    Raises
    ------
    StoreError
        If the store cannot be written (read-only, disk full), naming the path.
    """
    lock = StoreLock(staging.with_name(staging.name + ".lock"), f"writing analysis run {staging.name[4:]}")
    try:
        return lock.acquire(PROBE_WAIT_S)
    except OSError as error:
        from neurofeat.store.layout import storage_error

        raise storage_error(error, f"write analysis results into {staging.parent.parent}") from None


def release_run_lock(lock: StoreLock) -> None:
    lock.release()
    lock.path.unlink(missing_ok=True)


@dataclass
class RecoveryReport:
    """What :func:`recover` did."""

    rolled_forward: list[str] = field(default_factory=list)
    discarded: list[str] = field(default_factory=list)
    removed_leftovers: list[str] = field(default_factory=list)
    skipped_live: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def n_transactions(self) -> int:
        return len(self.rolled_forward) + len(self.discarded)

    def summary(self) -> str:
        if self.error:
            return f"recovery not possible: {self.error}"
        parts = [
            f"{len(self.rolled_forward)} interrupted commit(s) finished",
            f"{len(self.discarded)} uncommitted transaction(s) discarded",
            f"{len(self.removed_leftovers)} leftover(s) removed",
        ]
        if self.skipped_live:
            parts.append(f"{len(self.skipped_live)} in progress left alone")
        return ", ".join(parts)


def _dead(lock_path: Path) -> StoreLock | None:
    """The lock at ``lock_path`` if no live process holds it (now held by us)."""
    lock = StoreLock(lock_path, "recovery")
    return lock if lock.try_acquire() else None


def _release(lock: StoreLock, unlink: bool = True) -> None:
    lock.release()
    if unlink:
        lock.path.unlink(missing_ok=True)


def _old(path: Path, grace_s: float) -> bool:
    try:
        return time.time() - path.lstat().st_mtime > grace_s
    except OSError:
        return False


def _may_be_starting(lock_path: Path) -> bool:
    """Whether a folderless lock file may belong to a transaction or run that is starting:
    nobody has held it yet (it is empty) and it is young."""
    try:
        return lock_path.stat().st_size == 0 and not _old(lock_path, _ORPHAN_LOCK_GRACE_S)
    except OSError:
        return False


def recover(root: Path, report: RecoveryReport | None = None) -> int:
    """Finish or discard transactions left by killed processes; return how many.

    Also removes what killed processes leave besides transactions: analysis runs
    being assembled (``.staging/run-*`` whose lock is free), lock files of finished
    transactions, empty pending folders and temporary files. A transaction or run
    whose owner is still alive (its lock is held) is left alone. A store that cannot
    be written (read-only) is left as it is: readers never look into ``.staging``.
    """
    report = report if report is not None else RecoveryReport()
    staging = Path(root) / STAGING
    if not staging.is_dir():
        return 0
    try:
        _recover(Path(root), staging, report)
    except OSError as error:
        if error.errno not in STORAGE_ERRNOS:
            raise
        report.error = f"{error.filename or root}: {error.strerror}"
    return report.n_transactions


def _recover(root: Path, staging: Path, report: RecoveryReport) -> None:
    for txn in sorted(staging.glob("txn-*")):
        if not txn.is_dir():
            continue
        lock = _dead(txn.with_suffix(".lock"))
        if lock is None:
            report.skipped_live.append(txn.name)
            continue
        try:
            journal = txn / JOURNAL
            if journal.exists():
                entries = json.loads(journal.read_text())
                moves = [tuple(m) for m in entries["moves"]]
                _roll_forward(root, txn, moves, entries.get("deletes", []))
                report.rolled_forward.append(txn.name)
            else:
                shutil.rmtree(txn, ignore_errors=True)
                report.discarded.append(txn.name)
        finally:
            _release(lock, unlink=not txn.exists())
    # Lock files whose transaction folder is gone (killed between the two removals), but
    # not those of transactions that have not made their folder yet.
    for lock_path in sorted(staging.glob("txn-*.lock")):
        if lock_path.with_suffix("").exists() or _may_be_starting(lock_path):
            continue
        lock = _dead(lock_path)
        if lock is not None:
            _release(lock)
            report.removed_leftovers.append(lock_path.name)
    # Analysis runs assembled by a process that died before renaming them into runs/.
    for run in sorted(staging.glob("run-*")):
        if run.suffix == ".lock" or not run.is_dir():
            continue
        lock_path = run.with_name(run.name + ".lock")
        if lock_path.exists():
            lock = _dead(lock_path)
            if lock is None:
                report.skipped_live.append(run.name)
                continue
            shutil.rmtree(run, ignore_errors=True)
            _release(lock)
        elif _old(run, _TMP_GRACE_S):  # written by a version that took no lock
            shutil.rmtree(run, ignore_errors=True)
        else:
            continue
        report.removed_leftovers.append(run.name)
    for lock_path in sorted(staging.glob("run-*.lock")):
        if not lock_path.with_name(lock_path.name[: -len(".lock")]).exists() and not _may_be_starting(lock_path):
            lock = _dead(lock_path)
            if lock is not None:
                _release(lock)
                report.removed_leftovers.append(lock_path.name)
    # Empty folders of pending embeddings (a run that staged nothing, or committed).
    # A writer holds its backbone's lock while it stages files there.
    pending = staging / "pending"
    if pending.is_dir():
        for backbone_dir in sorted(pending.glob("backbone=*")):
            lock = _dead(staging / "locks" / f"embeddings-{backbone_dir.name.split('=', 1)[1]}.lock")
            if lock is None:
                continue
            try:
                for folder in [*sorted(backbone_dir.glob("perturbation=*")), backbone_dir]:
                    try:
                        folder.rmdir()  # only if empty
                        report.removed_leftovers.append(str(folder.relative_to(staging)))
                    except OSError:
                        pass
            finally:
                _release(lock, unlink=False)
    # Temporary files of writes that failed or were killed (a live write is younger).
    for tmp in sorted(root.glob(".store.json.*.tmp")) + sorted(staging.glob("pending/*/*/.*.tmp")):
        if _old(tmp, _TMP_GRACE_S):
            tmp.unlink(missing_ok=True)
            report.removed_leftovers.append(str(tmp.relative_to(root)))
