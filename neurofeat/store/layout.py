"""Where things live in a store directory, and opening/creating one."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import neurofeat
from neurofeat.store.transaction import STAGING, atomic_write_bytes, recover

__all__ = ["Store", "StoreError", "resolve_store_path", "FORMAT_VERSION", "DEFAULT_STORE"]

FORMAT_VERSION = 1
DEFAULT_STORE = "neurofeat-store"


class StoreError(RuntimeError):
    """The store is missing, malformed, or a request on it cannot be served."""


def resolve_store_path(path: str | os.PathLike | None = None) -> Path:
    """``path`` if given, else ``$NEUROFEAT_STORE``, else ``./neurofeat-store``."""
    if path is not None and str(path) != "":
        return Path(path)
    return Path(os.environ.get("NEUROFEAT_STORE") or DEFAULT_STORE)


@dataclass(frozen=True)
class Store:
    """A neurofeat store: a directory of Hive-partitioned Parquet (DESIGN.md section 3).

    Use :meth:`open` rather than the constructor.
    """

    root: Path

    @classmethod
    def open(cls, path: str | os.PathLike | None = None, create: bool = False) -> "Store":
        """Open the store at ``path`` (see :func:`resolve_store_path`).

        Parameters
        ----------
        path : str or PathLike, optional
            The store directory.
        create : bool
            Create an empty store if none exists there.

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
            if root.exists() and any(p for p in root.iterdir() if p.name != STAGING):
                raise StoreError(
                    f"{root} exists, is not empty and is not a neurofeat store (no store.json); "
                    "choose an empty or new directory."
                )
            root.mkdir(parents=True, exist_ok=True)
            info = {
                "format_version": FORMAT_VERSION,
                "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "neurofeat_version": neurofeat.__version__,
            }
            atomic_write_bytes(marker, json.dumps(info, indent=2).encode())
        else:
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
        recover(root)
        return store

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
