"""Where things live in a store directory, and opening/creating one."""

from __future__ import annotations

import errno
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import neurofeat
from neurofeat.store.transaction import (
    STAGING,
    STORAGE_ERRNOS,
    RecoveryReport,
    atomic_write_bytes,
)
from neurofeat.store.transaction import recover as _recover

if TYPE_CHECKING:
    from neurofeat.store.locks import StoreLock

__all__ = ["DEFAULT_STORE", "FORMAT_VERSION", "Store", "StoreError", "refuse_foreign_folder",
           "resolve_store_path", "storage_error"]

FORMAT_VERSION = 1
DEFAULT_STORE = "neurofeat-store"


class StoreError(RuntimeError):
    """The store is missing, malformed, or a request on it cannot be served."""


def storage_error(error: OSError, doing: str) -> StoreError | OSError:
    """A :class:`StoreError` naming the file and the fix for an OS error that means the
    store cannot be written (read-only, permission, disk full, file size limit); any
    other OS error is returned unchanged (re-raise it)."""
    if error.errno not in STORAGE_ERRNOS:
        return error
    where = error.filename or "the store"
    if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        fix = "free disk space (or raise the file size limit, `ulimit -f`) and run the command again"
    else:
        fix = "make the store writable for this user (or pass --store to a writable copy) and run it again"
    return StoreError(
        f"could not {doing}: {where}: {error.strerror or error}. Nothing was committed; {fix}."
    )


def resolve_store_path(path: str | os.PathLike | None = None) -> Path:
    """``path`` if given, else ``$NEUROFEAT_STORE``, else ``./neurofeat-store``."""
    if path is not None and str(path) != "":
        return Path(path)
    return Path(os.environ.get("NEUROFEAT_STORE") or DEFAULT_STORE)


def refuse_foreign_folder(root: Path) -> None:
    """Raise :class:`StoreError` if ``root`` can be neither opened nor created as a store.

    A file is refused, and so is a folder without ``store.json`` that holds anything but
    hidden entries (ours: .staging, the temporary file of a store.json whose first write
    failed): it is someone else's. ``store.json`` is looked for again before refusing: a
    concurrent create may have written it (and then its first tables) after the caller
    found none, and the folder is then that store.
    """
    if root.exists() and not root.is_dir():
        raise StoreError(f"{root} is a file, not a folder; pass a folder for the store.")
    if root.exists() and any(p for p in root.iterdir() if not p.name.startswith(".")):
        if (root / "store.json").exists():
            return
        raise StoreError(
            f"{root} exists, is not empty and is not a neurofeat store (no store.json); "
            "choose an empty or new folder."
        )


def _create_marker(root: Path, marker: Path) -> None:
    """Make ``root`` a new, empty store by writing its ``store.json`` (unless a concurrent
    create has just done so; see :func:`refuse_foreign_folder`)."""
    refuse_foreign_folder(root)
    if marker.exists():
        return
    info = {
        "format_version": FORMAT_VERSION,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "neurofeat_version": neurofeat.__version__,
    }
    try:
        root.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(marker, json.dumps(info, indent=2).encode())
    except OSError as error:
        raise storage_error(error, f"create the store at {root}") from None


@dataclass(frozen=True)
class Store:
    """A neurofeat store: a directory of Hive-partitioned Parquet (DESIGN.md section 3).

    Use :meth:`open` rather than the constructor.
    """

    root: Path

    @classmethod
    def open(cls, path: str | os.PathLike | None = None, create: bool = False, recover: bool = True) -> Store:
        """Open the store at ``path`` (see :func:`resolve_store_path`).

        Parameters
        ----------
        path : str or PathLike, optional
            The store directory.
        create : bool
            Create an empty store if none exists there.
        recover : bool
            Finish commits left half done by killed processes and remove their
            leftovers first (:meth:`recover`); skipped if the store is read-only.

        Raises
        ------
        StoreError
            If there is no store at ``path`` and ``create`` is false, or the directory
            exists but is not a neurofeat store.
        """
        root = resolve_store_path(path).absolute()
        marker = root / "store.json"
        if not marker.exists():
            if not create:
                raise StoreError(
                    f"no neurofeat store at {root} (no store.json). Create one with "
                    f"`neurofeat ingest --store {root} ...`, or pass --store / set NEUROFEAT_STORE."
                )
            _create_marker(root, marker)
        try:
            info = json.loads(marker.read_text())
        except ValueError as error:
            raise StoreError(f"{marker} is not valid JSON ({error}); the store is damaged.") from None
        if info.get("format_version", 0) > FORMAT_VERSION:
            raise StoreError(
                f"{root} has store format {info['format_version']}, newer than this neurofeat "
                f"({neurofeat.__version__}) reads ({FORMAT_VERSION}); upgrade neurofeat."
            )
        store = cls(root)
        if recover:
            _recover(root)
        return store

    def recover(self) -> RecoveryReport:
        """Finish interrupted commits and remove leftovers now (``neurofeat store recover``)."""
        report = RecoveryReport()
        _recover(self.root, report)
        return report

    def write_lock(self, what: str = "a write") -> StoreLock:
        """The store-wide lock that serialises check-then-commit writes of the
        metadata tables (ingest; not yet acquired)."""
        from neurofeat.store.locks import StoreLock

        return StoreLock(self.locks_dir / "tables.lock", f"{what} into {self.root}")

    @property
    def info(self) -> dict:
        """The contents of ``store.json``."""
        return json.loads((self.root / "store.json").read_text())

    def table_dir(self, name: str) -> Path:
        return self.root / name

    @property
    def embeddings_dir(self) -> Path:
        return self.root / "embeddings"

    def backbone_dir(self, backbone: str) -> Path:
        return self.embeddings_dir / f"backbone={backbone}"

    def partition_dir(self, backbone: str, perturbation: str = "none") -> Path:
        return self.backbone_dir(backbone) / f"perturbation={perturbation}"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def staging_dir(self) -> Path:
        return self.root / STAGING

    @property
    def locks_dir(self) -> Path:
        return self.root / STAGING / "locks"

    def backbones(self) -> list[str]:
        """Backbone names with committed embeddings, sorted."""
        if not self.embeddings_dir.is_dir():
            return []
        return sorted(
            p.name.split("=", 1)[1]
            for p in self.embeddings_dir.glob("backbone=*")
            if p.is_dir() and any(p.glob("perturbation=*/*.parquet"))
        )

    def perturbations(self, backbone: str) -> list[str]:
        return sorted(
            p.name.split("=", 1)[1]
            for p in self.backbone_dir(backbone).glob("perturbation=*")
            if any(p.glob("*.parquet"))
        )
