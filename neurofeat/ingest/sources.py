"""Read the ingest's input tables: the scan manifest and the clinical table.

Both are CSV (or TSV / semicolon-separated) files. Rows are numbered as a spreadsheet
shows them: the header is row 1, the first data row is row 2. Wholly empty rows are
skipped. Cell values are normalised by :mod:`neurofeat.ingest.normalise`; a value that
cannot be normalised becomes a :class:`~neurofeat.ingest.validate.Problem` that names
the file, row, patient, column and value, so that all problems of a table are reported
at once.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neurofeat.ingest.discover import SEQUENCE_ALIASES, SEQUENCES
from neurofeat.ingest.mapping import ColumnMapping, ResolvedColumns, column_key
from neurofeat.ingest.normalise import (
    CANONICAL_COLUMNS,
    ClinicalValueError,
    ValueNormalisationError,
    is_unknown,
    normalise_text,
    normalise_value,
)
from neurofeat.ingest.validate import Problem, find_duplicate_ids

__all__ = [
    "InputTableError",
    "ManifestEntry",
    "ClinicalRecord",
    "ClinicalTable",
    "read_rows",
    "read_manifest",
    "read_clinical",
]


class InputTableError(ValueError):
    """An input table that cannot be read at all (missing file, bad header, ...)."""


@dataclass(frozen=True)
class ManifestEntry:
    """One manifest row: a patient's scan files.

    Attributes
    ----------
    patient_id : str
    row : int
        Spreadsheet row in the manifest.
    site, cohort : str or None
    scans : dict of str to Path
        Sequence -> absolute path, for the non-empty cells.
    """

    patient_id: str
    row: int
    site: str | None
    cohort: str | None
    scans: dict[str, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class ClinicalRecord:
    """One clinical row, normalised onto canonical columns.

    Attributes
    ----------
    patient_id : str
    row : int
        Spreadsheet row in the clinical file.
    values : dict of str to object
        Canonical column -> canonical value (None = unknown) for every mapped column.
    """

    patient_id: str
    row: int
    values: dict[str, Any]


@dataclass(frozen=True)
class ClinicalTable:
    """A clinical file read and normalised.

    Attributes
    ----------
    source : str
        The file path as given.
    records : tuple of ClinicalRecord
        Rows that normalised cleanly and have a patient id.
    problems : tuple of Problem
        One per bad cell / duplicate id / missing id.
    columns : ResolvedColumns
        How the header was mapped.
    """

    source: str
    records: tuple[ClinicalRecord, ...]
    problems: tuple[Problem, ...]
    columns: ResolvedColumns


def _delimiter(path: Path, first_line: str) -> str:
    if path.suffix.lower() in {".tsv", ".tab"}:
        return "\t"
    counts = {d: first_line.count(d) for d in (",", "\t", ";")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def read_rows(path: str | Path, *, what: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Read a delimited text table.

    Parameters
    ----------
    path : str or Path
        A .csv / .tsv file (UTF-8, a byte-order mark is accepted).
    what : str
        ``'--manifest'`` or ``'--clinical'``, for messages.

    Returns
    -------
    header : list of str
    rows : list of (row, cells)
        Spreadsheet row number (header = 1) and the cells, padded to the header's
        length; wholly empty rows are left out.

    Raises
    ------
    InputTableError
        If the file is missing, not text, empty, has an empty or duplicated column
        name, or a row with more cells than the header.
    """
    path = Path(path)
    if not path.is_file():
        raise InputTableError(f"{what} {path}: file does not exist; check the path")
    if path.suffix.lower() in {".xlsx", ".xls", ".ods", ".parquet"}:
        raise InputTableError(f"{what} {path}: only CSV/TSV text tables are read; "
                              "save the sheet as CSV (UTF-8)")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputTableError(f"{what} {path}: not UTF-8 text ({exc}); save it as CSV (UTF-8)") \
            from None
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise InputTableError(f"{what} {path}: the file is empty or has no header row")
    reader = csv.reader(text.splitlines(keepends=True), delimiter=_delimiter(path, lines[0]))
    try:
        header = [h.strip() for h in next(reader)]
        body = list(reader)
    except csv.Error as exc:
        raise InputTableError(f"{what} {path}: not a valid CSV table ({exc})") from None
    for i, name in enumerate(header):
        if not name:
            raise InputTableError(f"{what} {path}: column {i + 1} of the header has no name; "
                                  "name it or delete the column")
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise InputTableError(f"{what} {path}: column name(s) {dupes} appear more than once; "
                              "rename them")
    rows: list[tuple[int, list[str]]] = []
    for index, cells in enumerate(body):
        row = index + 2
        if not any(c.strip() for c in cells):
            continue
        if len(cells) > len(header):
            extra = cells[len(header):]
            if any(c.strip() for c in extra):
                raise InputTableError(
                    f"{what} {path} row {row}: {len(cells)} cells but the header has "
                    f"{len(header)} columns; quote values that contain the delimiter")
            cells = cells[:len(header)]
        rows.append((row, cells + [""] * (len(header) - len(cells))))
    return header, rows


def _patient_id(cells: list[str], index: int) -> str | None:
    value = cells[index].strip()
    return None if is_unknown(value) else value


def read_manifest(path: str | Path, *, mapping: ColumnMapping
                  ) -> tuple[list[ManifestEntry], list[Problem]]:
    """Read a scan manifest.

    Columns: ``patient_id`` (or any name the mapping knows for it), ``site`` and
    ``cohort`` (optional), and one column per sequence: ``t1`` (or ``t1n``), ``t1ce``
    (``t1c``, ``t1gd``), ``t2`` (``t2w``), ``flair`` (``t2f``), and optionally ``seg``
    (``segmentation``: a tumour label map on the images' grid; an empty cell means the
    patient has none). Paths are absolute or relative to the manifest's folder.

    Parameters
    ----------
    path : str or Path
    mapping : ColumnMapping
        Used for the patient id / site / cohort column names.

    Returns
    -------
    entries : list of ManifestEntry
        Rows with a patient id, in file order (duplicates included).
    problems : list of Problem
        Rows without a patient id; duplicated ids.

    Raises
    ------
    InputTableError
        If the file cannot be read or lacks a column for a sequence.
    """
    path = Path(path)
    source = str(path)
    header, rows = read_rows(path, what="--manifest")
    seq_column: dict[str, int] = {}
    for index, name in enumerate(header):
        key = column_key(name)
        seq = SEQUENCE_ALIASES.get(key) or SEQUENCE_ALIASES.get(key.replace("_", ""))
        if seq is not None:
            if seq in seq_column:
                raise InputTableError(
                    f"--manifest {path}: columns {header[seq_column[seq]]!r} and {name!r} both "
                    f"name the {seq} scan; keep one")
            seq_column[seq] = index
    missing = [s for s in SEQUENCES if s not in seq_column]
    if missing:
        raise InputTableError(
            f"--manifest {path}: no column for sequence(s) {', '.join(missing)}; a manifest "
            "has columns patient_id, site, t1, t1ce, t2, flair (paths to .nii/.nii.gz files)")
    meta_header = [h for i, h in enumerate(header) if i not in seq_column.values()]
    resolved = mapping.resolve(meta_header, source=f"--manifest {path}")
    index_of = {name: i for i, name in enumerate(header)}
    id_index = index_of[resolved.source_of["patient_id"]]
    site_index = index_of.get(resolved.source_of.get("site", ""), None)
    cohort_index = index_of.get(resolved.source_of.get("cohort", ""), None)
    base = path.absolute().parent
    entries: list[ManifestEntry] = []
    problems: list[Problem] = []
    for row, cells in rows:
        pid = _patient_id(cells, id_index)
        if pid is None:
            problems.append(Problem(None, source, row, header[id_index],
                                    "the patient id is empty; fill it in or delete the row"))
            continue
        scans = {}
        for seq, index in seq_column.items():
            cell = cells[index].strip()
            if cell and not is_unknown(cell):
                scan = Path(cell).expanduser()
                scans[seq] = scan if scan.is_absolute() else base / scan
        entries.append(ManifestEntry(
            patient_id=pid, row=row,
            site=normalise_text(cells[site_index], "site") if site_index is not None else None,
            cohort=(normalise_text(cells[cohort_index], "cohort")
                    if cohort_index is not None else None),
            scans=scans,
        ))
    problems.extend(find_duplicate_ids(((e.row, e.patient_id) for e in entries), source=source))
    return entries, problems


def read_clinical(path: str | Path, *, mapping: ColumnMapping) -> ClinicalTable:
    """Read a clinical table and normalise every mapped cell.

    Parameters
    ----------
    path : str or Path
        CSV/TSV with a patient id column and any of the canonical columns under the
        names the mapping knows.
    mapping : ColumnMapping

    Returns
    -------
    ClinicalTable
        Clean records plus one Problem per bad cell (message names file, row,
        patient, column, value and the fix), duplicate id or empty id.

    Raises
    ------
    InputTableError
        If the file cannot be read.
    neurofeat.ingest.mapping.MappingError
        If the header has no patient id column or two columns read alike.
    """
    path = Path(path)
    source = str(path)
    header, rows = read_rows(path, what="--clinical")
    resolved = mapping.resolve(header, source=f"--clinical {path}")
    index_of = {name: i for i, name in enumerate(header)}
    id_index = index_of[resolved.source_of["patient_id"]]
    targets = [(c, resolved.source_of[c], index_of[resolved.source_of[c]])
               for c in CANONICAL_COLUMNS if c in resolved.source_of]
    records: list[ClinicalRecord] = []
    problems: list[Problem] = []
    for row, cells in rows:
        pid = _patient_id(cells, id_index)
        if pid is None:
            problems.append(Problem(None, source, row, header[id_index],
                                    "the patient id is empty; fill it in or delete the row"))
            continue
        values: dict[str, Any] = {}
        bad = False
        for canonical, column, index in targets:
            try:
                values[canonical] = normalise_value(
                    canonical, cells[index], extra_words=mapping.words_for(canonical),
                    extra_unknown=mapping.unknown, factor=mapping.factor_for(column))
            except ValueNormalisationError as exc:
                bad = True
                located = ClinicalValueError(source, row, pid, column, canonical, exc.value,
                                             exc.hint)
                problems.append(Problem(pid, source, row, column, located.reason))
        if not bad:
            records.append(ClinicalRecord(pid, row, values))
    problems.extend(find_duplicate_ids(
        ((row, pid) for row, cells in rows if (pid := _patient_id(cells, id_index)) is not None),
        source=source))
    return ClinicalTable(source, tuple(records), tuple(problems), resolved)
