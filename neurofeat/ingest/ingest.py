"""Register a cohort (scans and/or clinical labels) in a store, all or nothing.

Three modes:

- **manifest**: ``manifest`` (patient_id, site, t1, t1ce, t2, flair, optional seg) [+ ``clinical``];
- **discovery**: ``discover`` (a BraTS-style folder tree) [+ ``clinical``];
- **clinical only**: ``clinical`` alone, for users who bring features computed
  elsewhere (``neurofeat store import``).

Every problem of the cohort is collected first (cheap table checks before the scans
are hashed, so a typo in the clinical table fails in seconds). Without ``skip_bad``
any problem aborts the ingest and nothing is written. With ``skip_bad`` the patients
concerned are left out and each reason is recorded in the store's ``ingest_rejects``
table. The accepted rows of ``patients``, ``scans``, ``clinical`` and
``ingest_rejects`` are written in one atomic commit
(:func:`neurofeat.store.write_tables`). Patients already in the store are refused;
nothing stored is ever changed.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa

from neurofeat.ingest.discover import ALL_SEQUENCES, discover_scans
from neurofeat.ingest.mapping import ColumnMapping, load_mapping
from neurofeat.ingest.nifti import ScanError, ScanInfo, inspect_nifti
from neurofeat.ingest.normalise import normalise_text
from neurofeat.ingest.sources import ClinicalTable, read_clinical, read_manifest
from neurofeat.ingest.validate import (
    Problem,
    check_geometry,
    check_sequences_present,
    find_already_stored,
    find_unknown_patients,
)

__all__ = ["IngestError", "IngestReport", "ingest"]

_MAX_LISTED = 25


class IngestError(ValueError):
    """The cohort has problems; nothing was written.

    Attributes
    ----------
    problems : tuple of Problem
        Every problem found (the message lists the first 25).
    """

    def __init__(self, message: str, problems: Sequence[Problem] = ()) -> None:
        self.problems = tuple(problems)
        super().__init__(message)


@dataclass(frozen=True)
class _Patient:
    patient_id: str
    source: str
    row: int | None
    site: str | None = None
    cohort: str | None = None
    scans: dict[str, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class IngestReport:
    """What an ingest did.

    Attributes
    ----------
    run_id : str
        ``ingest_run_id`` of the rows written.
    store : Path
        The store.
    mode : str
        ``'manifest'``, ``'discover'`` or ``'clinical'``.
    patient_ids : tuple of str
        Patients registered, sorted.
    sites : tuple of str
        Site of each registered patient (aligned with ``patient_ids``).
    n_scans : int
        Scan rows written.
    n_clinical : int
        Clinical rows written.
    rejects : tuple of Problem
        Reasons patients were left out (``skip_bad``); also in ``ingest_rejects``.
    without_clinical : tuple of str
        Registered patients that had no clinical row (their labels are NULL).
    column_map : tuple of (str, str)
        ``(source column, canonical column)`` of the clinical table.
    ignored_columns : tuple of str
        Clinical columns that mapped onto nothing.
    dry_run : bool
        True if nothing was written on purpose.
    n_segmented : int
        Registered patients with a tumour segmentation (optional sequence ``seg``).
    """

    run_id: str
    store: Path
    mode: str
    patient_ids: tuple[str, ...]
    sites: tuple[str, ...]
    n_scans: int
    n_clinical: int
    rejects: tuple[Problem, ...] = ()
    without_clinical: tuple[str, ...] = ()
    column_map: tuple[tuple[str, str], ...] = ()
    ignored_columns: tuple[str, ...] = ()
    dry_run: bool = False
    n_segmented: int = 0

    @property
    def n_patients(self) -> int:
        return len(self.patient_ids)

    @property
    def rejected_ids(self) -> tuple[str, ...]:
        """Distinct rejected patient ids (rows without an id are left out)."""
        return tuple(dict.fromkeys(p.patient_id for p in self.rejects if p.patient_id))

    def per_site(self) -> dict[str, int]:
        """Registered patients per site."""
        return dict(sorted(Counter(self.sites).items()))

    def summary(self, *, list_rejects: bool = True) -> str:
        """A few lines for a terminal.

        Parameters
        ----------
        list_rejects : bool
            Also list the reasons patients were rejected (first 25).
        """
        verb = "would register" if self.dry_run else "registered"
        lines = [f"ingest {self.run_id} ({self.mode}) into {self.store}: {verb} "
                 f"{self.n_patients} patient(s), {self.n_scans} scan(s), "
                 f"{self.n_clinical} clinical row(s)"
                 + (f"; {self.n_segmented} patient(s) with a tumour segmentation"
                    if self.n_segmented else "")]
        for site, count in self.per_site().items():
            lines.append(f"  site {site}: {count} patient(s)")
        if self.rejects:
            lines.append(f"rejected {len(self.rejected_ids)} patient(s) "
                         f"({len(self.rejects)} reason(s), see the ingest_rejects table):")
            if list_rejects:
                lines.extend(f"  {p}" for p in self.rejects[:_MAX_LISTED])
            if list_rejects and len(self.rejects) > _MAX_LISTED:
                lines.append(f"  ... and {len(self.rejects) - _MAX_LISTED} more")
        if self.without_clinical:
            lines.append(f"{len(self.without_clinical)} patient(s) have no clinical row "
                         "(labels unknown)")
        if self.ignored_columns:
            lines.append(f"clinical columns not used: {', '.join(self.ignored_columns)}")
        return "\n".join(lines)

    def to_frame(self):
        """One row per patient: ``patient_id, site, status, reason``.

        ``status`` is ``'registered'`` (or ``'accepted'`` in a dry run) or
        ``'rejected'``; a rejected patient has one row per reason.
        """
        import pandas as pd

        status = "accepted" if self.dry_run else "registered"
        rows = [{"patient_id": p, "site": s, "status": status, "reason": None}
                for p, s in zip(self.patient_ids, self.sites)]
        rows += [{"patient_id": r.patient_id, "site": None, "status": "rejected",
                  "reason": str(r)} for r in self.rejects]
        return pd.DataFrame(rows, columns=["patient_id", "site", "status", "reason"])


def _format_problems(problems: Sequence[Problem]) -> str:
    listed = [f"  - {p}" for p in problems[:_MAX_LISTED]]
    if len(problems) > _MAX_LISTED:
        listed.append(f"  ... and {len(problems) - _MAX_LISTED} more")
    return "\n".join(listed)


def _refuse(problems: Sequence[Problem], store_root: Path, stage: str) -> IngestError:
    n_patients = len({p.patient_id for p in problems})
    return IngestError(
        f"ingest refused: {len(problems)} problem(s) for {n_patients} patient(s) "
        f"({stage}); nothing was written to {store_root}:\n{_format_problems(problems)}\n"
        "Fix them, or pass --skip-bad (skip_bad=True) to register the other patients and "
        "record these in the store's ingest_rejects table.", problems)


def _stored_ids(store_root: Path) -> tuple[Any, set[str]]:
    """Open the store if it exists (never creating it) and list its patients."""
    from neurofeat.store import Store, StoreError, read_table
    from neurofeat.store.layout import refuse_foreign_folder

    if not (store_root / "store.json").exists():
        try:
            refuse_foreign_folder(store_root)
        except StoreError as error:
            raise IngestError(f"--store {error}") from None
        if not (store_root / "store.json").exists():
            return None, set()
    store = Store.open(store_root, create=False)
    ids = read_table(store, "patients", ["patient_id"])["patient_id"].to_pylist()
    return store, set(ids)


def _inspect_all(patients: Sequence[_Patient], *, workers: int,
                 progress: Callable[[int], None] | None) -> tuple[dict[str, dict[str, ScanInfo]],
                                                                   list[Problem]]:
    jobs = [(p, seq, path) for p in patients for seq, path in p.scans.items()]
    infos: dict[str, dict[str, ScanInfo]] = {p.patient_id: {} for p in patients}
    problems: list[Problem] = []

    def one(job: tuple[_Patient, str, Path]) -> ScanInfo | Problem:
        patient, seq, path = job
        try:
            return inspect_nifti(path, patient_id=patient.patient_id, sequence=seq)
        except ScanError as exc:
            return Problem(patient.patient_id, patient.source, patient.row, seq,
                           f"{seq} scan {exc.path}: {exc.problem}")

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for (patient, seq, _), result in zip(jobs, pool.map(one, jobs)):
            if isinstance(result, Problem):
                problems.append(result)
            else:
                infos[patient.patient_id][seq] = result
            if progress is not None:
                progress(1)
    for patient in patients:
        problems.extend(check_geometry(patient.patient_id, infos[patient.patient_id],
                                       source=patient.source))
    return infos, problems


def _timestamp_array(n: int, when: datetime) -> pa.Array:
    return pa.array([when] * n, type=pa.timestamp("us", tz="UTC"))


def ingest(store: str | os.PathLike, *, manifest: str | os.PathLike | None = None,
           clinical: str | os.PathLike | None = None, discover: str | os.PathLike | None = None,
           site: str | None = None, cohort: str | None = None,
           mapping: str | os.PathLike | ColumnMapping | None = None, skip_bad: bool = False,
           dry_run: bool = False, workers: int | None = None,
           progress: Callable[[int], None] | None = None,
           on_scan_count: Callable[[int], None] | None = None) -> IngestReport:
    """Validate a cohort and register it in *store* in one atomic commit.

    Parameters
    ----------
    store : str or PathLike
        Store folder (created on the first successful ingest).
    manifest : path, optional
        CSV with ``patient_id, site, t1, t1ce, t2, flair`` [``cohort``]; scan paths
        absolute or relative to the manifest's folder.
    clinical : path, optional
        CSV/TSV of clinical labels (column names mapped through *mapping*).
    discover : path, optional
        Root of a BraTS-style folder tree (instead of a manifest).
    site : str, optional
        Site of patients whose manifest/clinical row names none.
    cohort : str, optional
        Cohort of patients whose manifest row names none.
    mapping : path or ColumnMapping, optional
        A user mapping TOML (extends the default), or a loaded mapping.
    skip_bad : bool
        Leave bad patients out (recorded in ``ingest_rejects``) instead of refusing the
        whole ingest.
    dry_run : bool
        Validate everything (scans included) and return the report; write nothing.
    workers : int, optional
        Threads reading/hashing scans (default ``min(4, os.cpu_count())``).
    progress : callable, optional
        Called with 1 after each scan is inspected.
    on_scan_count : callable, optional
        Called once with the number of scans to inspect (to size a progress bar).

    Returns
    -------
    IngestReport

    Raises
    ------
    IngestError
        If any patient has a problem and ``skip_bad`` is False (the message lists every
        problem; nothing is written), or the input names no patient.
    neurofeat.ingest.sources.InputTableError, neurofeat.ingest.mapping.MappingError,
    neurofeat.ingest.discover.DiscoveryError
        If an input cannot be read at all.

    Examples
    --------
    >>> report = ingest("S", manifest="cohort/manifest.csv",
    ...                 clinical="cohort/clinical.csv")  # doctest: +SKIP
    >>> print(report.summary())  # doctest: +SKIP
    """
    if manifest is not None and discover is not None:
        raise IngestError("pass either a manifest (--manifest) or a folder (--discover), "
                          "not both")
    if manifest is None and discover is None and clinical is None:
        raise IngestError("nothing to ingest: pass --manifest, --discover or --clinical")
    from neurofeat.store import new_run_id

    store_root = Path(store).absolute()
    column_mapping = mapping if isinstance(mapping, ColumnMapping) else load_mapping(mapping)
    mode = "manifest" if manifest is not None else "discover" if discover is not None \
        else "clinical"
    run_id = new_run_id("ingest")
    problems: list[Problem] = []

    # 1. Who has scans.
    patients: dict[str, _Patient] = {}
    image_source = ""
    if manifest is not None:
        image_source = str(manifest)
        entries, manifest_problems = read_manifest(manifest, mapping=column_mapping)
        problems.extend(manifest_problems)
        for entry in entries:
            patients.setdefault(entry.patient_id, _Patient(
                entry.patient_id, image_source, entry.row, entry.site, entry.cohort,
                dict(entry.scans)))
    elif discover is not None:
        image_source = str(discover)
        for found in discover_scans(discover):
            patients[found.patient_id] = _Patient(found.patient_id, image_source, None,
                                                  scans=dict(found.scans))
    for patient in patients.values():
        problems.extend(check_sequences_present(patient.patient_id, patient.scans,
                                                source=patient.source))

    # 2. Clinical labels.
    table: ClinicalTable | None = None
    records: dict[str, Any] = {}
    if clinical is not None:
        table = read_clinical(clinical, mapping=column_mapping)
        problems.extend(table.problems)
        # A duplicated id is rejected (it has a problem), so which record wins is moot.
        records = {r.patient_id: r for r in table.records}
        if mode == "clinical":
            named = [(r.row, r.patient_id) for r in table.records]
            named += [(p.row, p.patient_id) for p in table.problems if p.patient_id]
            for row, pid in sorted(named, key=lambda item: item[0] or 0):
                patients.setdefault(pid, _Patient(pid, table.source, row))
        else:
            problems.extend(find_unknown_patients(
                ((r.row, r.patient_id) for r in table.records), patients,
                source=table.source, known_source=image_source))
            # Rows that failed normalisation still name a patient; check those too.
            bad_rows = {(p.row, p.patient_id) for p in table.problems if p.patient_id}
            problems.extend(find_unknown_patients(
                sorted(bad_rows), patients, source=table.source, known_source=image_source))

    # 3. Site, cohort.
    final_site: dict[str, str] = {}
    final_cohort: dict[str, str | None] = {}
    default_site = normalise_text(site, "site") if site is not None else None
    # A patient whose clinical row failed already has a problem; its site may be there.
    bad_clinical = {p.patient_id for p in (table.problems if table else ()) if p.patient_id}
    for pid, patient in patients.items():
        clinical_site = records[pid].values.get("site") if pid in records else None
        if patient.site and clinical_site and patient.site != clinical_site:
            problems.append(Problem(
                pid, table.source if table else patient.source,
                records[pid].row if pid in records else None, "site",
                f"site is {clinical_site!r} in the clinical table but {patient.site!r} in "
                f"{patient.source}; make them agree"))
        chosen = patient.site or clinical_site or default_site
        if not chosen and pid not in bad_clinical:
            problems.append(Problem(
                pid, patient.source, patient.row, "site",
                "no site: add a 'site' column to the manifest or clinical table, or pass "
                "--site NAME for a single-site cohort"))
        elif chosen:
            final_site[pid] = chosen
        clinical_cohort = records[pid].values.get("cohort") if pid in records else None
        final_cohort[pid] = patient.cohort or clinical_cohort or cohort

    if not patients and not problems:
        raise IngestError("the input names no patient; check the files")

    # 4. Already in the store. From this check to the commit the store's write lock is
    # held, so that two ingests cannot both find a patient new and both register it
    # (a store that does not exist yet is locked once created, before the commit,
    # whose own check then refuses anything registered meanwhile).
    lock = None
    try:
        if not dry_run and (store_root / "store.json").exists():
            lock = _write_lock(store_root)
        existing_store, stored = _stored_ids(store_root)
        for pid, patient in patients.items():
            problems.extend(find_already_stored([pid], stored, source=patient.source,
                                                store=str(store_root)))

        if problems and not skip_bad:
            raise _refuse(problems, store_root, "checked before reading any scan"
                          if mode != "clinical" else "clinical table")
        report = _inspect_and_commit(
            store_root, existing_store, lock, patients=patients, problems=problems,
            skip_bad=skip_bad, dry_run=dry_run, workers=workers, progress=progress,
            on_scan_count=on_scan_count, final_site=final_site, final_cohort=final_cohort,
            records=records, run_id=run_id)
    finally:
        if lock is not None:
            lock.release()
    accepted, tables = report

    column_map: tuple[tuple[str, str], ...] = ()
    ignored: tuple[str, ...] = ()
    if table is not None:
        column_map = tuple((source, canonical)
                           for canonical, source in table.columns.source_of.items())
        ignored = table.columns.ignored
    return IngestReport(
        run_id=run_id,
        store=store_root,
        mode=mode,
        patient_ids=tuple(accepted),
        sites=tuple(final_site[pid] for pid in accepted),
        n_scans=tables["scans"].num_rows,
        n_clinical=tables["clinical"].num_rows,
        rejects=tuple(problems),
        without_clinical=tuple(pid for pid in accepted if pid not in records)
        if clinical is not None else (),
        column_map=column_map,
        ignored_columns=ignored,
        dry_run=dry_run,
        n_segmented=sum(seq == "seg" for seq in tables["scans"].column("sequence").to_pylist()),
    )


def _write_lock(store_root: Path) -> Any:
    """The store's write lock, held (waits up to 30 s for another writer)."""
    from neurofeat.store import Store, StoreError
    from neurofeat.store.layout import storage_error
    from neurofeat.store.tables import LOCK_WAIT_S

    try:
        return Store(store_root).write_lock("an ingest").acquire(LOCK_WAIT_S)
    except OSError as error:
        converted = storage_error(error, f"lock the store {store_root} for writing")
        if isinstance(converted, StoreError):
            raise converted from None
        raise


def _inspect_and_commit(store_root: Path, existing_store: Any, lock: Any, *,
                        patients: dict[str, _Patient], problems: list[Problem], skip_bad: bool,
                        dry_run: bool, workers: int | None,
                        progress: Callable[[int], None] | None,
                        on_scan_count: Callable[[int], None] | None,
                        final_site: dict[str, str], final_cohort: dict[str, str | None],
                        records: dict[str, Any], run_id: str
                        ) -> tuple[list[str], dict[str, pa.Table]]:
    # 5. Scans (only for patients still in the running).
    rejected = {p.patient_id for p in problems}
    to_inspect = [p for pid, p in sorted(patients.items()) if pid not in rejected]
    if on_scan_count is not None:
        on_scan_count(sum(len(p.scans) for p in to_inspect))
    infos, scan_problems = _inspect_all(
        to_inspect, workers=workers or min(4, os.cpu_count() or 1), progress=progress)
    if scan_problems and not skip_bad:
        raise _refuse(scan_problems, store_root, "found reading the scans")
    problems.extend(scan_problems)
    rejected |= {p.patient_id for p in scan_problems}

    accepted = sorted(pid for pid in patients if pid not in rejected)
    now = datetime.now(timezone.utc)
    tables = _build_tables(accepted, final_site, final_cohort, records, infos, problems,
                           run_id, now)
    if not dry_run and (accepted or problems):
        from neurofeat.store import Store, write_tables

        target = existing_store or Store.open(store_root, create=True)
        if lock is None:  # a store created just now (or by a concurrent ingest)
            lock = _write_lock(store_root)
            try:
                write_tables(target, tables, lock_held=True)
            finally:
                lock.release()
        else:
            write_tables(target, tables, lock_held=True)
    return accepted, tables


def _build_tables(accepted: Sequence[str], site: dict[str, str], cohort: dict[str, str | None],
                  records: dict[str, Any], infos: dict[str, dict[str, ScanInfo]],
                  problems: Sequence[Problem], run_id: str, now: datetime) -> dict[str, pa.Table]:
    from neurofeat.store.schema import (
        CLINICAL_SCHEMA,
        INGEST_REJECTS_SCHEMA,
        PATIENTS_SCHEMA,
        SCANS_SCHEMA,
    )

    def value(pid: str, column: str) -> Any:
        return records[pid].values.get(column) if pid in records else None

    patients = pa.table({
        "patient_id": list(accepted),
        "site": [site[p] for p in accepted],
        "cohort": [cohort[p] for p in accepted],
        "age": [value(p, "age") for p in accepted],
        "sex": [value(p, "sex") for p in accepted],
        "grade": [value(p, "grade") for p in accepted],
        "histology": [value(p, "histology") for p in accepted],
        "ingest_run_id": [run_id] * len(accepted),
        "ingested_at": _timestamp_array(len(accepted), now),
    }, schema=PATIENTS_SCHEMA)

    scan_rows = [(pid, seq, infos[pid][seq]) for pid in accepted
                 for seq in ALL_SEQUENCES if seq in infos.get(pid, {})]
    scans = pa.table({
        "patient_id": [r[0] for r in scan_rows],
        "sequence": [r[1] for r in scan_rows],
        "path": [str(r[2].path) for r in scan_rows],
        "sha256": [r[2].sha256 for r in scan_rows],
        "shape": [list(r[2].shape) for r in scan_rows],
        "spacing": [list(r[2].spacing) for r in scan_rows],
        "affine": [list(r[2].affine) for r in scan_rows],
        "ingest_run_id": [run_id] * len(scan_rows),
    }, schema=SCANS_SCHEMA)

    with_labels = [p for p in accepted if p in records]
    clinical_columns: dict[str, list[Any]] = {"patient_id": with_labels}
    for field_ in CLINICAL_SCHEMA:
        if field_.name != "patient_id":
            clinical_columns[field_.name] = [value(p, field_.name) for p in with_labels]
    clinical = pa.table(clinical_columns, schema=CLINICAL_SCHEMA)

    rejects = pa.table({
        "patient_id": [p.patient_id for p in problems],
        "source": [p.source for p in problems],
        "row": [p.row for p in problems],
        "column": [p.column for p in problems],
        "reason": [p.reason for p in problems],
        "ingest_run_id": [run_id] * len(problems),
        "rejected_at": _timestamp_array(len(problems), now),
    }, schema=INGEST_REJECTS_SCHEMA)
    return {"patients": patients, "scans": scans, "clinical": clinical,
            "ingest_rejects": rejects}
