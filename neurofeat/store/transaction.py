"""All-or-nothing commits of several files into the store.

Files are first written complete under ``.staging/txn-<id>/`` (invisible to every
reader, since views only glob the table folders). The commit point is the atomic
creation of ``journal.json``, listing the renames to perform in order; the renames
follow. A process killed before the journal exists leaves only a staging folder that
the next :func:`recover` deletes; one killed after it is rolled forward by
:func:`recover`, so a commit either happens entirely or not at all.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from neurofeat.store.locks import StoreLock

__all__ = ["Transaction", "recover", "atomic_write_bytes", "write_parquet_atomic"]

STAGING = ".staging"


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


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
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
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if metadata:
        merged = dict(table.schema.metadata or {})
        merged.update(metadata)
        table = table.replace_schema_metadata(merged)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    pq.write_table(table, tmp, **kwargs)
    if fsync:
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
    os.replace(tmp, path)


class Transaction:
    """Stage files, then move them into the store in one commit.

    Use as a context manager: a clean exit commits, an exception aborts (deletes the
    staged files; nothing in the store changes).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.id = uuid.uuid4().hex[:12]
        self.dir = self.root / STAGING / f"txn-{self.id}"
        self._moves: list[tuple[str, str]] = []
        self._lock = StoreLock(self.dir.with_suffix(".lock"), f"transaction {self.id}")
        self._done = False

    def __enter__(self) -> "Transaction":
        # Lock first: recovery skips a transaction whose lock is held, so it never
        # sees this folder unlocked and takes it for a dead one.
        self._lock.acquire()
        try:
            self.dir.mkdir(parents=True, exist_ok=False)
        except BaseException:
            self._lock.release()
            self._lock.path.unlink(missing_ok=True)
            raise
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None and not self._done:
            self.commit()
        elif not self._done:
            self.abort()

    def stage_file(self, final: str) -> Path:
        """Return a path to write, which :meth:`commit` moves to ``root/final``."""
        staged = self.dir / f"f{len(self._moves):05d}-{Path(final).name}"
        self._moves.append((str(staged.relative_to(self.root)), final))
        return staged

    def write_parquet(self, table: pa.Table, final: str, metadata: dict[bytes, bytes] | None = None) -> None:
        write_parquet_atomic(table, self.stage_file(final), metadata)

    def move(self, source: str, final: str) -> None:
        """Also move an existing file or folder (relative to root) at commit."""
        self._moves.append((source, final))

    def commit(self) -> None:
        journal = {"moves": self._moves}
        atomic_write_bytes(self.dir / "journal.json", json.dumps(journal).encode())
        _apply(self.root, self._moves)
        shutil.rmtree(self.dir, ignore_errors=True)
        self._lock.release()
        self._lock.path.unlink(missing_ok=True)
        self._done = True

    def abort(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        self._lock.release()
        self._lock.path.unlink(missing_ok=True)
        self._done = True


def _apply(root: Path, moves: list[tuple[str, str]], start: int = 0) -> None:
    # All renames first, then one fsync per folder: a reader that lists the store
    # while a commit runs can see part of it only for the microseconds the renames
    # take (a killed commit is finished by the next Store.open, from the journal).
    touched: dict[Path, None] = {}
    for source, final in moves[start:]:
        src, dst = root / source, root / final
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
        touched[dst.parent] = None
    for folder in touched:
        _fsync_dir(folder)


def _first_pending(root: Path, moves: list[tuple[str, str]]) -> int:
    # Moves run in order, so the last one whose source is gone and whose target is
    # there marks how far a killed commit got (a folder swap reuses a path, hence
    # the backwards scan).
    for index in range(len(moves) - 1, -1, -1):
        source, final = moves[index]
        if not (root / source).exists() and (root / final).exists():
            return index + 1
    return 0


def recover(root: Path) -> int:
    """Finish or discard transactions left by killed processes; return how many.

    A transaction whose owner is still alive (its lock is held) is left alone.
    """
    staging = Path(root) / STAGING
    if not staging.is_dir():
        return 0
    count = 0
    for txn in sorted(staging.glob("txn-*")):
        if not txn.is_dir():
            continue
        lock = StoreLock(txn.with_suffix(".lock"), "recovery")
        if not lock.try_acquire():
            continue
        try:
            journal = txn / "journal.json"
            if journal.exists():
                moves = [tuple(m) for m in json.loads(journal.read_text())["moves"]]
                _apply(Path(root), moves, _first_pending(Path(root), moves))
            shutil.rmtree(txn, ignore_errors=True)
            count += 1
        finally:
            lock.release()
            lock.path.unlink(missing_ok=True)
    return count
