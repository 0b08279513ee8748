"""NIfTI inspection: header facts, sha256, and unreadable/truncated files."""

from __future__ import annotations

import gzip
import hashlib

import nibabel as nib
import numpy as np
import pytest

from ingest_helpers import write_nifti
from neurofeat.ingest.nifti import ScanError, inspect_nifti, sha256_file


@pytest.mark.parametrize("ext", [".nii", ".nii.gz"])
def test_header_facts_and_hash(tmp_path, ext):
    affine = np.array([[-0.9, 0, 0, 90], [0, 1.1, 0, -120], [0, 0, 2.5, -60], [0, 0, 0, 1]])
    path = write_nifti(tmp_path / f"s{ext}", shape=(8, 7, 6), affine=affine)
    info = inspect_nifti(path, patient_id="P1", sequence="t1")
    assert info.shape == (8, 7, 6)
    # spacing comes from the header zooms, which nibabel derives from the affine
    assert info.spacing == pytest.approx(nib.load(path).header.get_zooms()[:3])
    assert info.spacing == pytest.approx((0.9, 1.1, 2.5), abs=1e-6)
    np.testing.assert_allclose(info.affine_matrix, affine, atol=1e-5)
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info.sha256 == sha256_file(path)
    assert info.path.is_absolute()


def test_singleton_fourth_dimension_is_a_volume(tmp_path):
    path = tmp_path / "s.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8, 1), np.float32), np.eye(4)), str(path))
    assert inspect_nifti(path).shape == (8, 8, 8)


def test_four_d_series_is_refused(tmp_path):
    path = tmp_path / "dwi.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8, 3), np.float32), np.eye(4)), str(path))
    with pytest.raises(ScanError, match=r"patient P1 flair \(.*dwi.nii.gz\): has shape \(8, 8, 8, 3\); expected a 3-D volume"):
        inspect_nifti(path, patient_id="P1", sequence="flair")


@pytest.mark.parametrize("keep", [0.99, 0.5, 0.2])
def test_truncated_gz_is_detected(tmp_path, keep):
    good = write_nifti(tmp_path / "good.nii.gz", shape=(16, 16, 16))
    data = good.read_bytes()
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ScanError, match=r"patient P7 t1ce \(.*bad.nii.gz\): .*(truncated|cannot be read).*re-copy"):
        inspect_nifti(bad, patient_id="P7", sequence="t1ce")


def test_gzip_of_a_truncated_nifti_is_detected(tmp_path):
    raw = write_nifti(tmp_path / "good.nii", shape=(16, 16, 16)).read_bytes()
    bad = tmp_path / "short.nii.gz"
    bad.write_bytes(gzip.compress(raw[:-100]))   # a valid gzip stream of too few bytes
    with pytest.raises(ScanError, match=r"is truncated: header and voxels need \d+ bytes, the file holds \d+"):
        inspect_nifti(bad, patient_id="P1", sequence="t2")


def test_corrupt_gzip_crc_is_detected(tmp_path):
    raw = write_nifti(tmp_path / "good.nii", shape=(16, 16, 16)).read_bytes()
    data = bytearray(gzip.compress(raw))
    data[-6] ^= 0xFF            # damage the CRC32 in the gzip trailer
    bad = tmp_path / "crc.nii.gz"
    bad.write_bytes(bytes(data))
    with pytest.raises(ScanError, match=r"truncated or corrupt .*re-copy"):
        inspect_nifti(bad, patient_id="P1", sequence="t2")


def test_truncated_nii_is_detected(tmp_path):
    data = write_nifti(tmp_path / "good.nii").read_bytes()
    bad = tmp_path / "bad.nii"
    bad.write_bytes(data[:-10])
    with pytest.raises(ScanError, match=r"patient P2 t2 \(.*bad.nii\): is truncated: header and voxels need 2400 bytes, the file holds 2390"):
        inspect_nifti(bad, patient_id="P2", sequence="t2")


def test_not_a_nifti(tmp_path):
    bad = tmp_path / "notes.nii.gz"
    bad.write_bytes(gzip.compress(b"hello world" * 10))
    with pytest.raises(ScanError, match=r"patient P3 flair \(.*notes.nii.gz\): cannot be read as NIfTI"):
        inspect_nifti(bad, patient_id="P3", sequence="flair")


def test_missing_file(tmp_path):
    with pytest.raises(ScanError, match=r"patient P4 t1 \(.*nope.nii.gz\): file does not exist; check the path"):
        inspect_nifti(tmp_path / "nope.nii.gz", patient_id="P4", sequence="t1")


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(ScanError, match="is not a file"):
        inspect_nifti(tmp_path, patient_id="P4", sequence="t1")
