"""The tumour of one synthetic patient and the four MRI contrasts around it.

A glioma is drawn as three nested compartments with soft (partial-volume) edges
around the centre ``c``:

* **necrotic core** (BraTS label 1): dark on T1/T1ce, bright on T2;
* **enhancing / solid tumour** (label 4): the shell between necrosis and the core
  boundary; bright on T1ce in proportion to ``enhancement`` (a non-enhancing
  low-grade tumour has ``enhancement`` ≈ 0), bright on T2/FLAIR; with the T2-FLAIR
  mismatch trait its FLAIR interior is suppressed while a thin rim stays bright;
* **oedema** (label 2): bright on T2 and FLAIR, mildly dark on T1, spreading
  further along white matter than through grey matter.

Irregular shape: the distance to the centre is modulated by a smooth random field
(a sum of six plane waves with wavelengths of 1.3-3 core radii, random directions and
phases), ``dist = |x - c| · (1 - irregularity · f(x) / 2)``, giving lobulated margins;
the oedema boundary uses half that modulation, reaches 0.5-1.5 times its nominal
thickness depending on the white-matter fraction, and a second field makes it
finger-like; a third field makes the solid tumour heterogeneous.

Tissue intensities (arbitrary units, WM ≈ 600-900 like BraTS T1/T2) are listed in
:data:`INTENSITIES`; each contrast is the partial-volume mix
``(1 - core - oedema)·(CSF·μ_csf + GM·μ_gm + WM·μ_wm) + Σ compartment·μ``.

The traits of :mod:`neurofeat.synth.labels` map to physical sizes in
:func:`tumour_spec` (documented there).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

import numpy as np
import pandas as pd

__all__ = [
    "INTENSITIES",
    "SEQUENCES",
    "Compartments",
    "TumourSpec",
    "compose_contrasts",
    "tumour_compartments",
    "tumour_spec",
]

#: The four BraTS sequences, in manifest order.
SEQUENCES: tuple[str, ...] = ("t1", "t1ce", "t2", "flair")

#: Noise-free intensity of each tissue/compartment per sequence.
INTENSITIES: Mapping[str, Mapping[str, float]] = MappingProxyType(
    {
        #          csf     gm     wm    necrosis solid  oedema  enhancement boost (T1ce)
        "t1": MappingProxyType({"csf": 350.0, "gm": 620.0, "wm": 900.0, "necrosis": 250.0, "solid": 540.0, "oedema": 600.0, "boost": 0.0}),
        "t1ce": MappingProxyType({"csf": 320.0, "gm": 650.0, "wm": 880.0, "necrosis": 240.0, "solid": 540.0, "oedema": 590.0, "boost": 1250.0}),
        "t2": MappingProxyType({"csf": 1500.0, "gm": 850.0, "wm": 600.0, "necrosis": 1400.0, "solid": 1000.0, "oedema": 1150.0, "boost": 0.0}),
        "flair": MappingProxyType({"csf": 200.0, "gm": 760.0, "wm": 560.0, "necrosis": 650.0, "solid": 980.0, "oedema": 1200.0, "boost": 0.0}),
    }
)


def _sigmoid(x: np.ndarray | float) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != np.float32:
        x = x.astype(np.float64)
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60.0, 60.0)))


@dataclass(frozen=True)
class TumourSpec:
    """Physical description of one tumour.

    Attributes
    ----------
    centre_mm : tuple of float
        Centre in MNI152 mm (RAS).
    core_ml : float
        Target volume of necrosis + solid tumour (ml).
    necrosis_fraction : float
        Fraction of the core volume that is necrotic, in [0, 0.6].
    oedema_ratio : float
        Target oedema volume / core volume.
    enhancement : float
        In [0, 1]: T1ce brightening of the solid tumour.
    mismatch : float
        In [0, 1]: strength of the T2-FLAIR mismatch (FLAIR-dark interior).
    irregularity : float
        Amplitude of the margin modulation, in [0, 0.35].
    """

    centre_mm: tuple[float, float, float]
    core_ml: float
    necrosis_fraction: float
    oedema_ratio: float
    enhancement: float
    mismatch: float
    irregularity: float

    @property
    def core_radius_mm(self) -> float:
        """Radius of a sphere of volume ``core_ml``."""
        return float((3.0 * self.core_ml * 1000.0 / (4.0 * np.pi)) ** (1.0 / 3.0))

    @property
    def outer_radius_mm(self) -> float:
        """Radius of a sphere holding core plus oedema."""
        return self.core_radius_mm * float((1.0 + self.oedema_ratio) ** (1.0 / 3.0))


def tumour_spec(row: pd.Series | Mapping[str, float]) -> TumourSpec:
    """Map the latent traits of one truth row to a :class:`TumourSpec`.

    The mapping (``σ`` = logistic function):
    ``core_ml = clip(18·exp(0.55·volume_z), 2, 90)``,
    ``necrosis_fraction = 0.6·σ(1.5·(necrosis_z - 1))``,
    ``oedema_ratio = clip(1.5·exp(0.5·oedema_z), 0.2, 6)``,
    ``enhancement = σ(1.5·(enhancement_z - 1))``,
    ``mismatch = σ(2·(mismatch_z - 0.8))``,
    ``irregularity = 0.08 + 0.25·σ(irregularity_z - 0.5)``.

    Parameters
    ----------
    row : pandas.Series or mapping
        Needs the six traits and ``centre_x_mm``, ``centre_y_mm``, ``centre_z_mm``.

    Returns
    -------
    TumourSpec
    """
    return TumourSpec(
        centre_mm=(float(row["centre_x_mm"]), float(row["centre_y_mm"]), float(row["centre_z_mm"])),
        core_ml=float(np.clip(18.0 * np.exp(0.55 * float(row["volume_z"])), 2.0, 90.0)),
        necrosis_fraction=float(0.6 * _sigmoid(1.5 * (float(row["necrosis_z"]) - 1.0))),
        oedema_ratio=float(np.clip(1.5 * np.exp(0.5 * float(row["oedema_z"])), 0.2, 6.0)),
        enhancement=float(_sigmoid(1.5 * (float(row["enhancement_z"]) - 1.0))),
        mismatch=float(_sigmoid(2.0 * (float(row["mismatch_z"]) - 0.8))),
        irregularity=float(0.08 + 0.25 * _sigmoid(float(row["irregularity_z"]) - 0.5)),
    )


@dataclass(frozen=True)
class Compartments:
    """Partial-volume fractions of the tumour compartments on the grid.

    Attributes
    ----------
    necrosis, solid, oedema : numpy.ndarray of float32, shape (nx, ny, nz)
        Fractions in [0, 1] with ``necrosis + solid + oedema <= 1``.
    flair_inner : numpy.ndarray of float32, shape (nx, ny, nz)
        Weight of the FLAIR-suppressed interior (mismatch), in [0, 1].
    heterogeneity : numpy.ndarray of float32, shape (nx, ny, nz)
        Multiplicative texture of the solid tumour (around 1).
    """

    necrosis: np.ndarray
    solid: np.ndarray
    oedema: np.ndarray
    flair_inner: np.ndarray
    heterogeneity: np.ndarray

    def volumes_ml(self, voxel_ml: float) -> dict[str, float]:
        """Compartment volumes (ml) for a voxel volume *voxel_ml*."""
        return {
            "necrosis_ml": float(self.necrosis.sum(dtype=np.float64) * voxel_ml),
            "enhancing_ml": float(self.solid.sum(dtype=np.float64) * voxel_ml),
            "oedema_ml": float(self.oedema.sum(dtype=np.float64) * voxel_ml),
        }

    def labels(self) -> np.ndarray:
        """BraTS label map (0 background, 1 necrosis, 2 oedema, 4 enhancing/solid), uint8."""
        stack = np.stack([1.0 - self.necrosis - self.solid - self.oedema, self.necrosis, self.oedema, self.solid])
        winner = np.argmax(stack, axis=0)
        return np.asarray([0, 1, 2, 4], dtype=np.uint8)[winner]


def _wave_field(
    axes_mm: tuple[np.ndarray, np.ndarray, np.ndarray],
    wavelength_mm: tuple[float, float],
    rng: np.random.Generator,
    n_waves: int = 6,
) -> np.ndarray:
    """Smooth random field of unit variance on an axis-aligned grid: a sum of plane waves.

    *axes_mm* are the 1-D offsets (mm) along x, y and z; the field has shape
    ``(len(x), len(y), len(z))``.
    """
    directions = rng.standard_normal((n_waves, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    wavelengths = rng.uniform(*wavelength_mm, n_waves)
    phases = rng.uniform(0.0, 2.0 * np.pi, n_waves)
    k = ((2.0 * np.pi / wavelengths)[:, None] * directions).astype(np.float32)
    ox, oy, oz = (np.asarray(a, dtype=np.float32) for a in axes_mm)
    field = np.zeros((ox.size, oy.size, oz.size), dtype=np.float32)
    for w in range(n_waves):
        phase = (k[w, 0] * ox + np.float32(phases[w]))[:, None, None] + (k[w, 1] * oy)[None, :, None] + (k[w, 2] * oz)[None, None, :]
        field += np.cos(phase)
    return field * np.float32(np.sqrt(2.0 / n_waves))


def tumour_compartments(
    spec: TumourSpec,
    coords_mm: np.ndarray,
    wm: np.ndarray,
    brain: np.ndarray,
    spacing: float,
    rng: np.random.Generator,
) -> Compartments:
    """Draw the compartments of one tumour on the grid.

    Parameters
    ----------
    spec : TumourSpec
        Sizes and traits.
    coords_mm : numpy.ndarray, shape (3, nx, ny, nz)
        World coordinates of the voxels of an axis-aligned grid
        (:func:`neurofeat.synth.anatomy.grid_coordinates_mm`).
    wm : numpy.ndarray, shape (nx, ny, nz)
        White-matter probability (oedema spreads along it).
    brain : numpy.ndarray, shape (nx, ny, nz)
        Intracranial fraction in [0, 1]; the tumour stays inside it.
    spacing : float
        Voxel size (mm); sets the width of the soft edges.
    rng : numpy.random.Generator
        Draws the random shape fields.

    Returns
    -------
    Compartments
    """
    r_core = spec.core_radius_mm
    r_outer = spec.outer_radius_mm
    width = 0.35 * float(spacing)
    shape = coords_mm.shape[1:]
    out = {
        "necrosis": np.zeros(shape, np.float32),
        "solid": np.zeros(shape, np.float32),
        "oedema": np.zeros(shape, np.float32),
        "flair_inner": np.zeros(shape, np.float32),
        "heterogeneity": np.ones(shape, np.float32),
    }
    # Work in the box that can hold tumour: dist >= radius·(1 - irregularity) and the
    # oedema reaches at most r_core + 1.5·1.4·(r_outer - r_core).
    reach = (r_core + 2.1 * (r_outer - r_core)) / max(1.0 - spec.irregularity, 0.5) + 4.0 * width + float(spacing)
    box = []
    axes = []
    for d in range(3):
        axis_values = coords_mm[d][tuple(slice(None) if a == d else 0 for a in range(3))]
        inside_axis = np.nonzero(np.abs(axis_values - spec.centre_mm[d]) <= reach)[0]
        if inside_axis.size == 0:
            return Compartments(**out)
        box.append(slice(int(inside_axis[0]), int(inside_axis[-1]) + 1))
        axes.append((axis_values[box[-1]] - spec.centre_mm[d]).astype(np.float32))
    box_t = tuple(box)
    ox, oy, oz = axes
    radius = np.sqrt((ox * ox)[:, None, None] + (oy * oy)[None, :, None] + (oz * oz)[None, None, :])
    shape_field = _wave_field(axes, (1.3 * r_core, 3.0 * r_core), rng)
    oedema_field = _wave_field(axes, (0.8 * r_outer, 2.0 * r_outer), rng)
    texture_field = _wave_field(axes, (0.3 * r_core, 0.8 * r_core), rng)
    dist = radius * (1.0 - spec.irregularity * np.clip(shape_field, -2.0, 2.0) / 2.0)
    core = _sigmoid((r_core - dist) / width)
    r_necrosis = r_core * spec.necrosis_fraction ** (1.0 / 3.0)
    necrosis = _sigmoid((r_necrosis - dist) / width) if spec.necrosis_fraction > 0.01 else np.zeros_like(core)
    wm_box = wm[box_t]
    # oedema: half the margin irregularity of the core (stays connected), reaching
    # further along white matter and with its own finger-like modulation
    dist_oedema = radius * (1.0 - 0.5 * spec.irregularity * np.clip(shape_field, -2.0, 2.0) / 2.0)
    r_oedema = r_core + (r_outer - r_core) * (0.5 + 1.0 * wm_box) * (1.0 + 0.2 * np.clip(oedema_field, -2.0, 2.0))
    total = np.maximum(_sigmoid((r_oedema - dist_oedema) / width), core)
    inside = np.clip(brain[box_t], 0.0, 1.0)
    necrosis = necrosis * inside
    out["necrosis"][box_t] = necrosis
    out["solid"][box_t] = np.clip(core * inside - necrosis, 0.0, 1.0)
    out["oedema"][box_t] = np.clip((total - core) * inside, 0.0, 1.0)
    out["flair_inner"][box_t] = _sigmoid((0.75 * r_core - dist) / width)
    out["heterogeneity"][box_t] = 1.0 + 0.12 * np.clip(texture_field, -2.0, 2.0)
    return Compartments(**out)


def compose_contrasts(
    csf: np.ndarray,
    gm: np.ndarray,
    wm: np.ndarray,
    compartments: Compartments,
    spec: TumourSpec,
    intensities: Mapping[str, Mapping[str, float]] = INTENSITIES,
) -> dict[str, np.ndarray]:
    """Noise-free T1, T1ce, T2 and FLAIR of one patient.

    Parameters
    ----------
    csf, gm, wm : numpy.ndarray, shape (nx, ny, nz)
        Tissue probabilities (warped template).
    compartments : Compartments
        From :func:`tumour_compartments`.
    spec : TumourSpec
        Supplies ``enhancement`` and ``mismatch``.
    intensities : mapping
        Per-sequence tissue intensities (default :data:`INTENSITIES`).

    Returns
    -------
    dict of str -> numpy.ndarray of float32, shape (nx, ny, nz)
        Keys ``t1``, ``t1ce``, ``t2``, ``flair``.
    """
    c = compartments
    healthy = 1.0 - c.necrosis - c.solid - c.oedema
    out = {}
    for sequence in SEQUENCES:
        mu = intensities[sequence]
        normal = csf * mu["csf"] + gm * mu["gm"] + wm * mu["wm"]
        solid_value = (mu["solid"] + spec.enhancement * mu["boost"]) * c.heterogeneity
        if sequence == "t2":
            solid_value = solid_value * (1.0 + 0.15 * spec.mismatch)
        if sequence == "flair":
            solid_value = solid_value * (1.0 - 0.55 * spec.mismatch * c.flair_inner)
        image = healthy * normal + c.necrosis * mu["necrosis"] + c.solid * solid_value + c.oedema * mu["oedema"]
        out[sequence] = image.astype(np.float32)
    return out
