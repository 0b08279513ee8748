"""Real brain anatomy for the synthetic cohort: the MNI152 template and its tissue maps.

nilearn's wheel ships the ICBM 2009a nonlinear symmetric MNI152 template
(``mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz``) with its grey- and white-matter
probability maps in ``nilearn/datasets/data/``; :func:`nilearn.datasets.load_mni152_template`,
``load_mni152_gm_template`` and ``load_mni152_wm_template`` read them from there
without any download.  The template is skull-stripped (background 0), like BraTS.

Tissue probabilities: grey matter (GM) and white matter (WM) come from the maps; the
cerebrospinal fluid (CSF) is the rest of the intracranial volume (template T1 > 0,
lightly smoothed), ``CSF = clip(mask - GM - WM, 0, 1)``, which captures the
ventricles, sulci and cisterns.

Each patient gets a different head: a small random affine (rotation, anisotropic
scaling, shift) and a radial mass effect around the tumour that pushes tissue (and
the ventricles) away from it.  The output grid is ``size³`` voxels of ``spacing`` mm
in RAS+ orientation centred on MNI (0, -14, 10) mm.  With the default 64 × 2 mm the
field of view is 128 mm, which crops the frontal and occipital poles and the lower
cerebellum (the MNI brain is about 180 mm long); ``size=96`` holds the whole brain.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = [
    "BRAIN_CENTRE_MM",
    "AnatomyWarp",
    "TissueTemplate",
    "grid_affine",
    "grid_coordinates_mm",
    "load_mni152_tissues",
    "prime_template_cache",
    "warp_tissues",
]

#: Centre of the output field of view, MNI152 mm (RAS).
BRAIN_CENTRE_MM: tuple[float, float, float] = (0.0, -14.0, 10.0)


@dataclass(frozen=True)
class TissueTemplate:
    """Tissue probability maps on a regular grid.

    Attributes
    ----------
    csf, gm, wm : numpy.ndarray of float32, shape (nx, ny, nz)
        Probabilities in [0, 1]; their sum is the intracranial mask.
    affine : numpy.ndarray, shape (4, 4)
        Voxel index -> MNI152 mm (RAS+).
    spacing : float
        Voxel size in mm.
    source : str
        Where the maps come from.
    """

    csf: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    affine: np.ndarray
    spacing: float
    source: str


_TEMPLATES: dict[float, TissueTemplate] = {}


def load_mni152_tissues(spacing: float = 2.0) -> TissueTemplate:
    """Load the MNI152 2009a tissue maps shipped with nilearn, resampled to *spacing*.

    Parameters
    ----------
    spacing : float
        Voxel size (mm) of the returned grid; the 1 mm maps are smoothed with a
        Gaussian of FWHM ``spacing`` before resampling when ``spacing > 1``.

    Returns
    -------
    TissueTemplate
        Cached per spacing in this process (the arrays are read-only).

    Examples
    --------
    >>> tissues = load_mni152_tissues(2.0)
    >>> tissues.gm.shape
    (103, 121, 99)
    """
    spacing = float(spacing)
    if spacing <= 0:
        raise ValueError(f"spacing is {spacing} mm; use a positive voxel size such as 2.0.")
    if spacing not in _TEMPLATES:
        _TEMPLATES[spacing] = _build_tissues(spacing)
    return _TEMPLATES[spacing]


def prime_template_cache(template: TissueTemplate) -> None:
    """Put an already built template into this process's cache (worker initialiser)."""
    _TEMPLATES[float(template.spacing)] = template


def _build_tissues(spacing: float) -> TissueTemplate:
    from nilearn import datasets

    t1_img = datasets.load_mni152_template(resolution=1)
    gm_img = datasets.load_mni152_gm_template(resolution=1)
    wm_img = datasets.load_mni152_wm_template(resolution=1)
    src_affine = np.asarray(t1_img.affine, dtype=float)
    t1 = np.asarray(t1_img.get_fdata(), dtype=np.float32)
    gm = np.clip(np.asarray(gm_img.get_fdata(), dtype=np.float32), 0.0, 1.0)
    wm = np.clip(np.asarray(wm_img.get_fdata(), dtype=np.float32), 0.0, 1.0)
    mask = ndimage.gaussian_filter((t1 > 0).astype(np.float32), 0.6)
    gm = gm * mask
    wm = wm * mask
    scale = np.maximum(gm + wm, 1.0)
    gm, wm = gm / scale, wm / scale
    csf = np.clip(mask - gm - wm, 0.0, 1.0)

    src_spacing = float(abs(src_affine[0, 0]))
    sigma = 0.0
    if spacing > src_spacing:
        sigma = np.sqrt(spacing**2 - src_spacing**2) / 2.3548 / src_spacing
    lo = src_affine[:3, 3] - 4.0
    hi = src_affine[:3, :3] @ (np.asarray(t1.shape) - 1) + src_affine[:3, 3] + 4.0
    shape = tuple(int(np.ceil((hi[d] - lo[d]) / spacing)) + 1 for d in range(3))
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = lo
    # template voxel -> source voxel
    to_src = np.linalg.inv(src_affine) @ affine
    maps = []
    for volume in (csf, gm, wm):
        smoothed = ndimage.gaussian_filter(volume, sigma) if sigma > 0 else volume
        resampled = ndimage.affine_transform(
            smoothed, to_src[:3, :3], offset=to_src[:3, 3], output_shape=shape, order=1, mode="constant", cval=0.0
        ).astype(np.float32)
        resampled.setflags(write=False)
        maps.append(resampled)
    return TissueTemplate(
        csf=maps[0],
        gm=maps[1],
        wm=maps[2],
        affine=affine,
        spacing=spacing,
        source="MNI152 ICBM 2009a nonlinear symmetric (nilearn.datasets, shipped in the wheel)",
    )


def grid_affine(size: int, spacing: float) -> np.ndarray:
    """Affine (voxel -> MNI mm, RAS+) of the ``size³`` output grid.

    Parameters
    ----------
    size : int
        Voxels per axis.
    spacing : float
        Voxel size in mm.

    Returns
    -------
    numpy.ndarray, shape (4, 4)
        ``diag(spacing)`` with the grid centre at :data:`BRAIN_CENTRE_MM`.
    """
    affine = np.diag([float(spacing)] * 3 + [1.0])
    affine[:3, 3] = np.asarray(BRAIN_CENTRE_MM) - (size - 1) / 2.0 * float(spacing)
    return affine


@functools.lru_cache(maxsize=4)
def _grid_coordinates(size: int, spacing: float) -> np.ndarray:
    affine = grid_affine(size, spacing)
    axis = np.arange(size, dtype=np.float32)
    coords = np.empty((3, size, size, size), dtype=np.float32)
    for d in range(3):
        shape = [1, 1, 1]
        shape[d] = size
        coords[d] = (affine[d, d] * axis + affine[d, 3]).reshape(shape)
    coords.setflags(write=False)
    return coords


def grid_coordinates_mm(size: int, spacing: float) -> np.ndarray:
    """World coordinates (mm) of every voxel of the output grid.

    Returns
    -------
    numpy.ndarray of float32, shape (3, size, size, size)
        Read-only, cached.
    """
    return _grid_coordinates(int(size), float(spacing))


@dataclass(frozen=True)
class AnatomyWarp:
    """One patient's deformation of the template.

    Attributes
    ----------
    rotation_deg : tuple of float
        Rotations about x, y, z (degrees).
    scale : tuple of float
        Scaling per axis (1 = MNI size).
    shift_mm : tuple of float
        Translation (mm).
    mass_centre_mm : tuple of float
        Centre of the radial mass effect (the tumour centre).
    mass_strength : float
        In [0, 0.9): fraction by which tissue at the centre is pushed outwards.
    mass_radius_mm : float
        Gaussian radius of the mass effect.
    """

    rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    scale: tuple[float, float, float] = (1.0, 1.0, 1.0)
    shift_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    mass_centre_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    mass_strength: float = 0.0
    mass_radius_mm: float = 20.0

    def matrix(self) -> np.ndarray:
        """3 × 3 matrix mapping patient space to template space (about the centre)."""
        ax, ay, az = np.deg2rad(self.rotation_deg)
        rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
        ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
        rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
        return (rz @ ry @ rx) / np.asarray(self.scale)[None, :]


def warp_tissues(
    template: TissueTemplate,
    coords_mm: np.ndarray,
    warp: AnatomyWarp,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample the tissue maps of one patient on the output grid.

    Parameters
    ----------
    template : TissueTemplate
        From :func:`load_mni152_tissues`.
    coords_mm : numpy.ndarray, shape (3, nx, ny, nz)
        Patient-space world coordinates of the output voxels
        (:func:`grid_coordinates_mm`).
    warp : AnatomyWarp
        The patient's deformation.

    Returns
    -------
    tuple of numpy.ndarray of float32, each shape (nx, ny, nz)
        CSF, GM and WM probabilities.
    """
    if not 0.0 <= warp.mass_strength < 0.9:
        raise ValueError(f"mass_strength is {warp.mass_strength}; use a value in [0, 0.9) so the warp does not fold.")
    points = coords_mm.reshape(3, -1)
    if warp.mass_strength > 0:
        centre = np.asarray(warp.mass_centre_mm, dtype=np.float32)[:, None]
        offset = points - centre
        r2 = (offset * offset).sum(axis=0)
        shrink = 1.0 - np.float32(warp.mass_strength) * np.exp(r2 * np.float32(-0.5 / warp.mass_radius_mm**2))
        points = centre + offset * shrink[None, :]
    # patient mm -> template mm -> template voxel, as one affine map
    brain_centre = np.asarray(BRAIN_CENTRE_MM)
    inv = np.linalg.inv(template.affine)
    linear = inv[:3, :3] @ warp.matrix()
    shift = inv[:3, :3] @ (brain_centre - np.asarray(warp.shift_mm) - warp.matrix() @ brain_centre) + inv[:3, 3]
    # elementwise (no BLAS call: a threaded 3x3 @ 3xN product only burns CPU here)
    index = np.empty_like(points)
    for d in range(3):
        index[d] = (
            np.float32(linear[d, 0]) * points[0]
            + np.float32(linear[d, 1]) * points[1]
            + np.float32(linear[d, 2]) * points[2]
            + np.float32(shift[d])
        )
    shape = coords_mm.shape[1:]
    out = []
    for volume in (template.csf, template.gm, template.wm):
        sampled = ndimage.map_coordinates(volume, index, order=1, mode="constant", cval=0.0, prefilter=False)
        out.append(sampled.reshape(shape).astype(np.float32))
    return out[0], out[1], out[2]
