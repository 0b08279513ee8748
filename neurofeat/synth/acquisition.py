"""Site-specific acquisition (covariate shift) applied to the noise-free contrasts.

Every site has a :class:`SiteProtocol`; each image goes through, in order:

1. resolution loss: :class:`monai.transforms.GaussianSmooth` (``blur_sigma_vox``);
2. Gibbs ringing: :class:`monai.transforms.GibbsNoise` (``gibbs_alpha``, k-space
   truncation);
3. bias field: :class:`monai.transforms.RandBiasField` (degree-3 polynomial whose
   coefficients are drawn per patient from ``bias_coeff_range``: the range sets the
   strength and the typical shape of the coil profile of the site; one field is shared
   by the four sequences, as a receive-coil profile would be);
4. thermal noise: Rician, ``sqrt((x + σ·n1)² + (σ·n2)²)`` with ``σ = noise_std ×``
   :data:`REFERENCE_INTENSITY` (:func:`rician_noise`; the same formula as
   :class:`monai.transforms.RandRicianNoise` with a fixed ``std``, which draws from
   numpy's legacy ``RandomState`` and took a fifth of the rendering time), added
   inside the brain mask only since the background is zeroed in step 7;
5. contrast: :class:`monai.transforms.AdjustContrast` (``gamma`` per sequence);
6. scanner gain: :class:`monai.transforms.ScaleIntensity` (``intensity_scale`` per
   sequence);
7. skull-stripping: voxels outside the brain mask are set to 0 (like BraTS), and the
   result is rounded to int16.

With ``site_effect = 0`` all sites share the baseline protocol (scale 1, gamma 1,
bias coefficients in ±0.02, noise 2.5 %, no ringing, no blur), so they differ
only in their labels.  Each site-specific deviation is ``site_effect`` times a value
from an evenly spaced design over the sites, permuted by the cohort seed so which site
is the noisiest or brightest varies with the seed:

==================  ==========================  ==========================
parameter           baseline                    site deviation × site_effect
==================  ==========================  ==========================
log intensity_scale 0                           spread over [-0.35, 0.35]
log gamma           0                           spread over [-0.25, 0.25]
bias coefficients   [-0.02, 0.02]               centre shifted over [-0.06, 0.06]
noise_std           0.025                       + [0, 0.04]
gibbs_alpha         0                           + [0, 0.3]
blur_sigma_vox      0                           + [0, 1.0]
==================  ==========================  ==========================

MONAI (and so torch) is imported inside :func:`acquire`, not at module import, so the
label model and ``neurofeat --help`` stay free of torch; issue 4 asks for MONAI's
transforms here although torch otherwise belongs to the extraction stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = ["REFERENCE_INTENSITY", "SiteProtocol", "acquire", "protocols_frame", "rician_noise", "site_protocols"]

#: Intensity (a.u.) against which ``noise_std`` is expressed (about grey matter).
REFERENCE_INTENSITY: float = 700.0

_SEQUENCES = ("t1", "t1ce", "t2", "flair")


@dataclass(frozen=True)
class SiteProtocol:
    """Acquisition settings of one site.

    Attributes
    ----------
    site : str
        Site name.
    intensity_scale : Mapping[str, float]
        Gain per sequence (1 = reference).
    gamma : Mapping[str, float]
        Contrast exponent per sequence (1 = unchanged).
    bias_coeff_range : tuple of float
        Range of the bias-field polynomial coefficients.
    noise_std : float
        Rician noise SD as a fraction of :data:`REFERENCE_INTENSITY`.
    gibbs_alpha : float
        Fraction of k-space truncated (0 = no ringing), in [0, 1).
    blur_sigma_vox : float
        Gaussian blur SD in voxels.
    """

    site: str
    intensity_scale: Mapping[str, float]
    gamma: Mapping[str, float]
    bias_coeff_range: tuple[float, float]
    noise_std: float
    gibbs_alpha: float
    blur_sigma_vox: float

    def to_dict(self) -> dict[str, object]:
        """Flat dictionary (one column per parameter and sequence)."""
        row: dict[str, object] = {"site": self.site}
        for sequence in _SEQUENCES:
            row[f"scale_{sequence}"] = self.intensity_scale[sequence]
            row[f"gamma_{sequence}"] = self.gamma[sequence]
        row.update(
            {
                "bias_coeff_low": self.bias_coeff_range[0],
                "bias_coeff_high": self.bias_coeff_range[1],
                "noise_std": self.noise_std,
                "gibbs_alpha": self.gibbs_alpha,
                "blur_sigma_vox": self.blur_sigma_vox,
            }
        )
        return row


def _spread(lo: float, hi: float, n: int, rng: np.random.Generator) -> np.ndarray:
    values = np.linspace(lo, hi, n) if n > 1 else np.asarray([(lo + hi) / 2.0])
    return values[rng.permutation(n)]


def site_protocols(sites: Sequence[str], site_effect: float, rng: np.random.Generator) -> list[SiteProtocol]:
    """Acquisition protocol of every site.

    Parameters
    ----------
    sites : sequence of str
        Site names, e.g. ``['siteA', 'siteB', 'siteC']``.
    site_effect : float
        Strength of the site differences (>= 0; 0 = identical acquisition).
    rng : numpy.random.Generator
        Permutes which site gets which deviation.

    Returns
    -------
    list of SiteProtocol, one per site in order.

    Raises
    ------
    ValueError
        If *site_effect* is negative.
    """
    if not site_effect >= 0:
        raise ValueError(f"site_effect is {site_effect}; use a value >= 0 (0 = no acquisition differences).")
    n = len(sites)
    s = float(site_effect)
    log_scale = {seq: _spread(-0.35, 0.35, n, rng) for seq in _SEQUENCES}
    log_gamma = {seq: _spread(-0.25, 0.25, n, rng) for seq in _SEQUENCES}
    bias_centre = _spread(-0.06, 0.06, n, rng)
    noise_extra = _spread(0.0, 0.04, n, rng)
    gibbs = _spread(0.0, 0.3, n, rng)
    blur_extra = _spread(0.0, 1.0, n, rng)
    protocols = []
    for k, site in enumerate(sites):
        protocols.append(
            SiteProtocol(
                site=site,
                intensity_scale=dict({seq: float(np.exp(s * log_scale[seq][k])) for seq in _SEQUENCES}),
                gamma=dict({seq: float(np.exp(s * log_gamma[seq][k])) for seq in _SEQUENCES}),
                bias_coeff_range=(float(s * bias_centre[k] - 0.02), float(s * bias_centre[k] + 0.02)),
                noise_std=float(0.025 + s * noise_extra[k]),
                gibbs_alpha=float(min(s * gibbs[k], 0.9)),
                blur_sigma_vox=float(s * blur_extra[k]),
            )
        )
    return protocols


def protocols_frame(protocols: Sequence[SiteProtocol]) -> pd.DataFrame:
    """One row per site with every acquisition parameter."""
    return pd.DataFrame([p.to_dict() for p in protocols])


def rician_noise(image: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """Add Rician noise: ``sqrt((image + std·n1)² + (std·n2)²)``, n1, n2 ~ N(0, 1).

    Parameters
    ----------
    image : numpy.ndarray of float32, any shape
        Noise-free magnitude image.
    std : float
        Noise SD of each of the real and imaginary channels (>= 0).
    rng : numpy.random.Generator
        Source of the normal draws (float32).

    Returns
    -------
    numpy.ndarray of float32, same shape as *image*
    """
    image = np.asarray(image, dtype=np.float32)
    if std <= 0:
        return image.copy()
    real = image + np.float32(std) * rng.standard_normal(image.shape, dtype=np.float32)
    imag = np.float32(std) * rng.standard_normal(image.shape, dtype=np.float32)
    return np.sqrt(real * real + imag * imag)


def acquire(
    images: Mapping[str, np.ndarray],
    brain_mask: np.ndarray,
    protocol: SiteProtocol,
    seed: int,
) -> dict[str, np.ndarray]:
    """Apply the acquisition of *protocol* to the noise-free contrasts of one patient.

    Parameters
    ----------
    images : mapping of str -> numpy.ndarray, shape (nx, ny, nz)
        Noise-free ``t1``, ``t1ce``, ``t2``, ``flair``.
    brain_mask : numpy.ndarray of bool, shape (nx, ny, nz)
        Voxels kept after skull-stripping.
    protocol : SiteProtocol
        The site's acquisition.
    seed : int
        Seeds the random transforms (bias field and noise), in [0, 2**31).

    Returns
    -------
    dict of str -> numpy.ndarray of int16, shape (nx, ny, nz)
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny volumes: extra threads only spin (10x slower on a busy machine)
    try:
        return _acquire(images, brain_mask, protocol, int(seed))
    finally:
        torch.set_num_threads(threads)


def _acquire(
    images: Mapping[str, np.ndarray], brain_mask: np.ndarray, protocol: SiteProtocol, seed: int
) -> dict[str, np.ndarray]:
    from monai.transforms import AdjustContrast, GaussianSmooth, GibbsNoise, RandBiasField, ScaleIntensity
    from monai.utils import convert_to_numpy

    sequences = list(images)
    stack = np.stack([np.asarray(images[seq], dtype=np.float32) for seq in sequences])
    if protocol.blur_sigma_vox > 0:
        stack = GaussianSmooth(sigma=protocol.blur_sigma_vox)(stack)
    if protocol.gibbs_alpha > 0:
        stack = GibbsNoise(alpha=protocol.gibbs_alpha)(stack)
    bias = RandBiasField(degree=3, coeff_range=protocol.bias_coeff_range, prob=1.0)
    bias.set_random_state(seed=int(seed) % 2**31)
    stack = bias(stack)  # one coil profile, shared by the four sequences
    stack = np.array(convert_to_numpy(stack), dtype=np.float32)
    # noise only where the skull-stripped image keeps voxels (the rest becomes 0)
    stack[:, brain_mask] = rician_noise(
        stack[:, brain_mask], protocol.noise_std * REFERENCE_INTENSITY, np.random.default_rng([int(seed), 1])
    )
    out = {}
    for channel, sequence in enumerate(sequences):
        x = stack[channel : channel + 1]
        gamma = protocol.gamma.get(sequence, 1.0)
        if gamma != 1.0:
            x = AdjustContrast(gamma=gamma)(x)
        scale = protocol.intensity_scale.get(sequence, 1.0)
        if scale != 1.0:
            x = ScaleIntensity(minv=None, maxv=None, factor=scale - 1.0)(x)
        array = convert_to_numpy(x)[0] * brain_mask
        out[sequence] = np.clip(np.rint(array), 0, np.iinfo(np.int16).max).astype(np.int16)
    return out
