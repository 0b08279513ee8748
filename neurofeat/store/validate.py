"""Consistency checks of a store (``neurofeat store validate``)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from neurofeat.store.catalog import connect, typed_views, view_name
from neurofeat.store.embeddings import backbone_provenance
from neurofeat.store.layout import Store
from neurofeat.store.schema import TABLE_SCHEMAS, embeddings_schema

__all__ = ["Problem", "ValidationReport", "validate_store"]


@dataclass(frozen=True)
class Problem:
    """One finding: ``severity`` is 'error' (exit non-zero) or 'warning'."""

    severity: str
    check: str
    where: str
    message: str


@dataclass(frozen=True)
class ValidationReport:
    root: str
    problems: tuple[Problem, ...]
    n_files_checked: int

    @property
    def ok(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([p.__dict__ for p in self.problems], columns=["severity", "check", "where", "message"])

    def summary(self) -> str:
        head = f"{self.root}: {self.n_files_checked} files checked, "
        if not self.problems:
            return head + "no problems"
        errors = sum(p.severity == "error" for p in self.problems)
        return head + f"{errors} error(s), {len(self.problems) - errors} warning(s)"


def _schema_problems(store: Store) -> tuple[list[Problem], int]:
    problems: list[Problem] = []
    checked = 0
    for name, schema in TABLE_SCHEMAS.items():
        for path in sorted(store.table_dir(name).glob("*.parquet")):
            checked += 1
            try:
                found = pq.read_schema(path)
            except (pa.ArrowInvalid, OSError) as error:
                problems.append(Problem("error", "schema", str(path), f"unreadable Parquet: {error}"))
                continue
            if not found.remove_metadata().equals(schema, check_metadata=False):
                problems.append(
                    Problem("error", "schema", str(path), f"schema differs from the '{name}' table's: {found.names}")
                )
    for path in sorted(store.embeddings_dir.glob("backbone=*/perturbation=*/*.parquet")):
        checked += 1
        try:
            found = pq.read_schema(path)
        except (pa.ArrowInvalid, OSError) as error:
            problems.append(Problem("error", "schema", str(path), f"unreadable Parquet: {error}"))
            continue
        field = found.field("embedding") if "embedding" in found.names else None
        if field is None or not pa.types.is_fixed_size_list(field.type):
            problems.append(Problem("error", "schema", str(path), "no FixedSizeList<float32> 'embedding' column"))
            continue
        expected = embeddings_schema(field.type.list_size)
        if not found.remove_metadata().equals(expected, check_metadata=False):
            problems.append(Problem("error", "schema", str(path), f"embedding file schema differs: {found.names}"))
    return problems, checked


def _foreign_and_colliding(store: Store) -> list[Problem]:
    problems = []
    for path in sorted(store.embeddings_dir.glob("backbone=*/perturbation=*/*.parquet")):
        try:
            metadata = pq.read_schema(path).metadata or {}
        except (pa.ArrowInvalid, OSError):
            continue  # reported as unreadable
        if b"neurofeat" not in metadata:
            problems.append(Problem(
                "error", "foreign file", str(path),
                "no neurofeat provenance in the file's metadata: it was not written by neurofeat. "
                "Move it out of the store (import features with `neurofeat store import`)",
            ))
    names: dict[str, list[str]] = {}
    for backbone in store.backbones():
        names.setdefault(view_name(backbone), []).append(backbone)
    for name, backbones in sorted(names.items()):
        if len(backbones) > 1:
            problems.append(Problem(
                "error", "view name clash", ", ".join(backbones),
                f"backbones {backbones} would share the SQL view {name}; they are served as "
                f"{', '.join(typed_views(backbones).values())} instead. Re-extract (or import) one "
                "under a distinct name and delete the other's folder",
            ))
    return problems


def _leftovers(store: Store) -> list[Problem]:
    """What is still in .staging after the recovery that opening the store ran."""
    staging = store.staging_dir
    if not staging.is_dir():
        return []
    found = []
    for path in sorted(staging.glob("txn-*")) + sorted(staging.glob("run-*")):
        kind = "transaction" if path.name.startswith("txn-") else "analysis run being written"
        if path.name.endswith(".lock"):
            if path.with_name(path.name[: -len(".lock")]).exists():
                continue  # the folder it guards is reported
            kind = "lock file"
        found.append(Problem(
            "warning", "leftover", str(path),
            f"{kind} in progress, or left by a killed process that recovery could not clear yet; "
            "`neurofeat store recover` finishes or removes it once its owner has stopped",
        ))
    for folder in sorted(staging.glob("pending/backbone=*/perturbation=*")):
        if folder.is_dir() and not any(folder.iterdir()):
            found.append(Problem("warning", "leftover", str(folder),
                                 "empty pending folder; `neurofeat store recover` removes it"))
    return found


def validate_store(store: Store) -> ValidationReport:
    """Check schemas, duplicate keys, dangling patients and mixed checkpoints."""
    problems, checked = _schema_problems(store)
    con = connect(store)

    def findings(check: str, sql: str, message: str, severity: str = "error") -> None:
        for row in con.sql(sql).fetchall():
            problems.append(Problem(severity, check, str(row[0]), message.format(*row)))

    findings(
        "duplicate patients",
        "SELECT patient_id, count(*) FROM patients GROUP BY 1 HAVING count(*) > 1",
        "patient registered {1} times",
    )
    findings(
        "duplicate embeddings",
        "SELECT patient_id || ' / ' || backbone || ' / ' || perturbation, count(*) FROM embeddings "
        "GROUP BY patient_id, backbone, perturbation HAVING count(*) > 1",
        "key (patient, backbone, perturbation) stored {1} times",
    )
    for table in ("scans", "clinical_labels", "embeddings"):
        findings(
            "dangling patients",
            f"SELECT DISTINCT patient_id FROM {table} WHERE patient_id NOT IN (SELECT patient_id FROM patients)",
            f"patient {{0}} appears in {table} but is not registered in patients",
        )
    findings(
        "site mismatch",
        "SELECT e.patient_id, e.backbone, e.site, p.site FROM embeddings e JOIN patients p USING (patient_id) "
        "WHERE e.site <> p.site",
        "embedding of backbone {1} says site {2}, patients says {3}",
    )
    findings(
        "duplicate scans",
        "SELECT patient_id || ' / ' || sequence, count(*) FROM scans GROUP BY patient_id, sequence HAVING count(*) > 1",
        "sequence registered {1} times",
    )
    for backbone in store.backbones():
        provenance = backbone_provenance(store, backbone)
        hashes = sorted({str(p.get("checkpoint_sha256")) for p in provenance})
        preprocessing = sorted({str(p.get("preprocess_sha256")) for p in provenance})
        architectures = sorted({p["architecture"] for p in provenance if p.get("architecture") is not None})
        dims = sorted({int(p.get("dim", -1)) for p in provenance})
        if len(hashes) > 1:
            problems.append(
                Problem("error", "mixed checkpoints", backbone, f"{len(hashes)} checkpoints under one name: {hashes}")
            )
        if len(preprocessing) > 1:
            problems.append(Problem("error", "mixed preprocessing", backbone,
                                    f"{len(preprocessing)} preprocessing hashes under one name: {preprocessing}"))
        if len(architectures) > 1:
            problems.append(Problem("error", "mixed architectures", backbone,
                                    f"{len(architectures)} architectures under one name: {architectures}"))
        if len(dims) > 1:
            problems.append(Problem("error", "mixed dimensions", backbone, f"embedding dimensions {dims}"))
    problems.extend(_foreign_and_colliding(store))
    problems.extend(_leftovers(store))
    pending = list(store.staging_dir.glob("pending/backbone=*/perturbation=*/*.parquet"))
    if pending:
        problems.append(
            Problem(
                "warning",
                "uncommitted",
                str(store.staging_dir / "pending"),
                f"{len(pending)} staged embedding file(s) of an interrupted run (invisible); "
                "rerun the extraction to resume and commit them",
            )
        )
    return ValidationReport(root=str(store.root), problems=tuple(problems), n_files_checked=checked)
