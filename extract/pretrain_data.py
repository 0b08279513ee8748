"""The training cohort of `neurofeat pretrain`: patients, their scans and their groups.

Patients come from a store (``scans`` view pivoted to one row per patient, group
columns from the ``clinical`` view, which joins ``patients``) or from a
``manifest.csv`` (``patient_id, site, t1, t1ce, t2, flair`` [, cohort, ...]).
Each patient gets a Group-DRO group: the values of the ``group_by`` columns joined
with ``|`` (``UCSF|GBM``); an unknown value is its own level ``NA``.

:class:`PretrainDataset` preprocesses a patient once with the extraction stage's
pipeline (:mod:`neurofeat.extract.preprocess`), optionally keeps the result in memory,
and draws the method's augmented views per epoch (:mod:`neurofeat.extract.augment`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from neurofeat.extract.augment import MultiViewAugment

__all__ = [
    "EpochIndexSampler",
    "PretrainCohort",
    "PretrainDataset",
    "cohort_from_manifest",
    "cohort_from_records",
    "cohort_from_store",
]

_SEQUENCES = ("t1", "t1ce", "t2", "flair")
_NA = "NA"


@dataclass(frozen=True)
class PretrainCohort:
    """Patients to pretrain on.

    Attributes
    ----------
    records : tuple of dict
        One per patient: ``patient_id``, one path per sequence, and the group columns.
    group_by : tuple of str
        Columns that define the groups (empty = one group ``all``).
    group_names : tuple of str
        Sorted group labels; group ``k`` is ``group_names[k]``.
    group_index : numpy.ndarray
        ``(n_patients,)`` int64 group of each record.
    manifest_sha256 : str
        sha256 of the canonical JSON of the records (ids, paths, scan hashes where
        known, group labels): identifies the training data in the checkpoint card.
    source : str
        Where the records came from (store path or manifest path).
    """

    records: tuple[dict[str, Any], ...]
    group_by: tuple[str, ...]
    group_names: tuple[str, ...]
    group_index: np.ndarray
    manifest_sha256: str
    source: str

    def __len__(self) -> int:
        return len(self.records)

    @property
    def group_counts(self) -> np.ndarray:
        """``(G,)`` number of patients per group."""
        return np.bincount(self.group_index, minlength=len(self.group_names))

    def groups_summary(self) -> dict[str, int]:
        """``{group label: n patients}``."""
        return {name: int(n) for name, n in zip(self.group_names, self.group_counts)}


def _label(value: Any) -> str:
    if value is None:
        return _NA
    if isinstance(value, float) and np.isnan(value):
        return _NA
    text = str(value).strip()
    return text if text else _NA


def cohort_from_records(records: Sequence[Mapping[str, Any]], group_by: Sequence[str] = (), *,
                        source: str = "records", sequences: Sequence[str] = _SEQUENCES) -> PretrainCohort:
    """Build a cohort from per-patient dicts (``patient_id``, sequence paths, group columns).

    Raises
    ------
    ValueError
        No records; duplicate patient ids; a group column missing from a record
        (names the patient, the column and the columns available).
    """
    if not records:
        raise ValueError(f"{source}: no patients to pretrain on; ingest a cohort first (`neurofeat ingest`).")
    group_by = tuple(group_by)
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for record in records:
        patient_id = str(record["patient_id"])
        if patient_id in seen:
            raise ValueError(f"{source}: patient {patient_id} appears twice; patient ids must be unique.")
        seen.add(patient_id)
        for column in group_by:
            if column not in record:
                available = sorted(k for k in record if k not in sequences)
                raise ValueError(
                    f"{source}: group column {column!r} not found (patient {patient_id}); "
                    f"available columns: {available}."
                )
        rows.append(dict(record))
    rows.sort(key=lambda r: str(r["patient_id"]))
    labels = ["|".join(_label(r[c]) for c in group_by) if group_by else "all" for r in rows]
    names = tuple(sorted(set(labels)))
    lookup = {name: k for k, name in enumerate(names)}
    index = np.array([lookup[label] for label in labels], dtype=np.int64)
    for row, label in zip(rows, labels):
        row["group"] = label
    canonical = [
        {"patient_id": str(r["patient_id"]), "group": r["group"],
         **{s: str(r.get(s) or "") for s in sequences},
         **{f"{s}_sha256": str(r[f"{s}_sha256"]) for s in sequences if f"{s}_sha256" in r}}
        for r in rows
    ]
    digest = hashlib.sha256(json.dumps(canonical, sort_keys=True).encode("utf-8")).hexdigest()
    return PretrainCohort(tuple(rows), group_by, names, index, digest, source)


def cohort_from_manifest(path: str | os.PathLike[str], group_by: Sequence[str] = ()) -> PretrainCohort:
    """Read a ``manifest.csv`` (paths relative to its folder or absolute).

    Raises
    ------
    ValueError
        Missing file or required column (named), or a group column absent.
    """
    import pandas as pd

    manifest = Path(path)
    if not manifest.is_file():
        raise ValueError(f"manifest {manifest} does not exist.")
    frame = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    missing = [c for c in ("patient_id", *_SEQUENCES) if c not in frame.columns]
    if missing:
        raise ValueError(
            f"manifest {manifest}: missing column(s) {missing}; expected patient_id, site, t1, t1ce, t2, flair."
        )
    base = manifest.absolute().parent
    records = []
    for row in frame.to_dict(orient="records"):
        for seq in _SEQUENCES:
            value = str(row.get(seq) or "").strip()
            if value:
                scan = Path(value)
                row[seq] = str(scan if scan.is_absolute() else base / scan)
            else:
                row[seq] = None
        records.append({k: (None if v == "" else v) for k, v in row.items()})
    return cohort_from_records(records, group_by, source=str(manifest))


def cohort_from_store(store: Any, group_by: Sequence[str] = ()) -> PretrainCohort:
    """Patients registered in a store: scans pivoted per patient + group columns.

    Group columns are looked up in the ``clinical`` view (patients joined with the
    clinical labels: site, cohort, age, sex, grade, histology, markers).

    Raises
    ------
    ValueError
        Empty store, or a group column that is not a column of ``clinical`` (lists
        them).
    """
    from neurofeat.store import Store, connect

    if not isinstance(store, Store):
        store = Store.open(store)
    con = connect(store)
    try:
        clinical_columns = [row[0] for row in con.execute("DESCRIBE clinical").fetchall()]
        for column in group_by:
            if column not in clinical_columns:
                raise ValueError(
                    f"store {store.root}: group column {column!r} is not a column of the clinical view; "
                    f"use one of {clinical_columns}."
                )
        scans = con.execute("SELECT patient_id, sequence, path, sha256 FROM scans ORDER BY patient_id").fetchall()
        selected = ", ".join(f'"{c}"' for c in dict.fromkeys(("patient_id", "site", *group_by)))
        groups = {row[0]: row for row in con.execute(f"SELECT {selected} FROM clinical").fetchall()}
        names = list(dict.fromkeys(("patient_id", "site", *group_by)))
    finally:
        con.close()
    by_patient: dict[str, dict[str, Any]] = {}
    for patient_id, sequence, scan_path, sha in scans:
        record = by_patient.setdefault(str(patient_id), {"patient_id": str(patient_id)})
        scan = Path(scan_path)
        record[str(sequence)] = str(scan if scan.is_absolute() else store.root / scan)
        record[f"{sequence}_sha256"] = sha
    for patient_id, record in by_patient.items():
        # same format as neurofeat.extract.dataset records, so the volume cache is shared
        record["scan_sha256"] = ";".join(f"{seq}={record.get(f'{seq}_sha256') or ''}" for seq in _SEQUENCES)
        row = groups.get(patient_id)
        for k, name in enumerate(names[1:], start=1):
            record[name] = row[k] if row is not None else None
        for seq in _SEQUENCES:
            record.setdefault(seq, None)
    return cohort_from_records(list(by_patient.values()), group_by, source=str(store.root))


class GroupBalancedSampler(torch.utils.data.Sampler):
    """Draw patients with replacement so that every group is equally likely per draw.

    Group-DRO's online update raises only the weights of groups present in a batch, so
    with natural sampling the groups seen most often (the largest site) gain weight
    whatever their loss. Sagawa et al. (2020) train Group-DRO on group-balanced
    batches; this sampler provides them. Every rank draws the same epoch sequence from
    ``(seed, epoch)`` and takes every ``num_replicas``-th index, so shards are equal
    in length and the run is reproducible and resumable.

    Parameters
    ----------
    group_index : array of shape (n_patients,)
        Group of each patient (0..G-1).
    num_replicas, rank : int
    seed : int
    """

    def __init__(self, group_index: Any, *, num_replicas: int = 1, rank: int = 0, seed: int = 0) -> None:
        groups = np.asarray(group_index, dtype=np.int64)
        counts = np.bincount(groups)
        weights = 1.0 / counts[groups]
        self.p = weights / weights.sum()
        self.n = len(groups)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.seed = int(seed)
        self.epoch = 0
        self.num_samples = math.ceil(self.n / self.num_replicas)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch, 0x6D5])
        draws = rng.choice(self.n, size=self.num_samples * self.num_replicas, replace=True, p=self.p)
        return iter(draws[self.rank :: self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.num_samples


class EpochIndexSampler(torch.utils.data.Sampler):
    """Yields ``(epoch, index)`` pairs from a (distributed) sampler.

    The epoch travels with every index, so persistent DataLoader workers (which keep
    their in-memory volume cache between epochs) draw the right epoch's views.
    """

    def __init__(self, base: Any) -> None:
        self.base = base
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (also reshuffles the base sampler)."""
        self.epoch = int(epoch)
        if hasattr(self.base, "set_epoch"):
            self.base.set_epoch(self.epoch)

    def __iter__(self):
        epoch = self.epoch
        return iter([(epoch, int(index)) for index in self.base])

    def __len__(self) -> int:
        return len(self.base)


class PretrainDataset(torch.utils.data.Dataset):
    """Preprocessed, augmented views of the cohort's patients.

    Item ``i`` (or ``(epoch, i)``, see :class:`EpochIndexSampler`) is
    ``{"views": [tensor, ...], "group": int, "index": i}``; the views are
    deterministic in ``(seed, epoch, i)``.

    Parameters
    ----------
    cohort : PretrainCohort
    preprocess : callable
        Maps a record to a dict with ``"image"`` ``(C, S, S, S)`` (the pipeline of
        :func:`neurofeat.extract.preprocess.build_transforms`), or, for tests, any
        callable returning such a tensor under ``"image"``.
    augment : MultiViewAugment
    seed : int
    cache : bool
        Keep preprocessed volumes in memory (per worker process).
    cache_dir : path, optional
        On-disk volume cache shared with `neurofeat extract`
        (:class:`neurofeat.extract.dataset.VolumeCache`, keyed by the scans' sha256 and
        *preprocess_sha256*); needs records with scan hashes (store cohorts).
    preprocess_sha256 : str
        Hash of the preprocessing (cache key part).
    """

    def __init__(self, cohort: PretrainCohort, preprocess: Any, augment: MultiViewAugment, *, seed: int = 0,
                 cache: bool = True, cache_dir: str | os.PathLike[str] | None = None,
                 preprocess_sha256: str = "") -> None:
        self.cohort = cohort
        self.preprocess = preprocess
        self.augment = augment
        self.seed = int(seed)
        self.cache = bool(cache)
        self.epoch = 0
        self._cache: dict[int, torch.Tensor] = {}
        self.preprocess_sha256 = preprocess_sha256
        self.disk_cache = None
        if cache_dir is not None:
            from neurofeat.extract.dataset import VolumeCache

            unhashed = [r["patient_id"] for r in cohort.records if not _has_scan_hashes(r)]
            if unhashed:
                raise ValueError(
                    f"--cache-dir needs the scans' sha256, which patient {unhashed[0]} (and {len(unhashed) - 1} "
                    "more) lacks; train from the store (`neurofeat ingest` records them) or drop --cache-dir."
                )
            self.disk_cache = VolumeCache(cache_dir)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose views ``__getitem__`` draws."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.cohort)

    def image(self, index: int) -> torch.Tensor:
        """The preprocessed volume ``(C, S, S, S)`` of patient *index*."""
        if index in self._cache:
            return self._cache[index]
        record = self.cohort.records[index]
        key = None
        image = None
        if self.disk_cache is not None:
            from neurofeat.extract.dataset import cache_key

            key = cache_key(record, self.preprocess_sha256)
            cached = self.disk_cache.get(key)
            if cached is not None:
                image = torch.from_numpy(cached)
        if image is None:
            try:
                image = torch.as_tensor(self.preprocess(dict(record))["image"], dtype=torch.float32)
            except Exception as exc:  # noqa: BLE001 - re-raised with the patient named
                raise RuntimeError(f"pretraining: cannot preprocess patient {record['patient_id']}: {exc}") from exc
            if self.disk_cache is not None and key is not None:
                self.disk_cache.put(key, image.numpy())
        if self.cache:
            self._cache[index] = image
        return image

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, Any]:
        epoch, index = item if isinstance(item, tuple) else (self.epoch, item)
        views = self.augment(self.image(index), seed=self.seed, epoch=epoch, index=index)
        return {"views": views, "group": int(self.cohort.group_index[index]), "index": int(index)}


def _has_scan_hashes(record: Mapping[str, Any]) -> bool:
    text = str(record.get("scan_sha256") or "")
    return bool(text) and all(part.partition("=")[2] for part in text.split(";"))
