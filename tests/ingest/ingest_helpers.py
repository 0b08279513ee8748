"""Helpers for the ingest tests: tiny (8^3) NIfTI cohorts written with nibabel."""

from __future__ import annotations

from collections.abc import Sequence
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

SHAPE = (8, 8, 8)
BRATS23 = {"t1": "t1n", "t1ce": "t1c", "t2": "t2w", "flair": "t2f"}
BRATS20 = {"t1": "t1", "t1ce": "t1ce", "t2": "t2", "flair": "flair"}


def write_nifti(path: Path, *, shape: Sequence[int] = SHAPE, affine: np.ndarray | None = None,
                zooms: Sequence[float] | None = None, seed: int = 0) -> Path:
    """Write a small float32 NIfTI volume (random values) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(seed).random(tuple(shape), dtype=np.float32)
    if affine is None:
        affine = np.diag([*(zooms or (1.0, 1.0, 1.0)), 1.0])
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def write_patient(folder: Path, patient_id: str, *, style: str = "2023", ext: str = ".nii.gz",
                  sequences: Sequence[str] = ("t1", "t1ce", "t2", "flair"),
                  shapes: dict[str, Sequence[int]] | None = None) -> dict[str, Path]:
    """Write one patient's scans in BraTS 2023 (``-t1n``) or 2020 (``_t1``) naming."""
    names, sep = (BRATS23, "-") if style == "2023" else (BRATS20, "_")
    paths = {}
    for i, seq in enumerate(sequences):
        shape = (shapes or {}).get(seq, SHAPE)
        paths[seq] = write_nifti(folder / f"{patient_id}{sep}{names[seq]}{ext}", shape=shape,
                                 seed=zlib.crc32(f"{patient_id}{i}".encode()))
    return paths


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> Path:
    """Write a small CSV (values as given; None -> empty)."""
    lines = [",".join(header)]
    lines += [",".join("" if v is None else str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def store_files(store: Path) -> set[str]:
    """Every file under a store (relative paths), to show a failed ingest changed nothing.

    Lock files (``.staging/locks/``) are left out: they say who last held a lock, not
    what the store holds.
    """
    if not store.exists():
        return set()
    return {str(p.relative_to(store)) for p in store.rglob("*")
            if p.is_file() and ".staging/locks" not in p.relative_to(store).as_posix()}
