"""Writing embeddings: streaming, resumable, atomic, one checkpoint per backbone.

Rows of one backbone (and perturbation) are written batch by batch as complete
Parquet files into a pending area under ``.staging/pending/`` that no reader looks
at. :meth:`EmbeddingWriter.commit` moves them all into
``embeddings/backbone=<b>/perturbation=<p>/`` in one transaction. A run that dies
leaves its pending files; the next writer for the same backbone, perturbation and
checkpoint counts them as done (:meth:`EmbeddingWriter.done_ids`), so a rerun
resumes instead of starting over.
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import neurofeat
from neurofeat.store.layout import Store, StoreError, storage_error
from neurofeat.store.locks import PROBE_WAIT_S, StoreLock
from neurofeat.store.schema import EXTRACT_FAILURES_SCHEMA, embeddings_schema
from neurofeat.store.tables import read_table
from neurofeat.store.transaction import Transaction, write_parquet_atomic

__all__ = [
    "CheckpointMismatchError",
    "EmbeddingWriter",
    "append_embeddings",
    "backbone_provenance",
    "identity_clash",
    "new_run_id",
]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
_META_KEY = b"neurofeat"
# Dictionary-encode and keep statistics for the small string columns only; the
# embedding column is incompressible floats where both only cost time.
_DICTIONARY_COLUMNS = ["patient_id", "site", "checkpoint_sha256", "preprocess_sha256", "neurofeat_version", "run_id"]
_STATISTICS_COLUMNS = ["patient_id", "site"]
# Float embeddings do not compress (snappy only costs time); metadata columns do.
_COMPRESSION = {"embedding": "none", **{name: "snappy" for name in _DICTIONARY_COLUMNS}}
# Small row groups: site filters prune them by statistics, and readers decode them in
# parallel (8 MB each at 2048-d).
_ROW_GROUP_ROWS = 1024


class CheckpointMismatchError(StoreError):
    """A backbone name already holds embeddings of another encoder (checkpoint,
    preprocessing or architecture)."""


def sql_name(backbone: str) -> str:
    """``backbone`` as a SQL identifier: every non-word character becomes ``_``."""
    return re.sub(r"\W", "_", backbone)


def new_run_id(command: str) -> str:
    """A sortable, unique run id: ``<command>-<UTC timestamp>-<6 hex>``."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{command}-{stamp}-{uuid.uuid4().hex[:6]}"


def _check_name(kind: str, value: str) -> str:
    if not _NAME.match(value or ""):
        raise StoreError(
            f"{kind} name {value!r} is not allowed: use letters, digits and _ . + - "
            "(it becomes a folder name in the store)"
        )
    return value


def _file_provenance(path: Path) -> dict:
    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta.get(_META_KEY, b"{}"))


def backbone_provenance(store: Store, backbone: str) -> list[dict]:
    """Provenance dicts (checkpoint, preprocessing, dim, ...) of each committed file."""
    return [_file_provenance(p) for p in sorted(store.backbone_dir(backbone).glob("perturbation=*/*.parquet"))]


def architecture_json(architecture: Mapping[str, Any] | None) -> str | None:
    """Canonical JSON of an encoder's architecture (``None`` when not given)."""
    return None if architecture is None else json.dumps(dict(architecture), sort_keys=True, default=str)


def identity_clash(
    provenance: Sequence[Mapping[str, Any]],
    checkpoint_sha256: str,
    preprocess_sha256: str,
    architecture: Mapping[str, Any] | str | None = None,
    *,
    unknown_is_clash: bool = False,
) -> str:
    """How stored files differ from an encoder about to write; ``""`` when they match.

    One backbone name holds the embeddings of one encoder: the same checkpoint bytes,
    built into the same network (*architecture*: a mapping or its
    :func:`architecture_json`, e.g. an adapter's ``conv1_stride``), fed by the same
    preprocessing. Files written before the
    architecture was recorded match any architecture (so that their runs resume),
    unless *unknown_is_clash* (asked to replace: they may hold another one).
    """
    if architecture is not None and not isinstance(architecture, str):
        architecture = architecture_json(architecture)
    parts = []
    stored = sorted({str(p.get("checkpoint_sha256")) for p in provenance} - {checkpoint_sha256})
    if stored:
        parts.append(f"checkpoint {stored[0][:12]}…, not {checkpoint_sha256[:12]}…")
    stored = sorted({str(p.get("preprocess_sha256")) for p in provenance} - {preprocess_sha256})
    if stored:
        parts.append(f"preprocessing {stored[0][:12]}…, not {preprocess_sha256[:12]}…")
    if architecture is not None:
        stored = sorted({p["architecture"] for p in provenance if p.get("architecture") is not None} - {architecture})
        if stored:
            parts.append(f"architecture {stored[0]}, not {architecture}")
        elif unknown_is_clash and any(p.get("architecture") is None for p in provenance):
            parts.append(f"architecture not recorded by the neurofeat version that wrote them, not {architecture}")
    return "; ".join(parts)


class EmbeddingWriter:
    """Append one backbone's embeddings to the store, batch by batch.

    Parameters
    ----------
    store : Store
    backbone : str
        Backbone name (``dino``, ``dino_dro``, ``radiomics``...).
    checkpoint_sha256, preprocess_sha256 : str
        Provenance stored on every row and in each file's key-value metadata.
    architecture : mapping, optional
        How the checkpoint was built into a network (an adapter's options, the
        encoder config), stored in each file's key-value metadata: the same weights
        built with another ``conv1_stride`` are another encoder.
    perturbation : str
        ``'none'`` or a label such as ``'gibbs-0.2'``.
    run_id : str, optional
        Defaults to a new ``extract-...`` id.
    replace : bool
        Allow an encoder (checkpoint, preprocessing or architecture) different from
        the one already stored under ``backbone``; the commit then swaps the whole
        backbone (every perturbation) atomically.
    seed : int, optional
        The seed of the producing run (provenance).
    rank, world_size : int
        Under torchrun every rank writes its own pending files; only rank 0 holds the
        lock and commits (call :meth:`commit` on rank 0 after a barrier).

    Raises
    ------
    CheckpointMismatchError
        If ``backbone`` already holds another checkpoint, preprocessing or
        architecture and ``replace`` is false.
    neurofeat.store.StoreLockedError
        If another process is writing this backbone into this store.
    """

    def __init__(
        self,
        store: Store,
        backbone: str,
        *,
        checkpoint_sha256: str,
        preprocess_sha256: str,
        perturbation: str = "none",
        run_id: str | None = None,
        replace: bool = False,
        seed: int | None = None,
        rank: int = 0,
        world_size: int = 1,
        architecture: Mapping[str, Any] | None = None,
    ) -> None:
        self.store = store
        self.backbone = _check_name("backbone", backbone)
        self.perturbation = _check_name("perturbation", perturbation)
        if not checkpoint_sha256 or not preprocess_sha256:
            raise StoreError("checkpoint_sha256 and preprocess_sha256 are required (provenance of every row)")
        self.checkpoint_sha256 = checkpoint_sha256
        self.preprocess_sha256 = preprocess_sha256
        self.architecture = architecture_json(architecture)
        self.run_id = run_id or new_run_id("extract")
        self.replace = replace
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.pending_dir = (
            store.staging_dir / "pending" / f"backbone={backbone}" / f"perturbation={perturbation}"
        )
        self._lock = StoreLock(store.locks_dir / f"embeddings-{backbone}.lock", f"writing embeddings of backbone '{backbone}' into {store.root}")
        self._opened = False
        self._committed = False
        self._failures: list[dict] = []
        self.n_written = 0

    # -- lifecycle -----------------------------------------------------------------
    def open(self) -> EmbeddingWriter:
        if self._opened:
            return self
        if self.rank == 0:
            try:
                self._lock.acquire(PROBE_WAIT_S)
            except OSError as error:
                raise storage_error(error, f"lock backbone '{self.backbone}' in {self.store.root}") from None
        try:
            twin = next((b for b in self.store.backbones()
                         if b != self.backbone and sql_name(b) == sql_name(self.backbone)), None)
            if twin is not None:
                raise StoreError(
                    f"backbone name '{self.backbone}' would share the SQL view emb_{sql_name(twin)} with "
                    f"backbone '{twin}' already in {self.store.root} (names that differ only in - . + and _ "
                    f"collide); extract under another name, or use '{twin}'."
                )
            provenance = backbone_provenance(self.store, self.backbone)
            clash = identity_clash(provenance, self.checkpoint_sha256, self.preprocess_sha256, self.architecture,
                                   unknown_is_clash=self.replace)
            self._replacing = bool(clash)
            if self._replacing and not self.replace:
                raise CheckpointMismatchError(
                    f"backbone '{self.backbone}' in {self.store.root} holds embeddings of another encoder "
                    f"({clash}). One backbone name maps to one checkpoint, preprocessing and architecture: "
                    "pass replace=True (--replace) to swap the whole backbone, or extract under another "
                    "backbone name."
                )
            self._dim = None if (self._replacing or not provenance) else provenance[0].get("dim")
            done: set[str] = set()
            if not self._replacing:
                part = self.store.partition_dir(self.backbone, self.perturbation)
                files = sorted(part.glob("*.parquet"))
                if files:
                    done.update(pq.read_table(files, columns=["patient_id"])["patient_id"].to_pylist())
            self._pending = self._matching_pending()
            if self._pending:
                done.update(pq.read_table(self._pending, columns=["patient_id"])["patient_id"].to_pylist())
                self._dim = self._dim or _file_provenance(self._pending[0]).get("dim")
            self._done = done
            patients = read_table(self.store, "patients", ["patient_id", "site"]).sort_by("patient_id")
            self._patient_ids = patients["patient_id"].to_numpy(zero_copy_only=False).astype(str)
            self._patient_sites = patients["site"].to_numpy(zero_copy_only=False).astype(str)
        except BaseException:
            self._lock.release()
            raise
        self._opened = True
        return self

    def __enter__(self) -> EmbeddingWriter:
        return self.open()

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is None and self.world_size == 1 and not self._committed:
                self.commit()
        finally:
            self._lock.release()

    def _matching_pending(self) -> list[Path]:
        """Staged parts of an interrupted run of this same encoder (resumed, then committed)."""
        files = sorted(self.pending_dir.glob("part-*.parquet"))
        return [p for p in files if not identity_clash([_file_provenance(p)], self.checkpoint_sha256,
                                                       self.preprocess_sha256, self.architecture)]

    # -- writing -------------------------------------------------------------------
    def done_ids(self) -> frozenset[str]:
        """Patient ids already stored or pending for this backbone and perturbation."""
        self.open()
        return frozenset(self._done)

    def write_batch(self, patient_ids: Sequence[str], embeddings: np.ndarray) -> int:
        """Stage one batch; return the number of rows written (ids already done are skipped).

        Parameters
        ----------
        patient_ids : sequence of str, length n
        embeddings : ndarray of shape (n, D)
            Cast to float32.

        Raises
        ------
        StoreError
            On a shape mismatch, a non-finite value, a dimension different from the
            backbone's, a duplicate id in the batch, or an unregistered patient (the
            message names the patient).
        """
        self.open()
        ids = np.asarray(list(patient_ids), dtype=str)
        matrix = np.asarray(embeddings, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[0] != ids.shape[0]:
            raise StoreError(
                f"embeddings must have shape (n_patients, dim) with n_patients = {ids.shape[0]}, "
                f"got {matrix.shape}"
            )
        if self._dim is not None and matrix.shape[1] != self._dim:
            raise StoreError(
                f"backbone '{self.backbone}' has {self._dim}-d embeddings in this store; this batch is "
                f"{matrix.shape[1]}-d. Use another backbone name or replace=True."
            )
        bad_rows = ~np.isfinite(matrix).all(axis=1)
        if bad_rows.any():
            raise StoreError(
                f"embedding of patient {str(ids[bad_rows][0])!r} contains NaN or infinite values "
                f"({int(bad_rows.sum())} patient(s) in this batch); nothing of the batch was written."
            )
        unique, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            raise StoreError(f"patient {str(unique[counts > 1][0])!r} appears twice in one batch")
        position = np.searchsorted(self._patient_ids, ids)
        position = np.clip(position, 0, max(len(self._patient_ids) - 1, 0))
        known = (self._patient_ids[position] == ids) if len(self._patient_ids) else np.zeros(len(ids), bool)
        if not known.all():
            raise StoreError(
                f"patient {str(ids[~known][0])!r} is not registered in {self.store.root} "
                f"({int((~known).sum())} unknown in this batch); run `neurofeat ingest` first."
            )
        keep = np.array([pid not in self._done for pid in ids.tolist()], dtype=bool)
        if not keep.any():
            return 0
        ids, matrix, sites = ids[keep], matrix[keep], self._patient_sites[position[keep]]
        order = np.lexsort((ids, sites))  # by site, then patient: row groups prune site filters
        ids, sites, matrix = ids[order], sites[order], np.ascontiguousarray(matrix[order])
        dim = matrix.shape[1]
        try:
            self._write_part(ids, sites, matrix)
        except OSError as error:
            raise storage_error(error, f"stage embeddings of backbone '{self.backbone}' in {self.store.root}") from None
        self._dim = dim
        self._done.update(ids.tolist())
        self.n_written += len(ids)
        return len(ids)

    def _write_part(self, ids: np.ndarray, sites: np.ndarray, matrix: np.ndarray) -> None:
        n, dim = matrix.shape
        now = pa.scalar(datetime.now(timezone.utc), pa.timestamp("us", tz="UTC"))
        schema = embeddings_schema(dim)
        columns = [
            pa.array(ids, pa.string()),
            pa.array(sites, pa.string()),
            pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), dim),
            pa.repeat(pa.scalar(self.checkpoint_sha256, pa.string()), n),
            pa.repeat(pa.scalar(self.preprocess_sha256, pa.string()), n),
            pa.repeat(pa.scalar(neurofeat.__version__, pa.string()), n),
            pa.repeat(pa.scalar(self.seed, pa.int64()), n),
            pa.repeat(now, n),
            pa.repeat(pa.scalar(self.run_id, pa.string()), n),
        ]
        table = pa.Table.from_arrays(columns, schema=schema)
        meta = {
            _META_KEY: json.dumps(
                {
                    "backbone": self.backbone,
                    "perturbation": self.perturbation,
                    "checkpoint_sha256": self.checkpoint_sha256,
                    "preprocess_sha256": self.preprocess_sha256,
                    "neurofeat_version": neurofeat.__version__,
                    "seed": self.seed,
                    "run_id": self.run_id,
                    "dim": dim,
                    "architecture": self.architecture,
                }
            ).encode()
        }
        path = self.pending_dir / f"part-r{self.rank}-{uuid.uuid4().hex}.parquet"
        write_parquet_atomic(
            table,
            path,
            meta,
            use_dictionary=_DICTIONARY_COLUMNS,
            write_statistics=_STATISTICS_COLUMNS,
            compression=_COMPRESSION,
            row_group_size=_ROW_GROUP_ROWS,
        )

    def record_failure(self, patient_id: str, reason: str, stage: str = "extract") -> None:
        """Record that ``patient_id`` could not be embedded; stored at commit."""
        self._failures.append(
            {
                "patient_id": str(patient_id),
                "backbone": self.backbone,
                "perturbation": self.perturbation,
                "stage": stage,
                "reason": str(reason),
                "checkpoint_sha256": self.checkpoint_sha256,
                "run_id": self.run_id,
                "failed_at": datetime.now(timezone.utc),
            }
        )

    @property
    def failures(self) -> list[dict]:
        return list(self._failures)

    def _commit(self, pending: list[Path]) -> None:
        # The pending parts are merged into one file, so that one rename publishes the
        # whole commit to any reader (DuckDB, pyarrow, Polars, Spark), even one that
        # does not know about the journal. The parts are deleted after the rename (the
        # journal lists them: a crash in between cannot commit them twice).
        root = self.store.root
        with Transaction(root) as txn:
            if self._failures:
                failures = pa.Table.from_pylist(self._failures, schema=EXTRACT_FAILURES_SCHEMA)
                txn.write_parquet(failures, f"extract_failures/part-{uuid.uuid4().hex}.parquet")
            if not pending:
                return
            if self._replacing:
                old = self.store.backbone_dir(self.backbone)
                if old.exists():
                    txn.move(str(old.relative_to(root)), str((txn.dir / "replaced").relative_to(root)))
            final_dir = self.store.partition_dir(self.backbone, self.perturbation).relative_to(root)
            merged = pq.read_table(pending, schema=pq.read_schema(pending[0]))
            merged = merged.sort_by([("site", "ascending"), ("patient_id", "ascending")])
            meta = dict(_file_provenance(pending[0]), run_id=self.run_id)
            txn.write_parquet(
                merged.replace_schema_metadata(None),
                str(final_dir / f"part-{uuid.uuid4().hex}.parquet"),
                {_META_KEY: json.dumps(meta).encode()},
                use_dictionary=_DICTIONARY_COLUMNS,
                write_statistics=_STATISTICS_COLUMNS,
                compression=_COMPRESSION,
                row_group_size=_ROW_GROUP_ROWS,
            )
            for path in pending:
                txn.delete_after(str(path.relative_to(root)))

    def commit(self) -> int:
        """Make every pending part of this backbone/perturbation visible at once.

        Returns the number of pending part files committed (merged into one file).
        Only rank 0 commits; other ranks get 0. Failures recorded on this writer are
        stored in the same commit.

        Raises
        ------
        StoreError
            If the store cannot be written (read-only, disk full); nothing is committed
            and the pending parts are kept, so a rerun resumes.
        """
        self.open()
        if self.rank != 0:
            return 0
        pending = self._matching_pending()
        root = self.store.root
        try:
            self._commit(pending)
        except OSError as error:
            raise storage_error(error, f"commit embeddings of backbone '{self.backbone}' into {root}") from None
        # Pending parts of other checkpoints were never visible; drop them.
        if self.pending_dir.exists():
            shutil.rmtree(self.pending_dir, ignore_errors=True)
            try:
                self.pending_dir.parent.rmdir()
            except OSError:
                pass  # other perturbations of this backbone are pending
        self._failures.clear()
        if pending:
            self._replacing = False
        self._committed = True
        return len(pending)


def append_embeddings(
    store: Store,
    backbone: str,
    patient_ids: Sequence[str],
    embeddings: np.ndarray,
    *,
    checkpoint_sha256: str,
    preprocess_sha256: str,
    perturbation: str = "none",
    replace: bool = False,
    run_id: str | None = None,
    seed: int | None = None,
    batch_size: int = 4096,
) -> int:
    """Write a whole (n, D) array of embeddings for ``backbone`` and commit it.

    Patients already stored for this backbone and perturbation are skipped (resume);
    returns the number of rows written. See :class:`EmbeddingWriter`.
    """
    ids = list(patient_ids)
    matrix = np.asarray(embeddings)
    with EmbeddingWriter(
        store,
        backbone,
        checkpoint_sha256=checkpoint_sha256,
        preprocess_sha256=preprocess_sha256,
        perturbation=perturbation,
        replace=replace,
        run_id=run_id or new_run_id("import"),
        seed=seed,
    ) as writer:
        written = 0
        for start in range(0, len(ids), batch_size):
            written += writer.write_batch(ids[start : start + batch_size], matrix[start : start + batch_size])
    return written
