"""Find the four MRI sequences (and an optional segmentation) of each patient in a BraTS-style folder tree.

Recognised file names (case-insensitive, ``.nii`` or ``.nii.gz``), where ``<id>`` is the
patient id:

=============  =======================  ==========================================
sequence       BraTS 2023 (and later)   BraTS 2020/21, UCSF-PDGM, UPenn-GBM
=============  =======================  ==========================================
``t1``         ``<id>-t1n``             ``<id>_t1``
``t1ce``       ``<id>-t1c``             ``<id>_t1ce``, ``<id>_t1c``, ``<id>_t1gd``
``t2``         ``<id>-t2w``             ``<id>_t2``
``flair``      ``<id>-t2f``             ``<id>_flair``
``seg``        ``<id>-seg``             ``<id>_seg`` (optional: tumour labels)
=============  =======================  ==========================================

The patient id is the file-name prefix (``BraTS-GLI-00000-000`` of
``BraTS-GLI-00000-000-t1n.nii.gz``); a file named only by its sequence (``t1.nii.gz``)
takes its folder's name. Files may sit in one folder per patient (the usual layout) or
side by side, at any depth below the root. The segmentation (BraTS labels; any
non-zero label is tumour) is optional: a patient without one is complete. Other files
(``_T2_bias``, DWI, ...) are ignored.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "SEQUENCES",
    "OPTIONAL_SEQUENCES",
    "ALL_SEQUENCES",
    "SEQUENCE_ALIASES",
    "DiscoveryError",
    "DiscoveredPatient",
    "discover_scans",
    "sequence_of",
]

#: Canonical sequence names, in channel order.
SEQUENCES: tuple[str, ...] = ("t1", "t1ce", "t2", "flair")

#: Files registered when present but not required (``seg``: the tumour segmentation,
#: used by the radiomics backbone as its region).
OPTIONAL_SEQUENCES: tuple[str, ...] = ("seg",)

#: Every sequence a patient may have registered, required ones first.
ALL_SEQUENCES: tuple[str, ...] = SEQUENCES + OPTIONAL_SEQUENCES

#: File-name suffix (lower case) -> canonical sequence.
SEQUENCE_ALIASES: dict[str, str] = {
    "t1n": "t1", "t1": "t1", "t1w": "t1", "t1native": "t1",
    "t1c": "t1ce", "t1ce": "t1ce", "t1gd": "t1ce", "t1post": "t1ce", "t1wce": "t1ce",
    "t2w": "t2", "t2": "t2",
    "t2f": "flair", "flair": "flair", "t2flair": "flair", "t2_flair": "flair",
    "seg": "seg", "segmentation": "seg",
}

_FILE_RE = re.compile(
    r"^(?:(?P<prefix>.*?)[-_.])?(?P<seq>" + "|".join(
        sorted((re.escape(a) for a in SEQUENCE_ALIASES), key=len, reverse=True))
    + r")\.nii(?:\.gz)?$",
    re.IGNORECASE,
)


class DiscoveryError(ValueError):
    """A folder tree that cannot be read as a cohort (message says what to do)."""


@dataclass(frozen=True)
class DiscoveredPatient:
    """The scans found for one patient.

    Attributes
    ----------
    patient_id : str
        File-name prefix (or folder name).
    folder : Path
        The folder holding the scans.
    scans : dict of str to Path
        Sequence -> file, for the sequences found (``seg`` too, when there is one).
    missing : tuple of str
        Required sequences (:data:`SEQUENCES`) that were not found.
    """

    patient_id: str
    folder: Path
    scans: dict[str, Path] = field(default_factory=dict)

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(s for s in SEQUENCES if s not in self.scans)


def sequence_of(filename: str) -> tuple[str, str] | None:
    """Parse a scan file name.

    Parameters
    ----------
    filename : str
        A file name (no folder).

    Returns
    -------
    (prefix, sequence) or None
        ``prefix`` is ``''`` for a file named only by its sequence; None if the name is
        not a recognised scan.

    Examples
    --------
    >>> sequence_of("BraTS-GLI-00000-000-t2f.nii.gz")
    ('BraTS-GLI-00000-000', 'flair')
    >>> sequence_of("BraTS2021_00000_T1ce.nii")
    ('BraTS2021_00000', 't1ce')
    >>> sequence_of("BraTS2021_00000_seg.nii.gz")
    ('BraTS2021_00000', 'seg')
    >>> sequence_of("BraTS2021_00000_T2_bias.nii.gz") is None
    True
    """
    match = _FILE_RE.match(filename)
    if match is None:
        return None
    return match.group("prefix") or "", SEQUENCE_ALIASES[match.group("seq").lower()]


def discover_scans(root: str | Path) -> list[DiscoveredPatient]:
    """Walk *root* and group scan files into patients.

    Parameters
    ----------
    root : str or Path
        Top folder of the cohort (e.g. ``BraTS2021_Training_Data``).

    Returns
    -------
    list of DiscoveredPatient
        Sorted by patient id; a patient missing a sequence is still listed (see
        ``missing``) so that validation can report it.

    Raises
    ------
    DiscoveryError
        If *root* is not a folder, holds no recognisable scan, or one patient id /
        sequence is found twice (e.g. ``P1_t1.nii`` next to ``P1_t1.nii.gz``, or the same
        patient in two folders).
    """
    root = Path(root).absolute()
    if not root.is_dir():
        raise DiscoveryError(f"--discover {root}: not a folder; pass the folder that holds "
                             "one sub-folder per patient")
    patients: dict[str, DiscoveredPatient] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        folder = Path(dirpath)
        for filename in sorted(filenames):
            parsed = sequence_of(filename)
            if parsed is None:
                continue
            prefix, sequence = parsed
            patient_id = prefix or folder.name
            path = folder / filename
            patient = patients.get(patient_id)
            if patient is None:
                patient = patients[patient_id] = DiscoveredPatient(patient_id, folder)
            elif patient.folder != folder:
                raise DiscoveryError(
                    f"patient {patient_id} is found in two folders: {patient.folder} and "
                    f"{folder}; remove or rename one of them")
            if sequence in patient.scans:
                raise DiscoveryError(
                    f"patient {patient_id} {sequence}: two files, {patient.scans[sequence].name} "
                    f"and {filename}, in {folder}; keep one")
            patient.scans[sequence] = path
    if not patients:
        raise DiscoveryError(
            f"--discover {root}: no scan files found; expected names like "
            "<patient>-t1n.nii.gz / -t1c / -t2w / -t2f (BraTS 2023) or "
            "<patient>_t1.nii.gz / _t1ce / _t2 / _flair (BraTS 2020/21); "
            "otherwise write a manifest (--manifest) with columns patient_id, site, t1, t1ce, "
            "t2, flair")
    return [patients[p] for p in sorted(patients)]
