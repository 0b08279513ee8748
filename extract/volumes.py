"""Reading a patient's NIfTI scans into one channel-stacked float32 array.

Decoding is most of the cost of a cold extraction on CPU, so this module reads a scan
the cheap way and stacks the sequences with a single copy each:

- a ``.nii.gz`` is read whole and inflated in one call (ISA-L's ``igzip`` when the
  ``isal`` package is installed, the standard ``gzip`` otherwise), instead of
  nibabel's streaming ``GzipFile`` reads, which inflate in 32 KiB pieces;
- the header fix-up is MONAI's own (``correct_nifti_header_if_necessary``), as in
  MONAI's ``NibabelReader``;
- each volume is cast and transposed from NIfTI's Fortran order into the C-ordered
  ``(C, X, Y, Z)`` float32 buffer in one pass, where MONAI's ``LoadImaged`` +
  ``ConcatItemsd`` make a C-ordered copy, a float32 copy and then the stack.

The values are those of MONAI's ``LoadImaged(reader="NibabelReader", dtype=float32)``
followed by ``ConcatItemsd`` (``tests/extract/test_preprocess_equivalence.py`` checks it
bit for bit).

Example
-------
>>> image, affine = read_stacked(["t1.nii.gz", "t2.nii.gz"], patient_id="P1")  # doctest: +SKIP
>>> image.shape, image.dtype                                                   # doctest: +SKIP
((2, 240, 240, 155), dtype('float32'))
"""

from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

try:  # ISA-L inflates gzip about twice as fast as zlib
    from isal.igzip import decompress as _gunzip
    from isal.isal_zlib import error as _InflateError
except ImportError:  # pragma: no cover - exercised where isal is absent
    from gzip import decompress as _gunzip
    from zlib import error as _InflateError

__all__ = ["gunzip", "read_nifti", "read_stacked", "parse_scan_sha256", "spatial_shape", "check_same_grid",
           "verify_scans", "ScanGridError", "ScanReadError", "ScanChangedError"]

_GZIP_MAGIC = b"\x1f\x8b"
_NIFTI1_SINGLE_FILE = b"n+1\x00"  # "ni1" is a .hdr/.img pair: nibabel.load reads those


class ScanGridError(ValueError):
    """A patient's sequences are not on one voxel grid, or a scan is not 3-D."""


class ScanReadError(ValueError):
    """A scan file cannot be read (truncated, not NIfTI, unreadable); names patient and file."""


class ScanChangedError(ValueError):
    """A scan file's bytes are not those registered at ingest (its sha256 differs).

    Attributes
    ----------
    path, expected, actual : str
        The file, the registered sha256 and the file's sha256 now.
    """

    def __init__(self, path: str, expected: str, actual: str) -> None:
        self.path, self.expected, self.actual = path, expected, actual
        super().__init__(f"{path} has sha256 {actual[:12]}…, not the {expected[:12]}… registered at ingest")


def gunzip(data: bytes) -> bytes:
    """Inflate a complete gzip file (every member, as ``gzip.decompress``) in one call.

    Raises
    ------
    gzip.BadGzipFile, EOFError, zlib.error
        Not gzip, truncated, or corrupt (as ``gzip.decompress``; ISA-L's own error for
        corrupt data becomes ``zlib.error``).
    """
    try:
        return _gunzip(data)
    except _InflateError as exc:
        if isinstance(exc, zlib.error):
            raise
        raise zlib.error(str(exc)) from exc


def read_nifti(path: str | os.PathLike[str], expected_sha256: str | None = None) -> Any:
    """The nibabel image of *path*, with MONAI's header correction applied.

    The file is read whole; a single-file NIfTI-1 (``.nii`` or ``.nii.gz``, inflated in
    one call) is parsed from memory, anything else (NIfTI-2, Analyze or NIfTI pairs)
    goes through ``nibabel.load``.

    Parameters
    ----------
    path : path
    expected_sha256 : str, optional
        The sha256 of the file's bytes registered at ingest; a different file is refused.

    Raises
    ------
    ScanChangedError
        The file's sha256 is not *expected_sha256*.
    """
    import nibabel as nib
    from monai.data import correct_nifti_header_if_necessary

    path = os.fspath(path)
    with open(path, "rb") as handle:
        data = handle.read()
    if expected_sha256:
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected_sha256.lower():
            raise ScanChangedError(path, expected_sha256, actual)
    raw = gunzip(data) if data[:2] == _GZIP_MAGIC else data
    if raw[344:348] == _NIFTI1_SINGLE_FILE:
        image = nib.Nifti1Image.from_bytes(raw)
    else:
        image = nib.load(path)
    return correct_nifti_header_if_necessary(image)


def parse_scan_sha256(text: str | None) -> dict[str, str]:
    """``"t1=<sha>;t1ce=<sha>;t2=;..."`` (a record's ``scan_sha256``) -> ``{"t1": sha, ...}``.

    Sequences without a hash are left out.
    """
    out = {}
    for item in filter(None, str(text or "").split(";")):
        name, _, digest = item.partition("=")
        if digest:
            out[name] = digest
    return out


def spatial_shape(shape: Sequence[int], path: str, patient_id: str, sequence: str) -> tuple[int, ...]:
    """The 3-D grid of a scan of array *shape*: trailing size-1 axes dropped.

    Raises
    ------
    ScanGridError
        More than three axes remain (a 4-D series), or fewer than three.
    """
    spatial = tuple(int(s) for s in shape)
    while len(spatial) > 3 and spatial[-1] == 1:
        spatial = spatial[:-1]
    if len(spatial) != 3:
        raise ScanGridError(
            f"patient {patient_id}: sequence '{sequence}' is not a single 3-D volume "
            f"(array shape {tuple(shape)}, file {path}); store one 3-D NIfTI per sequence"
        )
    return spatial


def check_same_grid(
    grids: Sequence[tuple[str, tuple[int, ...], np.ndarray]], *, patient_id: str, atol: float = 1e-3
) -> None:
    """Check that every ``(sequence, shape, affine)`` lies on the first one's grid.

    Shapes must be equal and affines equal within *atol* (mm).

    Raises
    ------
    ScanGridError
        Naming the patient, the two sequences (or the one with a non-finite affine)
        and the fix.
    """
    for name, _, affine in grids:
        if not np.isfinite(affine).all():
            raise ScanGridError(
                f"patient {patient_id}: sequence '{name}' has a non-finite affine (NaN or inf in its "
                "sform/qform); repair the NIfTI header before ingest"
            )
    if not grids:
        return
    ref_name, ref_shape, ref_affine = grids[0]
    for name, shape, affine in grids[1:]:
        if tuple(shape) != tuple(ref_shape):
            raise ScanGridError(
                f"patient {patient_id}: sequences '{ref_name}' {tuple(ref_shape)} and "
                f"'{name}' {tuple(shape)} have different shapes; co-register the "
                "sequences to one grid (e.g. to T1ce) before ingest"
            )
        if not np.allclose(ref_affine, affine, atol=atol):
            raise ScanGridError(
                f"patient {patient_id}: sequences '{ref_name}' and '{name}' have different "
                f"affines (max difference {np.abs(ref_affine - affine).max():.4g} mm); co-register "
                "the sequences to one grid before ingest"
            )


def _changed(patient_id: str, sequence: str, exc: ScanChangedError) -> ScanReadError:
    return ScanReadError(
        f"patient {patient_id}: sequence '{sequence}' changed since ingest ({exc}); restore the "
        "file, or re-ingest the patient so that its scans are registered as they are now"
    )


def _unreadable(patient_id: str, sequence: str, path: str, exc: BaseException) -> ScanReadError:
    return ScanReadError(
        f"patient {patient_id}: cannot read sequence '{sequence}' from {path} "
        f"({type(exc).__name__}: {exc}); replace the file with an intact NIfTI and re-run"
    )


def verify_scans(
    paths: Sequence[str | os.PathLike[str]],
    sha256s: Sequence[str],
    *,
    names: Sequence[str],
    patient_id: str = "<unknown patient>",
) -> None:
    """Check that each file's bytes are those registered at ingest, without decoding.

    Raises
    ------
    ScanReadError
        A file cannot be read, or its sha256 differs (same messages as
        :func:`read_stacked`).
    """
    from neurofeat.hashing import sha256_file  # the hash ingest registered

    for path, expected, name in zip(paths, sha256s, names):
        path = os.fspath(path)
        try:
            actual = sha256_file(path)
        except OSError as exc:
            raise _unreadable(patient_id, name, path, exc) from exc
        if actual != expected.lower():
            raise _changed(patient_id, name, ScanChangedError(path, expected, actual))


def read_stacked(
    paths: Sequence[str | os.PathLike[str] | None],
    *,
    names: Sequence[str] | None = None,
    patient_id: str = "<unknown patient>",
    atol: float = 1e-3,
    sha256s: Sequence[str | None] | None = None,
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
    sha256s : sequence of str or None, optional
        Per channel, the sha256 registered at ingest: a file whose bytes changed since
        is refused, so that a stored embedding always comes from the registered scan.

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
        A file cannot be read (truncated, corrupt, not NIfTI), or its bytes are not
        those registered at ingest; names patient, sequence and file.
    """
    from nibabel.filebasedimages import ImageFileError
    from nibabel.spatialimages import HeaderDataError

    names = [f"ch{i}" for i in range(len(paths))] if names is None else list(names)
    present = [i for i, p in enumerate(paths) if p is not None]
    if not present:
        raise ValueError(f"patient {patient_id}: no scan to read")
    image: np.ndarray | None = None
    grids: list[tuple[str, tuple[int, ...], np.ndarray]] = []
    for i in present:
        path = os.fspath(paths[i])  # type: ignore[arg-type]
        try:
            nifti = read_nifti(path, sha256s[i] if sha256s is not None else None)
            affine = np.array(nifti.affine, dtype=np.float64, copy=True)
            array = np.asanyarray(nifti.dataobj)
        except ScanChangedError as exc:
            raise _changed(patient_id, names[i], exc) from exc
        except (OSError, EOFError, ValueError, zlib.error, ImageFileError, HeaderDataError) as exc:
            raise _unreadable(patient_id, names[i], path, exc) from exc
        array = array.reshape(spatial_shape(array.shape, path, patient_id, names[i]))
        grids.append((names[i], array.shape, affine))
        check_same_grid(grids, patient_id=patient_id, atol=atol)  # before the copy: shapes must match
        if image is None:
            image = np.zeros((len(paths), *array.shape), dtype=np.float32)
        image[i] = array  # one pass: cast to float32 and Fortran -> C order
    assert image is not None
    return image, grids[0][2]
