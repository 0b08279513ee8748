"""Fixtures of the ingest tests (helpers live in ingest_helpers.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from ingest_helpers import write_csv, write_patient


@pytest.fixture
def cohort(tmp_path: Path) -> Callable[..., dict[str, Path]]:
    """Build a manifest cohort: ``cohort(ids, sites=..., clinical_rows=...)``.

    Returns a dict with ``root``, ``manifest``, ``clinical`` (or None) and ``store``.
    """

    def build(patient_ids: Sequence[str] = ("P1", "P2", "P3"), *, sites: Sequence[str] | None = None,
              clinical_header: Sequence[str] | None = None,
              clinical_rows: Sequence[Sequence[object]] | None = None) -> dict[str, Path]:
        root = tmp_path / "cohort"
        rows = []
        for i, pid in enumerate(patient_ids):
            paths = write_patient(root / "images" / pid, pid)
            site = (sites or ["A", "B"] * len(patient_ids))[i]
            rows.append([pid, site, *(p.relative_to(root) for p in paths.values())])
        manifest = write_csv(root / "manifest.csv", ["patient_id", "site", "t1", "t1ce", "t2", "flair"],
                             rows)
        clinical = None
        if clinical_rows is not None:
            clinical = write_csv(root / "clinical.csv", clinical_header, clinical_rows)
        return {"root": root, "manifest": manifest, "clinical": clinical,
                "store": tmp_path / "store"}

    return build
