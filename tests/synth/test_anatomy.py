"""The MNI152 template from nilearn's wheel and the per-patient warp."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from neurofeat.synth import AnatomyWarp, grid_affine, grid_coordinates_mm, load_mni152_tissues, warp_tissues

SPACING = 4.0


def test_template_ships_inside_nilearn():
    import nilearn.datasets

    data = Path(nilearn.datasets.__file__).parent / "data"
    for name in ("t1", "gm", "wm"):
        assert (data / f"mni_icbm152_{name}_tal_nlin_sym_09a_converted.nii.gz").is_file()


def test_tissue_maps_are_probabilities_with_plausible_volumes():
    tissues = load_mni152_tissues(SPACING)
    voxel_ml = SPACING**3 / 1000.0
    total = tissues.csf + tissues.gm + tissues.wm
    assert total.max() <= 1.0 + 1e-5 and min(t.min() for t in (tissues.csf, tissues.gm, tissues.wm)) >= 0.0
    # MNI152 2009a: about 0.9-1.0 l of GM, 0.6-0.7 l of WM (it is larger than an average brain)
    assert 800 < tissues.gm.sum() * voxel_ml < 1100
    assert 550 < tissues.wm.sum() * voxel_ml < 800
    assert 100 < tissues.csf.sum() * voxel_ml < 400


def test_grid_affine_is_ras_centred():
    affine = grid_affine(32, 4.0)
    np.testing.assert_allclose(affine[:3, :3], np.eye(3) * 4.0)
    centre = affine @ np.array([15.5, 15.5, 15.5, 1.0])
    np.testing.assert_allclose(centre[:3], [0.0, -14.0, 10.0])


def _centre_of_mass(volume: np.ndarray, coords: np.ndarray) -> np.ndarray:
    return np.asarray([(coords[d] * volume).sum() / volume.sum() for d in range(3)])


def test_warp_shift_moves_the_brain_by_the_shift():
    tissues = load_mni152_tissues(SPACING)
    coords = grid_coordinates_mm(48, SPACING)  # 192 mm: the whole brain
    _, _, wm0 = warp_tissues(tissues, coords, AnatomyWarp())
    _, _, wm1 = warp_tissues(tissues, coords, AnatomyWarp(shift_mm=(6.0, 0.0, -4.0)))
    moved = _centre_of_mass(wm1, coords) - _centre_of_mass(wm0, coords)
    np.testing.assert_allclose(moved, [6.0, 0.0, -4.0], atol=0.3)


def test_mass_effect_pushes_tissue_away_from_the_centre():
    tissues = load_mni152_tissues(SPACING)
    coords = grid_coordinates_mm(48, SPACING)
    centre = (30.0, 0.0, 20.0)
    csf0, gm0, wm0 = warp_tissues(tissues, coords, AnatomyWarp())
    csf1, gm1, wm1 = warp_tissues(
        tissues, coords, AnatomyWarp(mass_centre_mm=centre, mass_strength=0.5, mass_radius_mm=20.0)
    )
    r = np.sqrt(sum((coords[d] - centre[d]) ** 2 for d in range(3)))
    near = r < 10
    # tissue within 10 mm now comes from within ~5 mm of the centre: same total mass far away
    far = r > 110  # displacement 0.5·r·exp(-r²/800) < 1e-4 mm
    np.testing.assert_allclose(wm1[far], wm0[far], atol=1e-3)
    assert not np.allclose(wm1[near], wm0[near])


def test_folding_warp_is_refused():
    tissues = load_mni152_tissues(SPACING)
    with pytest.raises(ValueError, match="mass_strength is 0.95"):
        warp_tissues(tissues, grid_coordinates_mm(16, SPACING), AnatomyWarp(mass_strength=0.95))
