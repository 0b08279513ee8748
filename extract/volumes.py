"""Reading a patient's NIfTI scans into one channel-stacked float32 array.

Decoding is most of the cost of a cold extraction on CPU, so this module reads a scan
the cheap way and stacks the sequences with a single copy each:

- a ``.nii.gz`` is read whole and inflated in one call (ISA-L's ``isal_zlib`` when the
  ``isal`` package is installed, the standard ``zlib`` otherwise), instead of
  nibabel's streaming ``GzipFile`` reads, which inflate in 32 KiB pieces;
- the header fix-up is MONAI's own (``correct_nifti_header_if_necessary``), as in
  MONAI's ``NibabelReader``;
- each volume is cast and transposed from NIfTI's Fortran order into the C-ordered
  ``(C, X, Y, Z)`` float32 buffer in one pass, where MONAI's ``LoadImaged`` +
  ``ConcatItemsd`` make a C-ordered copy, a float32 copy and then the stack.

The values are those of MONAI's ``LoadImaged(reader="NibabelReader", dtype=float32)``
followed by ``ConcatItemsd`` (``tests/extract/test_volumes.py`` checks it bit for bit).

Example
-------
>>> image, affine = read_stacked(["t1.nii.gz", "t2.nii.gz"], patient_id="P1")  # doctest: +SKIP
>>> image.shape, image.dtype                                                   # doctest: +SKIP
((2, 240, 240, 155), dtype('float32'))
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

try:  # ISA-L inflates gzip about twice as fast as zlib
    from isal.igzip import decompress as _gunzip
except ImportError:  # pragma: no cover - exercised where isal is absent
    from gzip import decompress as _gunzip

__all__ = ["gunzip", "read_nifti", "read_stacked", "ScanGridError", "ScanReadError"]

_GZIP_MAGIC = b"\x1f\x8b"
_NIFTI1_MAGICS = (b"n+1\x00", b"ni1\x00")


class ScanGridError(ValueError):
    """A patient's sequences are not on one voxel grid, or a scan is not 3-D."""


class ScanReadError(ValueError):
    """A scan file cannot be read (truncated, not NIfTI, unreadable); names patient and file."""


def gunzip(data: bytes) -> bytes:
    """Inflate a complete gzip file (every member, as ``gzip.decompress``) in one call.

    Raises
    ------
    gzip.BadGzipFile, EOFError, zlib.error
        Not gzip, truncated, or corrupt (as ``gzip.decompress``).
    """
    return _gunzip(data)


def read_nifti(path: str | os.PathLike[str]) -> Any:
    """The nibabel image of *path*, with MONAI's header correction applied.

    A gzipped NIfTI-1 file is inflated in one call and parsed from memory; anything
    else (plain ``.nii``, NIfTI-2, Analyze) goes through ``nibabel.load``.
    """
    import nibabel as nib
    from monai.data import correct_nifti_header_if_necessary

    path = os.fspath(path)
    image = None
    with open(path, "rb") as handle:
        head = handle.read(2)
        if head == _GZIP_MAGIC:
            raw = gunzip(head + handle.read())
            if raw[344:348] in _NIFTI1_MAGICS:
                image = nib.Nifti1Image.from_bytes(raw)
    if image is None:
        image = nib.load(path)
    return correct_nifti_header_if_necessary(image)


def _spatial_array(image: Any, path: str, patient_id: str, sequence: str) -> np.ndarray:
    """The scaled voxel array of *image* as a 3-D array (trailing size-1 axes dropped)."""
    array = np.asanyarray(image.dataobj)
    shape = array.shape
    while array.ndim > 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 3:
        raise ScanGridError(
            f"patient {patient_id}: sequence '{sequence}' is not a single 3-D volume "
            f"(array shape {tuple(shape)}, file {path}); store one 3-D NIfTI per sequence"
        )
    return array


def read_stacked(
    paths: Sequence[str | os.PathLike[str] | None],
    *,
    names: Sequence[str] | None = None,
    patient_id: str = "<unknown patient>",
    atol: float = 1e-3,
) -> tuple[np.ndarray, np.ndarray]:
    """Read one scan per channel into a ``(C, X, Y, Z)`` float32 array and its affine.

    Parameters
    ----------
    paths : sequence of path or None
        One file per channel; ``None`` leaves the channel at zero (a zero-filled
        sequence). At least one path must be given.
    names : sequence of str, optional
        Sequence names for messages (default ``ch0, ch1, ...``).
    patient_id : str
        Named in every message.
    atol : float
        Tolerance on affine entries (mm) when checking that the scans share a grid.

    Returns
    -------
    image : numpy.ndarray
        float32, C-ordered, ``(len(paths), X, Y, Z)``.
    affine : numpy.ndarray
        float64 ``(4, 4)`` voxel-to-world affine of the first scan (nibabel's
        ``img.affine``: sform, else qform).

    Raises
    ------
    ScanGridError
        A file is not one 3-D volume, or two scans differ in shape or affine (the
        message names patient, sequences and the fix).
    ScanReadError
        A file cannot be read (truncated, corrupt, not NIfTI); names patient, sequence
        and file.
    """
    from nibabel.filebasedimages import ImageFileError
    from nibabel.spatialimages import HeaderDataError

    names = [f"ch{i}" for i in range(len(paths))] if names is None else list(names)
    present = [i for i, p in enumerate(paths) if p is not None]
    if not present:
        raise ValueError(f"patient {patient_id}: no scan to read")
    ref = present[0]
    image: np.ndarray | None = None
    ref_affine = np.eye(4)
    ref_shape: tuple[int, ...] = ()
    for i in present:
        path = os.fspath(paths[i])  # type: ignore[arg-type]
        try:
            nifti = read_nifti(path)
            affine = np.array(nifti.affine, dtype=np.float64, copy=True)
            array = _spatial_array(nifti, path, patient_id, names[i])
        except ScanGridError:
            raise
        except (OSError, EOFError, ValueError, zlib.error, ImageFileError, HeaderDataError) as exc:
            raise ScanReadError(
                f"patient {patient_id}: cannot read sequence '{names[i]}' from {path} "
                f"({type(exc).__name__}: {exc}); replace the file with an intact NIfTI and re-run"
            ) from exc
        if image is None:
            ref_shape, ref_affine = array.shape, affine
            image = np.zeros((len(paths), *array.shape), dtype=np.float32)
        elif array.shape != ref_shape:
            raise ScanGridError(
                f"patient {patient_id}: sequences '{names[ref]}' {tuple(ref_shape)} and "
                f"'{names[i]}' {tuple(array.shape)} have different shapes; co-register the "
                "sequences to one grid (e.g. to T1ce) before ingest"
            )
        elif not np.allclose(ref_affine, affine, atol=atol):
            raise ScanGridError(
                f"patient {patient_id}: sequences '{names[ref]}' and '{names[i]}' have different "
                f"affines (max difference {np.abs(ref_affine - affine).max():.4g} mm); co-register "
                "the sequences to one grid before ingest"
            )
        image[i] = array  # one pass: cast to float32 and Fortran -> C order
    assert image is not None
    return image, ref_affine
