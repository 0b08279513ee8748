"""Perturbations: parsing/labels, and each transform against its numpy formula."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")
pytest.importorskip("monai")

from neurofeat.extract.perturb import Perturbation, bias_field, parse_perturbations  # noqa: E402


def _volume(seed=0, shape=(2, 12, 14, 10)):
    rng = np.random.default_rng(seed)
    vol = np.zeros(shape, np.float32)
    vol[:, 2:10, 3:12, 2:8] = rng.uniform(20, 200, (shape[0], 8, 9, 6))
    return vol


def test_parse_labels_and_combinations():
    perts = parse_perturbations("gibbs:0.2,bias:0.3,contrast:1.5")
    assert [p.label for p in perts] == ["gibbs-0.2", "bias-0.3", "contrast-1.5"]
    assert [p.label for p in parse_perturbations(None)] == ["none"]
    assert [p.label for p in parse_perturbations("none, gibbs=0.10, gibbs:0.1")] == ["none", "gibbs-0.1"]
    combined = parse_perturbations("bias:0.2+gibbs:0.1")[0]
    assert combined.label == "bias-0.2+gibbs-0.1" and combined.steps == (("bias", 0.2), ("gibbs", 0.1))
    # strengths that differ keep labels (partitions, cache keys) of their own
    close = parse_perturbations("contrast:1,contrast:1.0000001,contrast:1.0000004,contrast:1.25")
    assert [p.label for p in close] == ["contrast-1", "contrast-1.0000001", "contrast-1.0000004", "contrast-1.25"]


@pytest.mark.parametrize(
    "spec, message",
    [
        ("gibbs:1.5", r"perturbation 'gibbs:1.5' is out of range; gibbs needs alpha in \[0, 1\]"),
        ("contrast:0", "perturbation 'contrast:0' is out of range; contrast needs gamma > 0"),
        ("blur:1", "unknown perturbation 'blur'; use one of contrast, gibbs, bias"),
        ("gibbs", "cannot parse perturbation 'gibbs' in --perturb 'gibbs'; write KIND:STRENGTH"),
    ],
)
def test_parse_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_perturbations(spec)


def test_contrast_matches_gamma_formula_per_channel():
    vol = _volume()
    out = Perturbation((("contrast", 1.7),)).apply(torch.from_numpy(vol)).numpy()
    expected = np.zeros_like(vol, dtype=np.float64)
    for c in range(vol.shape[0]):
        x = vol[c].astype(np.float64)
        lo, hi = x.min(), x.max()
        expected[c] = ((x - lo) / (hi - lo + 1e-7)) ** 1.7 * (hi - lo) + lo
    expected[vol <= 0] = 0.0
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-3)


def test_bias_field_is_deterministic_bounded_and_applied_inside_brain():
    shape = (12, 14, 10)
    field = bias_field(shape, 0.3)
    np.testing.assert_array_equal(field, bias_field(shape, 0.3))
    log_field = np.log(field.astype(np.float64))
    assert np.isclose(np.abs(log_field).max(), 0.3, atol=1e-6)  # max |p| = 1 is attained
    np.testing.assert_allclose(bias_field(shape, 0.6), np.exp(2 * log_field), rtol=1e-5)
    vol = _volume()
    out = Perturbation((("bias", 0.3),)).apply(torch.from_numpy(vol)).numpy()
    np.testing.assert_allclose(out, vol * field[None] * (vol > 0), rtol=1e-6)


def test_gibbs_removes_high_frequencies_and_keeps_background():
    rng = np.random.default_rng(3)
    full = rng.uniform(1, 100, (1, 16, 16, 16)).astype(np.float32)  # every voxel is brain

    def high_frequency_energy(x):
        spectrum = np.abs(np.fft.fftshift(np.fft.fftn(x[0]))) ** 2
        grid = np.stack(np.meshgrid(*[np.arange(16) - 8] * 3, indexing="ij"))
        return spectrum[np.sqrt((grid ** 2).sum(0)) > 4].sum() / spectrum.sum()

    energies = [high_frequency_energy(Perturbation((("gibbs", a),)).apply(torch.from_numpy(full)).numpy())
                for a in (0.0, 0.3, 0.6)]
    assert energies[0] == pytest.approx(high_frequency_energy(full))  # alpha 0 is the identity
    assert energies[0] > energies[1] > energies[2]
    vol = _volume()
    out = Perturbation((("gibbs", 0.4),)).apply(torch.from_numpy(vol)).numpy()
    assert np.all(out[vol <= 0] == 0) and not np.allclose(out, vol)


def test_dict_form_keeps_metadata():
    from monai.data import MetaTensor

    affine = torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0]))
    image = MetaTensor(torch.from_numpy(_volume()), affine=affine)
    out = Perturbation((("bias", 0.2),))({"image": image, "patient_id": "P1"})
    assert isinstance(out["image"], MetaTensor) and torch.equal(out["image"].affine, image.affine)
    assert out["patient_id"] == "P1"
