"""Helpers of the reliability tests: tiny stores, plain (non-neurofeat) readers, invariants."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds

from neurofeat.store import Store, write_tables

CKPT_A, CKPT_B, PRE = "a" * 64, "b" * 64, "p" * 64
DIM = 4


def make_store(root: Path, n: int = 12, prefix: str = "P") -> Store:
    """A store with ``n`` patients at two sites and clinical labels (no images)."""
    store = Store.open(root, create=True)
    ids = [f"{prefix}{i:03d}" for i in range(n)]
    write_tables(store, {
        "patients": pa.table({"patient_id": ids, "site": ["siteA" if i % 2 else "siteB" for i in range(n)]}),
        "clinical": pa.table({"patient_id": ids, "idh1": [bool(i % 3) for i in range(n)]}),
    })
    return store


def patient_ids(n: int = 12, prefix: str = "P") -> list[str]:
    return [f"{prefix}{i:03d}" for i in range(n)]


def embeddings(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)


def write_clinical_csv(path: Path, ids: list[str], site: str = "siteC") -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["patient_id", "site", "idh1", "os_days", "os_event"])
        for k, pid in enumerate(ids):
            writer.writerow([pid, site, "mutant" if k % 2 else "wt", 100 + k, 1])
    return path


def write_features_csv(path: Path, ids: list[str], seed: int = 0, delimiter: str = ",") -> Path:
    values = embeddings(len(ids), seed)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(["patient_id", *[f"f{j}" for j in range(values.shape[1])]])
        for pid, row in zip(ids, values):
            writer.writerow([pid, *[f"{v:.6f}" for v in row]])
    return path


def plain_rows(root: Path, table: str) -> pa.Table:
    """What a reader that knows nothing of neurofeat sees: every Parquet file of a table
    folder (pyarrow, hive partitions for embeddings)."""
    folder = Path(root) / table
    files = sorted(str(p) for p in folder.rglob("*.parquet")) if folder.is_dir() else []
    if not files:
        return pa.table({})
    if table == "embeddings":
        return ds.dataset(folder, format="parquet", partitioning="hive").to_table(
            columns=["patient_id", "checkpoint_sha256", "backbone", "perturbation"])
    return ds.dataset(files, format="parquet").to_table(columns=["patient_id"])


def plain_count(root: Path, table: str, **equal: str) -> int:
    rows = plain_rows(root, table)
    if rows.num_rows == 0:
        return 0
    mask = np.ones(rows.num_rows, bool)
    for column, value in equal.items():
        mask &= np.asarray(rows[column].to_pylist(), dtype=object) == value
    return int(mask.sum())


def staging_entries(root: Path) -> list[str]:
    """What is left in .staging besides lock files of locks that persist."""
    staging = Path(root) / ".staging"
    if not staging.is_dir():
        return []
    return sorted(
        str(p.relative_to(staging)) for p in staging.rglob("*")
        if not str(p.relative_to(staging)).startswith("locks")
    )


# -- the four transaction kinds, shared by the crash-step and kill -9 tests ---------------

N_BASE = 12


def base_store(root: Path) -> Store:
    """12 patients, backbone 'mae' (checkpoint A) under perturbations none and gibbs-0.2."""
    from neurofeat.store import append_embeddings

    store = make_store(root, N_BASE)
    for perturbation in ("none", "gibbs-0.2"):
        append_embeddings(store, "mae", patient_ids(N_BASE), embeddings(N_BASE), checkpoint_sha256=CKPT_A,
                          preprocess_sha256=PRE, perturbation=perturbation)
    return store


def do_ingest(root: Path, inputs: Path) -> None:
    from neurofeat.ingest import ingest

    ingest(root, clinical=write_clinical_csv(inputs / "new.csv", patient_ids(4, "NEW")))


def do_import(root: Path, inputs: Path) -> None:
    from neurofeat.store.importing import import_features

    import_features(Store.open(root), "radiomics", write_features_csv(inputs / "f.csv", patient_ids(N_BASE)))


def do_append(root: Path, inputs: Path) -> None:
    from neurofeat.store import EmbeddingWriter

    ids = patient_ids(N_BASE)
    with EmbeddingWriter(Store.open(root), "dino", checkpoint_sha256=CKPT_A, preprocess_sha256=PRE) as writer:
        writer.write_batch(ids[:6], embeddings(6, 1))  # two pending parts, merged at commit
        writer.write_batch(ids[6:11], embeddings(5, 2))
        writer.record_failure(ids[11], "unreadable scan")


def do_replace(root: Path, inputs: Path) -> None:
    from neurofeat.store import append_embeddings

    append_embeddings(Store.open(root), "mae", patient_ids(N_BASE), embeddings(N_BASE, 3),
                      checkpoint_sha256=CKPT_B, preprocess_sha256=PRE, replace=True)


KINDS = {"ingest": do_ingest, "import": do_import, "append": do_append, "replace": do_replace}


def committed(kind: str, root: Path) -> bool | None:
    """Whether the commit of ``kind`` is visible to a plain reader: True (all of it),
    False (none of it) or None (part of it)."""
    n = N_BASE
    if kind == "ingest":
        counts = tuple(plain_count(root, table) for table in ("patients", "clinical"))
        return {(n, n): False, (n + 4, n + 4): True}.get(counts)
    if kind == "import":
        return {0: False, n: True}.get(plain_count(root, "embeddings", backbone="radiomics"))
    if kind == "append":
        rows, failures = plain_count(root, "embeddings", backbone="dino"), plain_count(root, "extract_failures")
        return {(0, 0): False, (11, 1): True}.get((rows, failures))
    old = plain_count(root, "embeddings", backbone="mae", checkpoint_sha256=CKPT_A)
    new = plain_count(root, "embeddings", backbone="mae", checkpoint_sha256=CKPT_B)
    return {(2 * n, 0): False, (0, n): True}.get((old, new))


def slow_workload(kind: str, root: str, inputs: str, step_delay: float) -> None:
    """Run ``kind`` with every commit step slowed down (what ``strace -e inject=rename:
    delay_enter=`` did in the audit), in a child process that the test kills."""
    import time

    from neurofeat.store import transaction

    transaction.fault_hook = lambda step: time.sleep(step_delay)
    KINDS[kind](Path(root), Path(inputs))
