"""3D MRI augmentations for self-supervised pretraining (MONAI array transforms).

A *view* of a preprocessed volume ``(C, D, H, W)`` is a random resized crop (a cube
whose edge is a random fraction of the input's, resized to the view's size), random
flips along each axis, a small random affine, and intensity changes that mimic
scanner variation: scale/shift, gamma, Gaussian noise, Gaussian blur, a smooth bias
field and Gibbs ringing.

Randomness never comes from global state: every view is drawn with its own seed
derived from ``(seed, epoch, sample index, view index)``, so the same training run
sees the same views whatever the number of DataLoader workers or ranks, and a
resumed run continues with exactly the views it would have seen.

Example
-------
>>> spec = ViewSpec(name="global", size=32, scale=(0.6, 1.0), count=2)
>>> augment = MultiViewAugment([spec], AugmentConfig())
>>> views = augment(torch.randn(4, 32, 32, 32), seed=0, epoch=0, index=7)
>>> [tuple(v.shape) for v in views]
[(4, 32, 32, 32), (4, 32, 32, 32)]
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
import torch

__all__ = [
    "AugmentConfig",
    "MultiViewAugment",
    "ViewSpec",
    "build_view_transform",
    "view_seed",
]


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of the per-view augmentations.

    Parameters
    ----------
    flip_prob : float
        Probability of flipping along each spatial axis (independently).
    affine_prob, rotate_deg, affine_scale : float
        Probability of a random affine, its rotation range (+/- degrees about each
        axis) and isotropic-ish scale range (+/- fraction).
    intensity_scale, intensity_shift : float
        Ranges of the multiplicative ``x * (1 + f)`` and additive ``x + o`` intensity
        changes (z-scored inputs), each applied with ``intensity_prob``.
    gamma_prob, gamma : float, (float, float)
        Probability and range of a gamma (contrast) change.
    noise_prob, noise_std : float
        Probability and standard deviation of additive Gaussian noise.
    blur_prob, blur_sigma : float, (float, float)
        Probability and sigma range (voxels) of Gaussian blur.
    bias_prob, bias_coeff : float, (float, float)
        Probability and coefficient range of a smooth multiplicative bias field.
    gibbs_prob, gibbs_alpha : float, (float, float)
        Probability and alpha range of k-space truncation (Gibbs ringing).
    """

    flip_prob: float = 0.5
    affine_prob: float = 0.3
    rotate_deg: float = 10.0
    affine_scale: float = 0.1
    intensity_prob: float = 0.8
    intensity_scale: float = 0.2
    intensity_shift: float = 0.2
    gamma_prob: float = 0.3
    gamma: tuple[float, float] = (0.7, 1.5)
    noise_prob: float = 0.2
    noise_std: float = 0.05
    blur_prob: float = 0.2
    blur_sigma: tuple[float, float] = (0.5, 1.0)
    bias_prob: float = 0.2
    bias_coeff: tuple[float, float] = (0.0, 0.1)
    gibbs_prob: float = 0.1
    gibbs_alpha: tuple[float, float] = (0.0, 0.4)

    def __post_init__(self) -> None:
        for name in ("flip_prob", "affine_prob", "intensity_prob", "gamma_prob", "noise_prob",
                     "blur_prob", "bias_prob", "gibbs_prob"):
            value = float(getattr(self, name))
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"AugmentConfig.{name} must be a probability in [0, 1], got {value}.")
        for name in ("gamma", "blur_sigma", "bias_coeff", "gibbs_alpha"):
            low, high = (float(v) for v in getattr(self, name))
            if low > high:
                raise ValueError(f"AugmentConfig.{name} must be (low, high) with low <= high, got {(low, high)}.")
            object.__setattr__(self, name, (low, high))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (ranges as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def none(cls) -> "AugmentConfig":
        """No augmentation besides the crop (all probabilities 0)."""
        return cls(flip_prob=0.0, affine_prob=0.0, intensity_prob=0.0, gamma_prob=0.0, noise_prob=0.0,
                   blur_prob=0.0, bias_prob=0.0, gibbs_prob=0.0)


@dataclass(frozen=True)
class ViewSpec:
    """One kind of view a method needs.

    Parameters
    ----------
    name : str
        ``"global"``, ``"local"`` (DINO multi-crop), ``"masked"`` (MAE), ...
    size : int
        Edge of the cubic output view (voxels).
    scale : (float, float)
        Range of the crop's edge as a fraction of the input's edge (per axis, so the
        crop's volume fraction is ``scale**3``). ``(1.0, 1.0)`` = no crop.
    count : int
        How many views of this kind per sample.
    """

    name: str
    size: int
    scale: tuple[float, float] = (0.6, 1.0)
    count: int = 1

    def __post_init__(self) -> None:
        low, high = (float(v) for v in self.scale)
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(f"ViewSpec {self.name!r}: scale must satisfy 0 < low <= high <= 1, got {self.scale!r}.")
        if int(self.size) < 4 or int(self.count) < 1:
            raise ValueError(f"ViewSpec {self.name!r}: need size >= 4 and count >= 1, got {self.size}, {self.count}.")
        object.__setattr__(self, "scale", (low, high))
        object.__setattr__(self, "size", int(self.size))
        object.__setattr__(self, "count", int(self.count))


def view_seed(seed: int, epoch: int, index: int, view: int) -> int:
    """Deterministic 32-bit seed for one view of one sample in one epoch."""
    text = f"{int(seed)}:{int(epoch)}:{int(index)}:{int(view)}".encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:4], "little")


def build_view_transform(spec: ViewSpec, config: AugmentConfig) -> Any:
    """The MONAI ``Compose`` of array transforms producing one view of kind *spec*.

    Input and output are channel-first tensors ``(C, D, H, W)``; the output is
    ``(C, spec.size, spec.size, spec.size)`` float32.
    """
    from monai.transforms import (
        Compose,
        EnsureType,
        RandAdjustContrast,
        RandAffine,
        RandBiasField,
        RandFlip,
        RandGaussianNoise,
        RandGaussianSmooth,
        RandGibbsNoise,
        RandScaleCrop,
        RandScaleIntensity,
        RandShiftIntensity,
        Resize,
    )

    cfg = config
    low, high = spec.scale
    steps: list[Any] = [EnsureType(data_type="tensor", dtype=torch.float32, track_meta=False)]
    if low < 1.0:
        steps.append(RandScaleCrop(roi_scale=low, max_roi_scale=high, random_center=True, random_size=True))
    steps.append(Resize(spatial_size=(spec.size,) * 3, mode="trilinear", anti_aliasing=False))
    steps += [RandFlip(prob=cfg.flip_prob, spatial_axis=axis) for axis in range(3)]
    if cfg.affine_prob > 0:
        rad = float(np.deg2rad(cfg.rotate_deg))
        steps.append(
            RandAffine(prob=cfg.affine_prob, rotate_range=(rad, rad, rad),
                       scale_range=(cfg.affine_scale,) * 3, padding_mode="zeros", mode="bilinear")
        )
    steps += [
        RandScaleIntensity(factors=cfg.intensity_scale, prob=cfg.intensity_prob),
        RandShiftIntensity(offsets=cfg.intensity_shift, prob=cfg.intensity_prob),
        RandAdjustContrast(prob=cfg.gamma_prob, gamma=cfg.gamma),
        RandGaussianNoise(prob=cfg.noise_prob, std=cfg.noise_std),
        RandGaussianSmooth(prob=cfg.blur_prob, sigma_x=cfg.blur_sigma, sigma_y=cfg.blur_sigma,
                           sigma_z=cfg.blur_sigma),
        RandBiasField(prob=cfg.bias_prob, coeff_range=cfg.bias_coeff, degree=3),
        RandGibbsNoise(prob=cfg.gibbs_prob, alpha=cfg.gibbs_alpha),
        EnsureType(data_type="tensor", dtype=torch.float32, track_meta=False),
    ]
    return Compose(steps)


class MultiViewAugment:
    """Draw all the views a method needs from one preprocessed volume.

    Parameters
    ----------
    specs : sequence of ViewSpec
        The kinds of views, in the order the method expects them (e.g. DINO: global
        then local).
    config : AugmentConfig
        Augmentation probabilities and ranges (shared by all views).

    Notes
    -----
    Calling returns ``sum(spec.count)`` tensors; views of one kind have one shape, so
    the default collate stacks them into ``(B, C, size, size, size)``.
    """

    def __init__(self, specs: Sequence[ViewSpec], config: AugmentConfig | None = None) -> None:
        self.specs = tuple(specs)
        self.config = config if config is not None else AugmentConfig()
        self._transforms = [build_view_transform(spec, self.config) for spec in self.specs]

    @property
    def n_views(self) -> int:
        """Total number of views per sample."""
        return sum(spec.count for spec in self.specs)

    def __call__(self, image: torch.Tensor, *, seed: int, epoch: int, index: int) -> list[torch.Tensor]:
        """Views of *image* ``(C, D, H, W)``; deterministic in ``(seed, epoch, index)``."""
        if image.ndim != 4:
            raise ValueError(
                f"MultiViewAugment expects one channel-first volume (C, D, H, W), got shape {tuple(image.shape)}."
            )
        views: list[torch.Tensor] = []
        view_index = 0
        for spec, transform in zip(self.specs, self._transforms):
            for _ in range(spec.count):
                transform.set_random_state(seed=view_seed(seed, epoch, index, view_index))
                out = transform(image)
                views.append(torch.as_tensor(out, dtype=torch.float32).contiguous())
                view_index += 1
        return views
