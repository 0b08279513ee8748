"""Preprocessing: shapes, orientation, resampling, crop, padding and z-score, each
checked against a plain numpy computation of the same formula."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.torch
nib = pytest.importorskip("nibabel")
pytest.importorskip("monai")

from neurofeat.extract.preprocess import (  # noqa: E402
    SEQUENCES,
    FitToSized,
    MissingSequenceError,
    PreprocessConfig,
    ScanGridError,
    build_transforms,
    preprocess_hash,
    preprocess_record,
)


def _save(path, data, affine):
    nib.save(nib.Nifti1Image(np.asarray(data, np.float32), affine), str(path))
    return str(path)


def _record(tmp_path, volumes, affine, pid="P1"):
    record = {"patient_id": pid}
    for seq, vol in zip(SEQUENCES, volumes):
        record[seq] = _save(tmp_path / f"{pid}_{seq}.nii.gz", vol, affine)
    return record


def _zscore_nonzero(channel):
    """z-score over non-zero voxels (population std), background left at 0."""
    out = np.zeros_like(channel, dtype=np.float64)
    mask = channel != 0
    values = channel[mask].astype(np.float64)
    out[mask] = (values - values.mean()) / values.std()
    return out


def _centre_pad(array, size):
    """Zero-pad each spatial axis symmetrically (extra voxel after), as MONAI's SpatialPad."""
    pads = [(0, 0)]
    for n, target in zip(array.shape[1:], size):
        before = (target - n) // 2
        pads.append((before, target - n - before))
    return np.pad(array, pads)


def test_orientation_crop_pad_and_zscore_match_numpy(tmp_path):
    rng = np.random.default_rng(1)
    shape = (20, 18, 14)
    volumes = []
    for k in range(4):
        vol = np.zeros(shape, np.float32)
        vol[3:15, 4:16, 2:11] = rng.uniform(10, 200, (12, 12, 9)) * (k + 1)
        volumes.append(vol)
    # LPS storage at 1 mm: reorienting to RAS flips the first two axes
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    affine[:3, 3] = [19.0, 17.0, 0.0]
    record = _record(tmp_path, volumes, affine)
    cfg = PreprocessConfig(spacing=1.0, input_size=(16, 16, 16), size_mode="pad_crop")
    out = preprocess_record(record, cfg).numpy()

    stacked = np.stack(volumes)[:, ::-1, ::-1, :]  # LPS -> RAS
    brain = (stacked > 0).any(axis=0)
    idx = [np.flatnonzero(brain.any(axis=tuple(a for a in range(3) if a != ax))) for ax in range(3)]
    crop = stacked[:, idx[0][0] : idx[0][-1] + 1, idx[1][0] : idx[1][-1] + 1, idx[2][0] : idx[2][-1] + 1]
    expected = np.stack([_zscore_nonzero(c) for c in _centre_pad(crop, (16, 16, 16))])

    assert out.shape == (4, 16, 16, 16) and out.dtype == np.float32
    np.testing.assert_allclose(out, expected, atol=1e-4)
    for channel in out:
        brain_voxels = channel[channel != 0]
        assert abs(brain_voxels.mean()) < 1e-4 and abs(brain_voxels.std() - 1.0) < 1e-4


def test_resampling_to_spacing_and_fit(tmp_path):
    # a 24 x 16 x 12 mm box at 1 mm, resampled to 2 mm, is ~12 x 8 x 6 voxels
    shape = (30, 24, 20)
    vol = np.zeros(shape, np.float32)
    vol[3:27, 4:20, 4:16] = np.random.default_rng(0).uniform(50, 150, (24, 16, 12))
    record = _record(tmp_path, [vol] * 4, np.eye(4))
    out = preprocess_record(record, PreprocessConfig(spacing=2.0, input_size=16)).numpy()
    nz = np.argwhere(out[0] != 0)
    extent = nz.max(axis=0) - nz.min(axis=0) + 1
    np.testing.assert_allclose(extent, [12, 8, 6], atol=1)
    # "fit" shrinks a crop larger than the input, keeping its aspect ratio
    out_small = preprocess_record(record, PreprocessConfig(spacing=1.0, input_size=12)).numpy()
    nz = np.argwhere(out_small[0] != 0)
    extent = nz.max(axis=0) - nz.min(axis=0) + 1
    np.testing.assert_allclose(extent, [12, 8, 6], atol=1)  # 24x16x12 scaled by 12/24


@pytest.mark.parametrize(
    "shape, box, expected",
    [((64, 48, 32), (32, 32, 32), (32, 24, 16)), ((20, 10, 5), (32, 32, 32), (20, 10, 5)), ((40, 8, 8), (20, 30, 30), (20, 4, 4))],
)
def test_fitted_shape(shape, box, expected):
    assert FitToSized.fitted_shape(shape, box) == expected


def test_resize_mode_stretches_to_input(tmp_path):
    vol = np.zeros((30, 24, 20), np.float32)
    vol[3:27, 4:20, 4:16] = np.random.default_rng(0).uniform(50, 150, (24, 16, 12))
    record = _record(tmp_path, [vol] * 4, np.eye(4))
    out = preprocess_record(record, PreprocessConfig(spacing=1.0, input_size=16, size_mode="resize")).numpy()
    assert out.shape == (4, 16, 16, 16)
    assert (out[0] != 0).all()  # the brain crop fills the whole input


def test_hash_is_stable_and_sensitive():
    cfg = PreprocessConfig()
    canonical = json.dumps(cfg.to_dict(), sort_keys=True, separators=(",", ":"))
    assert cfg.sha256() == hashlib.sha256(canonical.encode()).hexdigest() == preprocess_hash(cfg)
    assert PreprocessConfig(spacing=(1, 1, 1), input_size=128).sha256() == cfg.sha256()
    assert PreprocessConfig(spacing=1.5).sha256() != cfg.sha256()
    assert PreprocessConfig(crop_margin=2).sha256() != cfg.sha256()
    assert PreprocessConfig.from_dict(cfg.to_dict()) == cfg
    code = "from neurofeat.extract.preprocess import PreprocessConfig as P; print(P().sha256())"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert other == cfg.sha256()


def test_invalid_config_errors():
    with pytest.raises(ValueError, match="size_mode must be one of fit, pad_crop, resize; got 'crop'"):
        PreprocessConfig(size_mode="crop")
    with pytest.raises(ValueError, match="orientation must be 3 axis codes"):
        PreprocessConfig(orientation="RAA")
    with pytest.raises(ValueError, match=r"unknown preprocessing setting\(s\) \['colour'\]"):
        PreprocessConfig.from_dict({"colour": "red"})


def test_missing_sequence_is_an_error_naming_patient_and_sequence(tmp_path):
    vol = np.zeros((12, 12, 12), np.float32)
    vol[2:10, 2:10, 2:10] = 5.0
    record = _record(tmp_path, [vol] * 4, np.eye(4), pid="GBM-042")
    record["t2"] = str(tmp_path / "nope.nii.gz")
    with pytest.raises(MissingSequenceError, match=r"patient GBM-042: sequence 't2' is missing \(file .*nope.nii.gz does not exist\)"):
        preprocess_record(record, PreprocessConfig(spacing=1.0, input_size=8))
    record["t2"] = None
    with pytest.raises(MissingSequenceError, match="patient GBM-042: sequence 't2' is missing"):
        preprocess_record(record, PreprocessConfig(spacing=1.0, input_size=8))


def test_zero_fill_when_allowed(tmp_path):
    vol = np.zeros((12, 12, 12), np.float32)
    vol[2:10, 2:10, 2:10] = np.arange(512, dtype=np.float32).reshape(8, 8, 8) + 1
    record = _record(tmp_path, [vol] * 4, np.eye(4))
    record["flair"] = None
    out = build_transforms(PreprocessConfig(spacing=1.0, input_size=8, missing_sequence="zero"))(record)
    assert out["zero_filled"] == "flair"
    assert np.all(out["image"][3].numpy() == 0) and np.any(out["image"][0].numpy() != 0)


def test_sequences_on_different_grids_are_refused(tmp_path):
    vol = np.ones((12, 12, 12), np.float32)
    record = _record(tmp_path, [vol] * 4, np.eye(4))
    record["t1ce"] = _save(tmp_path / "other.nii.gz", np.ones((12, 12, 10), np.float32), np.eye(4))
    with pytest.raises(ScanGridError, match=r"patient P1: sequences 't1' \(12, 12, 12\) and 't1ce' \(12, 12, 10\) have different shapes"):
        preprocess_record(record, PreprocessConfig(spacing=1.0, input_size=8))
