"""Shared fixtures of the synth tests: one small rendered cohort per session."""

from __future__ import annotations

import pytest

from neurofeat.synth import generate_cohort

#: Small grid used by every image test: 32³ voxels of 4 mm (the 128 mm field of view
#: of the 64 × 2 mm default, at an eighth of the voxels).
SIZE, SPACING = 32, 4.0


@pytest.fixture(scope="session")
def small_cohort(tmp_path_factory):
    """40 patients, 3 sites, 32³, seed 5."""
    out = tmp_path_factory.mktemp("synth") / "cohort"
    return generate_cohort(out, n=40, n_sites=3, seed=5, size=SIZE, spacing=SPACING, site_effect=1.0)
