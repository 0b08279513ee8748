"""Intensity perturbations for stability analyses (BrainIAC-style).

Three perturbations, applied to the raw channel-stacked intensities on the scan's own
grid, *before* reorientation/resampling/normalisation (see
:func:`neurofeat.extract.preprocess.build_transforms`):

- ``contrast:G``  MONAI ``AdjustContrast(gamma=G)`` per channel,
  ``((x - min) / range) ** G * range + min`` (``G = 1`` is the identity; BrainIAC sweeps
  0.5-2.0);
- ``gibbs:A``     MONAI ``GibbsNoise(alpha=A)`` (k-space truncation ringing; ``A = 0`` is
  the identity here, 0.0-0.4 in BrainIAC);
- ``bias:S``      a *deterministic* smooth multiplicative bias field
  ``exp(S * p(x, y, z))``, where ``p`` is a fixed combination of Legendre polynomials
  (degree <= 3) of the voxel coordinates scaled to [-1, 1], normalised so that
  ``max |p| = 1`` on the grid; ``S`` is therefore the largest log-gain (``S = 0`` is the
  identity, 0.0-0.4 in BrainIAC). BrainIAC draws random coefficients
  (``RandBiasField``); fixed coefficients make reruns and backbones comparable.

Each perturbation only changes brain voxels (raw intensity > ``threshold``, default 0):
the background stays exactly 0 so that the brain crop and the brain-voxel z-score of
the preprocessing see the same brain as without perturbation.

A ``--perturb`` specification is a comma-separated list; each item is one perturbation
extracted into its own partition, labelled ``<kind>-<strength>`` (``gibbs-0.2``). Items
joined by ``+`` are applied together in the written order (``bias:0.2+gibbs:0.1`` ->
label ``bias-0.2+gibbs-0.1``). ``none`` is the unperturbed baseline.

Example
-------
>>> [p.label for p in parse_perturbations("gibbs:0.2,bias:0.3,contrast:1.5")]
['gibbs-0.2', 'bias-0.3', 'contrast-1.5']
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "PERTURBATION_KINDS",
    "Perturbation",
    "parse_perturbations",
    "adjust_contrast",
    "gibbs_noise",
    "bias_field",
    "apply_bias_field",
]

#: kind -> (valid range description, check)
PERTURBATION_KINDS: dict[str, str] = {
    "contrast": "gamma > 0 (1 = unchanged)",
    "gibbs": "alpha in [0, 1] (0 = unchanged)",
    "bias": "strength in [0, 2] (0 = unchanged)",
}

# Fixed bias-field polynomial: (degree_x, degree_y, degree_z) -> coefficient.
_BIAS_TERMS: tuple[tuple[tuple[int, int, int], float], ...] = (
    ((1, 0, 0), 0.60),
    ((0, 1, 0), -0.40),
    ((0, 0, 1), 0.35),
    ((1, 1, 0), 0.25),
    ((0, 1, 1), -0.20),
    ((2, 0, 0), -0.30),
    ((0, 0, 2), 0.20),
    ((1, 0, 2), 0.15),
    ((3, 0, 0), 0.10),
)


def _check_strength(kind: str, value: float) -> None:
    ok = {
        "contrast": value > 0,
        "gibbs": 0.0 <= value <= 1.0,
        "bias": 0.0 <= value <= 2.0,
    }[kind]
    if not ok or not np.isfinite(value):
        raise ValueError(f"perturbation '{kind}:{value:g}' is out of range; {kind} needs {PERTURBATION_KINDS[kind]}")


def _fmt(value: float) -> str:
    # 15 significant digits: every decimal strength a user types keeps its own label
    # (":g" would merge 1.0000001 into "1"), and short ones read as before ("0.2", "1").
    return f"{value:.15g}"


# ------------------------------------------------------------------ pure math
def adjust_contrast(channel: Any, gamma: float) -> Any:
    """MONAI ``AdjustContrast(gamma)`` on one channel (array or tensor, any shape)."""
    from monai.transforms import AdjustContrast

    return AdjustContrast(gamma=float(gamma))(channel)


def gibbs_noise(image: Any, alpha: float) -> Any:
    """MONAI ``GibbsNoise(alpha)`` on a channel-first image ``(C, X, Y, Z)``."""
    from monai.transforms import GibbsNoise

    return GibbsNoise(alpha=float(alpha))(image)


def bias_field(shape: Sequence[int], strength: float) -> np.ndarray:
    """The deterministic multiplicative bias field on a grid of *shape* ``(X, Y, Z)``.

    Parameters
    ----------
    shape : 3 ints
        Spatial shape.
    strength : float
        Largest log-gain ``S``; the field is ``exp(S * p)`` with ``max |p| = 1``.

    Returns
    -------
    numpy.ndarray
        float32 array of *shape*, all values in ``[exp(-S), exp(S)]``.
    """
    from numpy.polynomial import legendre

    coords = [np.linspace(-1.0, 1.0, int(n)) if int(n) > 1 else np.zeros(1) for n in shape]
    poly = np.zeros(tuple(int(n) for n in shape), dtype=np.float64)
    for (dx, dy, dz), coef in _BIAS_TERMS:
        px = legendre.legval(coords[0], [0] * dx + [1])
        py = legendre.legval(coords[1], [0] * dy + [1])
        pz = legendre.legval(coords[2], [0] * dz + [1])
        poly += coef * px[:, None, None] * py[None, :, None] * pz[None, None, :]
    peak = np.abs(poly).max()
    if peak > 0:
        poly /= peak
    return np.exp(float(strength) * poly).astype(np.float32)


def apply_bias_field(image: Any, strength: float) -> Any:
    """Multiply every channel of ``(C, X, Y, Z)`` *image* by :func:`bias_field`."""
    import torch

    field = torch.as_tensor(bias_field(tuple(image.shape[1:]), strength))
    return image * field.to(image.device)[None]


# -------------------------------------------------------------------- transform
@dataclass(frozen=True)
class Perturbation:
    """One perturbation setting (possibly several steps applied in order).

    Parameters
    ----------
    steps : tuple of (kind, strength)
        ``kind`` in :data:`PERTURBATION_KINDS`; empty = no perturbation (``"none"``).
    threshold : float
        Brain voxels are those with raw intensity above this in each channel; only
        they are changed (background stays 0).
    key : str
        Dict key of the channel-first image.

    Attributes
    ----------
    label : str
        Partition value stored with the rows: ``"none"``, ``"gibbs-0.2"``,
        ``"bias-0.2+gibbs-0.1"``.
    """

    steps: tuple[tuple[str, float], ...] = ()
    threshold: float = 0.0
    key: str = "image"

    def __post_init__(self) -> None:
        steps = tuple((str(k).lower(), float(v)) for k, v in self.steps)
        for kind, value in steps:
            if kind not in PERTURBATION_KINDS:
                raise ValueError(
                    f"unknown perturbation '{kind}'; use one of {', '.join(PERTURBATION_KINDS)} "
                    "(e.g. --perturb gibbs:0.2,bias:0.3,contrast:1.5)"
                )
            _check_strength(kind, value)
        object.__setattr__(self, "steps", steps)

    @property
    def label(self) -> str:
        """Partition label (``"none"`` when there are no steps)."""
        if not self.steps:
            return "none"
        return "+".join(f"{kind}-{_fmt(value)}" for kind, value in self.steps)

    @property
    def is_identity(self) -> bool:
        """True when no step changes the image (no steps, or only neutral strengths)."""
        neutral = {"contrast": 1.0, "gibbs": 0.0, "bias": 0.0}
        return all(value == neutral[kind] for kind, value in self.steps)

    def apply(self, image: Any) -> Any:
        """Perturb a channel-first tensor ``(C, X, Y, Z)``; returns a new tensor."""
        import torch

        def plain(x: Any) -> torch.Tensor:
            if isinstance(x, torch.Tensor):
                return x.as_subclass(torch.Tensor)
            return torch.as_tensor(np.asarray(x))

        img = plain(image).float()
        brain = img > self.threshold
        out = img.clone()
        for kind, value in self.steps:
            if kind == "contrast" and value != 1.0:
                out = torch.stack([plain(adjust_contrast(out[c], value)) for c in range(out.shape[0])])
            elif kind == "gibbs" and value != 0.0:
                out = plain(gibbs_noise(out, value))
            elif kind == "bias" and value != 0.0:
                out = apply_bias_field(out, value)
            out = torch.where(brain, out.float(), torch.zeros((), dtype=torch.float32))
        return out

    def __call__(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Dict-transform form: perturbs ``data[key]``, keeping its metadata."""
        out = dict(data)
        img = out[self.key]
        perturbed = self.apply(img)
        if hasattr(img, "copy_meta_from"):  # MetaTensor: keep affine and history
            from monai.data import MetaTensor

            perturbed = MetaTensor(perturbed, meta=img.meta, applied_operations=img.applied_operations)
        out[self.key] = perturbed
        return out


_ITEM = re.compile(r"^\s*([a-zA-Z_]+)\s*[:=]\s*([-+0-9.eE]+)\s*$")


def parse_perturbations(spec: str | None, *, threshold: float = 0.0) -> list[Perturbation]:
    """Parse a ``--perturb`` specification into perturbations, one per partition.

    Parameters
    ----------
    spec : str or None
        ``"gibbs:0.2,bias:0.3,contrast:1.5"``; ``+`` combines steps
        (``"bias:0.2+gibbs:0.1"``); ``"none"`` (or empty / None) is the baseline.
    threshold : float
        Brain threshold passed to each :class:`Perturbation`.

    Returns
    -------
    list of Perturbation
        In the given order, duplicates (same label) removed.

    Raises
    ------
    ValueError
        Naming the item that cannot be parsed, the valid kinds and ranges.
    """
    if spec is None or not str(spec).strip():
        return [Perturbation(threshold=threshold)]
    out: list[Perturbation] = []
    for item in str(spec).split(","):
        item = item.strip()
        if not item:
            continue
        if item.lower() == "none":
            pert = Perturbation(threshold=threshold)
        else:
            steps = []
            for part in item.split("+"):
                match = _ITEM.match(part)
                if match is None:
                    raise ValueError(
                        f"cannot parse perturbation '{part.strip()}' in --perturb '{spec}'; write "
                        "KIND:STRENGTH items separated by commas, e.g. gibbs:0.2,bias:0.3,contrast:1.5 "
                        f"(kinds: {', '.join(f'{k} {v}' for k, v in PERTURBATION_KINDS.items())})"
                    )
                try:
                    value = float(match.group(2))
                except ValueError:
                    raise ValueError(f"perturbation '{part.strip()}': '{match.group(2)}' is not a number") from None
                steps.append((match.group(1).lower(), value))
            pert = Perturbation(steps=tuple(steps), threshold=threshold)
        if pert.label not in {p.label for p in out}:
            out.append(pert)
    if not out:
        return [Perturbation(threshold=threshold)]
    return out
