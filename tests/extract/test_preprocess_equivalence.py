"""The fast preprocessing steps equal MONAI's stock transforms, bit for bit.

``LoadSequencesd``, ``CropForegroundBoxd`` and ``NormalizeNonzerod`` replace MONAI's
``LoadImaged`` + ``EnsureChannelFirstd`` + ``ConcatItemsd``, ``CropForegroundd`` and
``NormalizeIntensityd(nonzero=True, channel_wise=True)`` for speed. The reference here
is the chain built from those stock transforms (what ``build_transforms`` was before),
run on volumes that exercise each step: scaled int16, LPS and oblique affines,
anisotropic voxels, trailing singleton axes, plain ``.nii``, zero-filled sequences,
constant channels, crop margins, all three size modes and a perturbation.
"""

from __future__ import annotations

import gzip
import zlib

import numpy as np
import pytest

pytestmark = pytest.mark.torch
nib = pytest.importorskip("nibabel")
torch = pytest.importorskip("torch")
pytest.importorskip("monai")

from neurofeat.extract.perturb import parse_perturbations  # noqa: E402
from neurofeat.extract.preprocess import (  # noqa: E402
    SEQUENCES,
    CheckSequencesd,
    CropForegroundBoxd,
    FitToSized,
    NormalizeNonzerod,
    PreprocessConfig,
    ScanGridError,
    build_transforms,
    foreground_box,
)
from neurofeat.extract.volumes import ScanReadError, gunzip, read_stacked  # noqa: E402


class _Above:
    def __init__(self, threshold):
        self.threshold = threshold

    def __call__(self, x):
        return x > self.threshold


class _ZeroFill:
    """Stock-MONAI zero-fill: load a missing sequence from the first present file, zero it later."""

    def __init__(self, keys):
        self.keys = tuple(keys)

    def missing(self, data):
        return set(filter(None, str(data.get("zero_filled", "")).split(",")))

    def substitute(self, data):
        out = dict(data)
        missing = self.missing(out)
        present = next(k for k in self.keys if k not in missing)
        for seq in missing:
            out[seq] = out[present]
        return out

    def __call__(self, data):
        out = dict(data)
        for seq in self.missing(out):
            out[seq] = out[seq] * 0
        return out


class _Drop:
    def __init__(self, keys):
        self.keys = tuple(keys)

    def __call__(self, data):
        return {k: v for k, v in data.items() if k not in self.keys}


def stock_monai_chain(config: PreprocessConfig, perturbation=None):
    """The same preprocessing from MONAI's stock transforms only (the reference)."""
    from monai.transforms import (
        Compose,
        ConcatItemsd,
        CropForegroundd,
        EnsureChannelFirstd,
        EnsureTyped,
        LoadImaged,
        NormalizeIntensityd,
        Orientationd,
        Resized,
        ResizeWithPadOrCropd,
        Spacingd,
    )

    seqs = list(config.sequences)
    zero_fill = _ZeroFill(seqs)
    steps = [
        CheckSequencesd(seqs, config.missing_sequence),
        zero_fill.substitute,
        LoadImaged(keys=seqs, reader="NibabelReader", image_only=True, dtype=np.float32,
                   squeeze_non_spatial_dims=True),
        EnsureChannelFirstd(keys=seqs, channel_dim="no_channel"),
        zero_fill,
        ConcatItemsd(keys=seqs, name="image", dim=0),
        _Drop(seqs),
    ]
    if perturbation is not None:
        steps.append(perturbation)
    steps += [
        Orientationd(keys="image", axcodes=config.orientation, labels=(("L", "R"), ("P", "A"), ("I", "S"))),
        Spacingd(keys="image", pixdim=config.spacing, mode=config.interpolation, dtype=np.float32),
        CropForegroundd(keys="image", source_key="image", select_fn=_Above(config.foreground_threshold),
                        margin=config.crop_margin, allow_smaller=True),
    ]
    if config.size_mode == "fit":
        steps += [FitToSized("image", config.input_size),
                  ResizeWithPadOrCropd(keys="image", spatial_size=config.input_size)]
    elif config.size_mode == "pad_crop":
        steps.append(ResizeWithPadOrCropd(keys="image", spatial_size=config.input_size))
    else:
        steps.append(Resized(keys="image", spatial_size=config.input_size, mode="trilinear"))
    steps += [NormalizeIntensityd(keys="image", nonzero=True, channel_wise=True),
              EnsureTyped(keys="image", dtype=torch.float32, track_meta=False)]
    return Compose(steps)


def _brain_volumes(rng, shape, dtype=np.float32, constant_channel=None):
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    brain = ((grid / np.array([0.8, 0.7, 0.75])[:, None, None, None]) ** 2).sum(0) <= 1
    volumes = []
    for k in range(4):
        vol = np.zeros(shape, np.float64)
        vol[brain] = 200 + 60 * k + rng.normal(0, 40, int(brain.sum()))
        if k == constant_channel:
            vol[brain] = 500.0
        volumes.append(np.clip(vol, 1, None).astype(dtype))
    return volumes


def _write(path, array, affine, scaled=False):
    image = nib.Nifti1Image(array, affine)
    if scaled:
        image.header.set_slope_inter(0.37, 12.5)
    nib.save(image, str(path))
    return str(path)


def _record(tmp_path, volumes, affine, pid, suffix=".nii.gz", scaled=False):
    record = {"patient_id": pid}
    for seq, vol in zip(SEQUENCES, volumes):
        record[seq] = _write(tmp_path / f"{pid}_{seq}{suffix}", vol, affine, scaled)
    return record


def _oblique(spacing):
    angle = np.deg2rad(12.0)
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag(spacing)
    affine[:3, 3] = [-30.0, -25.0, -20.0]
    return affine


CASES = {
    # name: (volume shape, dtype, affine, config, suffix, scaled, trailing axis, constant channel)
    "float32-ras-fit": ((40, 36, 30), np.float32, np.diag([2.0, 2.0, 2.0, 1.0]),
                        PreprocessConfig(spacing=2.0, input_size=24), ".nii.gz", False, False, None),
    "int16-scaled-lps-aniso": ((36, 32, 20), np.int16, np.diag([-1.0, -1.0, 2.0, 1.0]),
                               PreprocessConfig(spacing=1.5, input_size=(28, 24, 26), crop_margin=2,
                                                size_mode="pad_crop"), ".nii.gz", True, False, None),
    "oblique-resize-lps": ((34, 30, 26), np.float32, _oblique((1.2, 1.2, 1.5)),
                           PreprocessConfig(spacing=1.8, input_size=20, orientation="LPS", size_mode="resize"),
                           ".nii.gz", False, False, 2),
    "plain-nii-4d-singleton": ((30, 28, 24), np.float32, np.diag([1.5, 1.5, 1.5, 1.0]),
                               PreprocessConfig(spacing=1.5, input_size=16, foreground_threshold=150.0),
                               ".nii", False, True, None),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_chain_equals_stock_monai_chain(tmp_path, case):
    shape, dtype, affine, config, suffix, scaled, trailing, constant = CASES[case]
    rng = np.random.default_rng(abs(hash(case)) % 2**32)
    volumes = _brain_volumes(rng, shape, dtype, constant_channel=constant)
    if trailing:
        volumes = [v[..., None] for v in volumes]
    record = _record(tmp_path, volumes, affine, "P-" + case, suffix, scaled)
    ours = build_transforms(config)(dict(record))["image"]
    reference = stock_monai_chain(config)(dict(record))["image"]
    assert type(ours) is torch.Tensor and ours.dtype == torch.float32
    assert ours.shape == reference.shape == (4, *config.input_size)
    assert torch.equal(ours, reference), f"max |diff| {float((ours - reference).abs().max())}"


def test_zero_filled_and_perturbed_equal_stock_chain(tmp_path):
    rng = np.random.default_rng(7)
    volumes = _brain_volumes(rng, (32, 30, 28))
    record = _record(tmp_path, volumes, np.eye(4), "P-zero")
    record["t2"] = None
    config = PreprocessConfig(spacing=1.2, input_size=22, missing_sequence="zero")
    (pert,) = parse_perturbations("bias:0.3+gibbs:0.2")
    ours = build_transforms(config, perturbation=pert)(dict(record))
    reference = stock_monai_chain(config, perturbation=pert)(dict(record))
    assert ours["zero_filled"] == reference["zero_filled"] == "t2"
    assert torch.equal(ours["image"], reference["image"])
    assert torch.count_nonzero(ours["image"][2]) == 0


def test_track_meta_keeps_the_affine_of_the_stock_chain(tmp_path):
    volumes = _brain_volumes(np.random.default_rng(3), (30, 28, 26))
    affine = np.diag([-1.5, 1.5, 1.5, 1.0])
    record = _record(tmp_path, volumes, affine, "P-meta")
    config = PreprocessConfig(spacing=1.5, input_size=24, size_mode="pad_crop")
    ours = build_transforms(config, track_meta=True)(dict(record))["image"]
    reference = stock_monai_chain(config)
    reference.transforms[-1].converter.track_meta = True  # EnsureTyped keeps the MetaTensor
    reference = reference(dict(record))["image"]
    np.testing.assert_array_equal(np.asarray(ours.affine), np.asarray(reference.affine))


def test_read_stacked_equals_monai_loader(tmp_path):
    from monai.transforms import LoadImage

    volumes = _brain_volumes(np.random.default_rng(5), (20, 18, 16), np.int16)
    affine = _oblique((1.0, 1.1, 1.3))
    paths = [_write(tmp_path / f"v{k}.nii.gz", v, affine, scaled=True) for k, v in enumerate(volumes)]
    image, got_affine = read_stacked(paths, patient_id="P")
    loader = LoadImage(reader="NibabelReader", image_only=True, dtype=np.float32)
    expected = np.stack([np.asarray(loader(p)) for p in paths])
    assert image.dtype == np.float32 and image.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(image, expected)
    np.testing.assert_array_equal(got_affine, np.asarray(loader(paths[0]).affine))


def test_read_stacked_messages_name_patient_sequence_and_file(tmp_path):
    good = _write(tmp_path / "a.nii.gz", np.ones((8, 8, 8), np.float32), np.eye(4))
    four_d = _write(tmp_path / "b.nii.gz", np.ones((8, 8, 8, 2), np.float32), np.eye(4))
    with pytest.raises(ScanGridError, match=r"patient GBM-7: sequence 't2' is not a single 3-D volume "
                                            r"\(array shape \(8, 8, 8, 2\), file .*b.nii.gz\)"):
        read_stacked([good, four_d], names=["t1", "t2"], patient_id="GBM-7")
    shifted = np.eye(4)
    shifted[0, 3] = 3.0
    moved = _write(tmp_path / "c.nii.gz", np.ones((8, 8, 8), np.float32), shifted)
    with pytest.raises(ScanGridError, match=r"patient GBM-7: sequences 't1' and 'flair' have different "
                                            r"affines \(max difference 3 mm\); co-register"):
        read_stacked([good, moved], names=["t1", "flair"], patient_id="GBM-7")
    # one scan alone is not compared with itself; a broken header is named
    assert read_stacked([good], names=["t1"], patient_id="GBM-7")[0].shape == (1, 8, 8, 8)
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.ones((8, 8, 8), np.float32), np.eye(4)), str(tmp_path / "d.nii"))
    raw = bytearray((tmp_path / "d.nii").read_bytes())
    raw[252:256] = np.array([0, 1], "<i2").tobytes()  # qform_code 0, sform_code 1: the affine is srow_*
    raw[292:296] = np.array([np.nan], "<f4").tobytes()  # srow_x[3] (x offset), as a broken converter writes it
    (tmp_path / "d.nii").write_bytes(bytes(raw))
    with pytest.raises(ScanGridError, match=r"patient GBM-7: sequence 't1' has a non-finite affine"):
        read_stacked([str(tmp_path / "d.nii")], names=["t1"], patient_id="GBM-7")


def test_gunzip_reads_every_member_like_gzip():
    payload = bytes(range(256)) * 1000
    two_members = gzip.compress(payload[:100_000]) + gzip.compress(payload[100_000:])
    assert gunzip(two_members) == gzip.decompress(two_members) == payload
    with pytest.raises(gzip.BadGzipFile):
        gunzip(b"\x1f\x8bnot really gzip")
    with pytest.raises(EOFError):
        gunzip(two_members[:-30])
    corrupt = bytearray(gzip.compress(payload))
    corrupt[40:60] = bytes(20)
    with pytest.raises(zlib.error):  # as gzip.decompress, whichever inflater is installed
        gunzip(bytes(corrupt))


def test_truncated_or_foreign_scans_name_patient_sequence_and_file(tmp_path):
    good = _write(tmp_path / "a.nii.gz", np.ones((8, 8, 8), np.float32), np.eye(4))
    truncated = tmp_path / "b.nii.gz"
    truncated.write_bytes(open(good, "rb").read()[:-40])
    foreign = tmp_path / "c.nii.gz"
    foreign.write_bytes(gzip.compress(b"just some text, not NIfTI"))
    corrupt = tmp_path / "d.nii.gz"
    damaged = bytearray(open(good, "rb").read())
    damaged[60:80] = bytes(20)
    corrupt.write_bytes(bytes(damaged))
    for bad in (truncated, foreign, corrupt):
        with pytest.raises(ScanReadError, match=rf"patient GBM-9: cannot read sequence 'flair' from .*{bad.name} "):
            read_stacked([good, str(bad)], names=["t1", "flair"], patient_id="GBM-9")


@pytest.mark.parametrize("margin", [0, 1, 3])
@pytest.mark.parametrize("threshold", [0.0, 0.6])
def test_foreground_box_equals_monai(margin, threshold):
    from monai.transforms.utils import generate_spatial_bounding_box

    rng = np.random.default_rng(margin * 10 + int(threshold * 10))
    for _ in range(20):
        image = np.zeros((3, 15, 12, 10), np.float32)
        lo = rng.integers(0, [14, 11, 9])
        hi = lo + rng.integers(1, [15, 12, 10] - lo + 1)
        image[rng.integers(0, 3), lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = rng.uniform(0, 1, tuple(hi - lo))
        expected = generate_spatial_bounding_box(image, _Above(threshold), margin=margin, allow_smaller=True)
        box = foreground_box(image, threshold, margin)
        if box is None:
            assert list(expected[0]) == list(expected[1]) == [0, 0, 0]
        else:
            assert (list(box[0]), list(box[1])) == (list(expected[0]), list(expected[1]))


def test_empty_scan_is_a_clear_error():
    crop = CropForegroundBoxd("image", threshold=0.0)
    with pytest.raises(ValueError, match=r"patient GBM-1: no voxel is above the foreground threshold 0"):
        crop({"patient_id": "GBM-1", "image": torch.zeros(4, 8, 8, 8)})


def test_normalize_nonzero_equals_monai_normalize_intensity():
    from monai.transforms import NormalizeIntensity

    rng = np.random.default_rng(11)
    image = rng.normal(300, 80, (5, 14, 13, 12)).astype(np.float32)
    image[:, :3] = 0  # background
    image[1] = 0  # an empty (zero-filled) channel
    image[2][image[2] != 0] = 42.0  # a constant channel: std 0, only centred
    image[3, 5:7] = -17.5  # negative values count as brain
    ours = NormalizeNonzerod("image")({"image": torch.from_numpy(image.copy())})["image"]
    reference = NormalizeIntensity(nonzero=True, channel_wise=True)(torch.from_numpy(image.copy()))
    assert torch.equal(ours, torch.as_tensor(reference).as_subclass(torch.Tensor))
    assert torch.count_nonzero(ours[1]) == 0
