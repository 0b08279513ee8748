"""Site acquisition protocols and the acquisition chain."""

from __future__ import annotations

import numpy as np
import pytest

from neurofeat.synth import SiteProtocol, acquire, site_names, site_protocols
from neurofeat.synth.acquisition import rician_noise


def _without_site(protocol: SiteProtocol) -> dict:
    row = protocol.to_dict()
    row.pop("site")
    return row


def test_site_effect_zero_gives_identical_protocols():
    protocols = site_protocols(site_names(4), 0.0, np.random.default_rng(0))
    first = _without_site(protocols[0])
    assert all(_without_site(p) == first for p in protocols[1:])
    assert first["scale_t1"] == 1.0 and first["gamma_flair"] == 1.0 and first["gibbs_alpha"] == 0.0


def test_site_effect_separates_sites_and_scales_linearly():
    weak = site_protocols(site_names(3), 0.5, np.random.default_rng(0))
    strong = site_protocols(site_names(3), 1.0, np.random.default_rng(0))
    scales = [p.intensity_scale["t1"] for p in strong]
    assert len(set(np.round(scales, 6))) == 3
    np.testing.assert_allclose(
        [np.log(p.intensity_scale["t2"]) for p in weak], [0.5 * np.log(p.intensity_scale["t2"]) for p in strong]
    )
    np.testing.assert_allclose([p.noise_std - 0.025 for p in weak], [0.5 * (p.noise_std - 0.025) for p in strong])


def test_negative_site_effect_is_refused():
    with pytest.raises(ValueError, match="site_effect is -1.0; use a value >= 0"):
        site_protocols(site_names(2), -1.0, np.random.default_rng(0))


def test_rician_noise_matches_monai_distribution():
    from monai.transforms import RandRicianNoise
    from monai.utils import convert_to_numpy

    image = np.full((1, 40, 40, 40), 300.0, dtype=np.float32)
    image[:, :20] = 0.0  # background: Rayleigh
    ours = rician_noise(image, 50.0, np.random.default_rng(0))
    monai_noise = RandRicianNoise(prob=1.0, std=50.0, sample_std=False)
    monai_noise.set_random_state(seed=0)
    theirs = convert_to_numpy(monai_noise(image))
    for region in (np.s_[:, :20], np.s_[:, 20:]):
        assert ours[region].mean() == pytest.approx(theirs[region].mean(), rel=0.01)
        assert ours[region].std() == pytest.approx(theirs[region].std(), rel=0.02)
    # Rayleigh mean sigma * sqrt(pi / 2) in the background
    assert ours[:, :20].mean() == pytest.approx(50.0 * np.sqrt(np.pi / 2.0), rel=0.01)


def test_acquire_is_deterministic_masked_int16():
    rng = np.random.default_rng(0)
    images = {seq: rng.uniform(200, 900, (24, 24, 24)).astype(np.float32) for seq in ("t1", "t1ce", "t2", "flair")}
    mask = np.zeros((24, 24, 24), dtype=bool)
    mask[4:20, 4:20, 4:20] = True
    protocol = site_protocols(["siteA", "siteB"], 1.5, np.random.default_rng(3))[0]
    a = acquire(images, mask, protocol, seed=9)
    b = acquire(images, mask, protocol, seed=9)
    c = acquire(images, mask, protocol, seed=10)
    for seq in images:
        assert a[seq].dtype == np.int16
        assert not a[seq][~mask].any()
        np.testing.assert_array_equal(a[seq], b[seq])
        assert not np.array_equal(a[seq], c[seq])


def test_gain_of_a_site_shows_in_the_intensities():
    images = {seq: np.full((16, 16, 16), 600.0, np.float32) for seq in ("t1", "t1ce", "t2", "flair")}
    mask = np.ones((16, 16, 16), dtype=bool)
    base = SiteProtocol("siteA", {s: 1.0 for s in images}, {s: 1.0 for s in images}, (0.0, 0.0), 0.01, 0.0, 0.0)
    bright = SiteProtocol("siteB", {s: 1.5 for s in images}, {s: 1.0 for s in images}, (0.0, 0.0), 0.01, 0.0, 0.0)
    ratio = acquire(images, mask, bright, 1)["t2"].mean() / acquire(images, mask, base, 1)["t2"].mean()
    assert ratio == pytest.approx(1.5, rel=0.01)
