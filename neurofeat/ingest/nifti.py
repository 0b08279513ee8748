"""Inspect one NIfTI scan: shape, voxel spacing, affine and the sha256 of its bytes.

The header is read with nibabel. The file is then streamed once: its raw bytes feed
the sha256, and for ``.nii.gz`` they also go through a gzip decompressor, so that a
truncated or corrupt archive (which nibabel's lazy loading would only notice when the
voxels are read, much later, in the extraction stage) is caught at ingest. The number
of (decompressed) bytes must cover the voxel data the header announces.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neurofeat.hashing import sha256_file  # re-exported: ingest registers this hash

__all__ = ["ScanError", "ScanInfo", "inspect_nifti", "sha256_file"]

_CHUNK = 1 << 20


class ScanError(ValueError):
    """A scan that cannot be read; the message names patient, sequence and path.

    Parameters
    ----------
    patient_id : str
        Patient the scan belongs to.
    sequence : str
        ``'t1'``, ``'t1ce'``, ``'t2'`` or ``'flair'``.
    path : Path
        The file.
    problem : str
        What is wrong and what to do.
    """

    def __init__(self, patient_id: str, sequence: str, path: Path | str, problem: str) -> None:
        self.patient_id = patient_id
        self.sequence = sequence
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"patient {patient_id} {sequence} ({path}): {problem}")


@dataclass(frozen=True)
class ScanInfo:
    """What the store records about one scan.

    Attributes
    ----------
    path : Path
        Absolute path of the file.
    sha256 : str
        Hex sha256 of the file's bytes (as stored on disk, compressed or not).
    shape : tuple of int
        Voxel grid ``(X, Y, Z)``.
    spacing : tuple of float
        Voxel size in mm from the header zooms, ``(dx, dy, dz)``.
    affine : tuple of float
        The 4x4 voxel-to-world affine, row-major, 16 values.
    """

    path: Path
    sha256: str
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    affine: tuple[float, ...]

    @property
    def affine_matrix(self) -> np.ndarray:
        """The affine as a ``(4, 4)`` float64 array."""
        return np.asarray(self.affine, dtype=np.float64).reshape(4, 4)


def _hash_and_measure(path: Path, gz: bool) -> tuple[str, int]:
    """One pass over the file: sha256 of the raw bytes, and the payload length.

    For gzip files the payload is the decompressed stream (all members); a stream that
    ends early or fails its CRC raises ``EOFError``/``zlib.error``.
    """
    digest = hashlib.sha256()
    payload = 0
    decomp = zlib.decompressobj(wbits=31) if gz else None
    started = False
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            if decomp is None:
                payload += len(chunk)
                continue
            data = chunk
            while data:
                started = True
                payload += len(decomp.decompress(data))
                if decomp.eof:
                    data = decomp.unused_data
                    decomp = zlib.decompressobj(wbits=31)
                    started = False
                else:
                    data = b""
    if decomp is not None and started:
        payload += len(decomp.flush())
        if not decomp.eof:
            raise EOFError("the gzip stream ends early")
    return digest.hexdigest(), payload


def inspect_nifti(path: str | Path, *, patient_id: str = "?", sequence: str = "?") -> ScanInfo:
    """Read a NIfTI header and check the whole file is there.

    Parameters
    ----------
    path : str or Path
        A ``.nii`` or ``.nii.gz`` file.
    patient_id, sequence : str
        Used in error messages only.

    Returns
    -------
    ScanInfo

    Raises
    ------
    ScanError
        If the file is missing, not NIfTI, truncated or corrupt, not a 3-D volume, or
        has a non-finite affine or non-positive voxel spacing.

    Examples
    --------
    >>> info = inspect_nifti("P001/P001-t1n.nii.gz", patient_id="P001", sequence="t1")  # doctest: +SKIP
    >>> info.shape, info.spacing  # doctest: +SKIP
    ((240, 240, 155), (1.0, 1.0, 1.0))
    """
    import nibabel as nib

    path = Path(path).absolute()

    def fail(problem: str) -> ScanError:
        return ScanError(patient_id, sequence, path, problem)

    if not path.exists():
        raise fail("file does not exist; check the path in the manifest "
                   "(relative paths are read from the manifest's folder)")
    if not path.is_file():
        raise fail("is not a file; point the manifest at a .nii or .nii.gz file")
    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises many types for a bad file
        raise fail(f"cannot be read as NIfTI ({type(exc).__name__}: {exc}); re-export it as "
                   ".nii/.nii.gz, or re-copy it if the transfer was cut short") from None
    header = img.header
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise fail(f"is a {type(img).__name__}, not NIfTI; convert it to .nii.gz "
                   "(e.g. with dcm2niix)")
    shape = tuple(int(s) for s in header.get_data_shape())
    if len(shape) < 3 or any(s != 1 for s in shape[3:]):
        raise fail(f"has shape {shape}; expected a 3-D volume (one scan per file)")
    shape3 = shape[:3]
    if min(shape3) < 1:
        raise fail(f"has an empty voxel grid {shape3}; re-export the scan")
    spacing = tuple(float(z) for z in header.get_zooms()[:3])
    if not all(np.isfinite(spacing)) or min(spacing) <= 0:
        raise fail(f"has voxel spacing {spacing}; the header zooms must be positive mm values")
    affine = np.asarray(img.affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise fail("has a non-finite affine; fix the sform/qform of the header")

    gz = path.name.lower().endswith(".gz")
    try:
        sha, payload = _hash_and_measure(path, gz)
    except (EOFError, zlib.error) as exc:
        raise fail(f"is truncated or corrupt ({exc}); re-copy or re-download the file") from None
    except OSError as exc:
        raise fail(f"cannot be read ({exc}); check the file's permissions") from None
    itemsize = header.get_data_dtype().itemsize
    offset = max(int(getattr(img.dataobj, "offset", 0)), int(header.get_data_offset()))
    needed = offset + int(np.prod(shape, dtype=np.int64)) * itemsize
    if payload < needed:
        raise fail(f"is truncated: header and voxels need {needed} bytes, the file holds "
                   f"{payload}; re-copy or re-download the file")
    return ScanInfo(
        path=path,
        sha256=sha,
        shape=(shape3[0], shape3[1], shape3[2]),
        spacing=(spacing[0], spacing[1], spacing[2]),
        affine=tuple(float(v) for v in affine.ravel()),
    )
