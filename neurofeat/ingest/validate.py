"""Per-patient checks of a cohort before anything is written to the store.

Each check is a pure function that returns a list of :class:`Problem` (empty when all
is well), so that the ingest can report every problem of a cohort at once and, with
``skip_bad``, reject only the patients concerned. (Cell values, including
``os_days <= 0``, are checked by :mod:`neurofeat.ingest.normalise`.)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from neurofeat.ingest.discover import OPTIONAL_SEQUENCES, SEQUENCES
from neurofeat.ingest.nifti import ScanInfo

__all__ = [
    "Problem",
    "check_sequences_present",
    "check_geometry",
    "find_duplicate_ids",
    "find_unknown_patients",
    "find_already_stored",
]


@dataclass(frozen=True)
class Problem:
    """One reason to reject one patient.

    Attributes
    ----------
    patient_id : str or None
        The patient concerned (None when a row has no id).
    source : str
        File (or folder) the problem was found in.
    row : int or None
        Spreadsheet row number in *source* (header = row 1), if it comes from a table.
    column : str or None
        Column (or sequence) concerned.
    reason : str
        What is wrong and what to do.
    """

    patient_id: str | None
    source: str
    row: int | None
    column: str | None
    reason: str

    def __str__(self) -> str:
        where = self.source if self.row is None else f"{self.source} row {self.row}"
        if self.patient_id:
            where += f" (patient {self.patient_id})"
        return f"{where}: {self.reason}"


def check_sequences_present(patient_id: str, scans: Mapping[str, object], *,
                            source: str) -> list[Problem]:
    """Report sequences of :data:`SEQUENCES` that a patient lacks.

    Parameters
    ----------
    patient_id : str
    scans : mapping of str to object
        Sequence -> path (or anything; a missing key or a None/empty value is missing).
    source : str
        Manifest file or discovery folder.

    Returns
    -------
    list of Problem
    """
    missing = [s for s in SEQUENCES if not scans.get(s)]
    if not missing:
        return []
    return [Problem(patient_id, source, None, ", ".join(missing),
                    f"missing sequence(s) {', '.join(missing)}; every patient needs "
                    "t1, t1ce, t2 and flair (add the files, or pass --skip-bad to leave "
                    "this patient out)")]


def check_geometry(patient_id: str, infos: Mapping[str, ScanInfo], *, source: str,
                   atol: float = 1e-4) -> list[Problem]:
    """Check that a patient's sequences (and segmentation) share one voxel grid and one affine.

    The extraction stage stacks the four sequences as channels of one array, so they
    must be co-registered on the same grid (BraTS data are); a segmentation (``seg``)
    must label voxels of that grid.

    Parameters
    ----------
    patient_id : str
    infos : mapping of str to ScanInfo
        Sequence -> inspected scan.
    source : str
        Manifest file or discovery folder.
    atol : float
        Absolute tolerance (mm) for comparing affines (``numpy.allclose``, rtol 1e-5).

    Returns
    -------
    list of Problem
    """
    if len(infos) < 2:
        return []
    problems: list[Problem] = []
    ref_seq = next(s for s in (*SEQUENCES, *infos) if s in infos)
    ref = infos[ref_seq]
    for seq, info in infos.items():
        if seq == ref_seq:
            continue
        if seq in OPTIONAL_SEQUENCES and (info.shape != ref.shape or not np.allclose(
                info.affine_matrix, ref.affine_matrix, rtol=1e-5, atol=atol)):
            differs = (f"shape {info.shape}, not {ref.shape}" if info.shape != ref.shape else
                       f"affine differs by up to {np.max(np.abs(info.affine_matrix - ref.affine_matrix)):.4g}")
            problems.append(Problem(
                patient_id, source, None, seq,
                f"the segmentation {info.path} is not on the grid of {ref_seq} ({differs}); resample "
                "the label map onto the images' grid (nearest neighbour), or leave it out"))
        elif info.shape != ref.shape:
            problems.append(Problem(
                patient_id, source, None, seq,
                f"{seq} has shape {info.shape} but {ref_seq} has {ref.shape}; the four "
                "sequences must be resampled onto one grid (e.g. co-register to the "
                "t1ce, as BraTS does)"))
        elif not np.allclose(info.affine_matrix, ref.affine_matrix, rtol=1e-5, atol=atol):
            worst = float(np.max(np.abs(info.affine_matrix - ref.affine_matrix)))
            problems.append(Problem(
                patient_id, source, None, seq,
                f"{seq} has a different affine from {ref_seq} (largest difference "
                f"{worst:.4g}); the sequences must be co-registered in one space"))
    return problems


def find_duplicate_ids(rows: Iterable[tuple[int | None, str]], *, source: str) -> list[Problem]:
    """Report patient ids that occur on more than one row of a table.

    Parameters
    ----------
    rows : iterable of (row, patient_id)
        Spreadsheet row (None if not from a table) and id, in file order.
    source : str
        The file.

    Returns
    -------
    list of Problem
        One per offending row, naming all rows of that id.
    """
    rows_of: dict[str, list[int | None]] = defaultdict(list)
    for row, pid in rows:
        rows_of[pid].append(row)
    problems = []
    for pid, found in rows_of.items():
        if len(found) > 1:
            listed = ", ".join(str(r) for r in found)
            problems.extend(
                Problem(pid, source, row, "patient_id",
                        f"patient id {pid!r} appears on rows {listed}; patient ids must be "
                        "unique: merge the rows or fix the id")
                for row in found)
    return problems


def find_unknown_patients(rows: Iterable[tuple[int, str]], known_ids: Iterable[str], *,
                          source: str, known_source: str) -> list[Problem]:
    """Report clinical rows whose patient has no scans.

    Parameters
    ----------
    rows : iterable of (row, patient_id)
        Spreadsheet row and id of each clinical row.
    known_ids : iterable of str
        Patients of the manifest / discovered folder.
    source : str
        The clinical file.
    known_source : str
        Where *known_ids* come from (for the message).

    Returns
    -------
    list of Problem
    """
    known = set(known_ids)
    return [Problem(pid, source, row, "patient_id",
                    f"patient {pid!r} has no scans in {known_source}; fix the id, add the "
                    "patient's scans, or remove the row")
            for row, pid in rows if pid not in known]


def find_already_stored(patient_ids: Iterable[str], stored_ids: Iterable[str], *,
                        source: str, store: str) -> list[Problem]:
    """Report patients that are already registered in the store.

    Parameters
    ----------
    patient_ids : iterable of str
        Patients about to be ingested.
    stored_ids : iterable of str
        Patients the store holds.
    source : str
        The file they come from.
    store : str
        Store path, for the message.

    Returns
    -------
    list of Problem
    """
    stored = set(stored_ids)
    return [Problem(pid, source, None, "patient_id",
                    f"patient {pid!r} is already in the store {store}; nothing stored is "
                    "changed: remove it from this input, or ingest into a new store")
            for pid in dict.fromkeys(patient_ids) if pid in stored]
