"""Pairing of backbones: families member by member, seed references, the seed-noise verdict."""

import pytest

from neurofeat.analysis.pairing import (pair_backbones, resolve_side, seed_noise_verdict,
                                        seed_reference_pairs)

ALL = ["byol", "dino", "mae", "moco", "byol_dro", "dino_dro", "mae_dro", "moco_dro"]


def test_pairing_families_and_backbones():
    assert pair_backbones("base", "dro", ALL) == [
        ("byol", "byol_dro"), ("dino", "dino_dro"), ("mae", "mae_dro"), ("moco", "moco_dro")]
    assert pair_backbones("dino", "dino_dro", ALL) == [("dino", "dino_dro")]
    assert pair_backbones("base", "dino_dro", ALL)[0] == ("byol", "dino_dro")
    with pytest.raises(ValueError, match="unknown backbone 'dino_dr'. Did you mean 'dino_dro'"):
        resolve_side("dino_dr", ALL)
    with pytest.raises(ValueError, match="family 'dro' needs .* the store lacks mae_dro"):
        resolve_side("dro", [b for b in ALL if b != "mae_dro"])
    with pytest.raises(ValueError, match="same backbone"):
        pair_backbones("dino", "dino", ALL)


def test_seed_reference_pairs_and_verdict_rule():
    known = ["byol", "dino", "mae", "moco", "byol_dro", "dino_dro", "mae_dro", "moco_dro",
             "byol_s1", "dino_s1", "mae_s1", "moco_s1", "dino_s2"]
    assert seed_reference_pairs("dino", ["dino_s1", "dino_s2"], known) == [
        ("dino", "dino_s1"), ("dino", "dino_s2")]
    assert seed_reference_pairs("base", ["byol_s1", "dino_s1", "mae_s1", "moco_s1"], known) \
        == [("byol", "byol_s1"), ("dino", "dino_s1"), ("mae", "mae_s1"), ("moco", "moco_s1")]
    with pytest.raises(ValueError, match="member 'mae' needs exactly one reference"):
        seed_reference_pairs("base", ["byol_s1", "dino_s1", "moco_s1"], known)
    with pytest.raises(ValueError, match="seed reference 'dino_s3' is not a backbone.*dino_s"):
        seed_reference_pairs("dino", ["dino_s3"], known)
    with pytest.raises(ValueError, match="side 'dino' itself"):
        seed_reference_pairs("dino", ["dino"], known)
    # exceeds: larger and the intervals do not overlap
    assert seed_noise_verdict("auc", 0.20, (0.12, 0.28), 0.01, (-0.05, 0.07))[0]
    assert "exceeds seed-to-seed" in seed_noise_verdict("auc", 0.2, (0.12, 0.28), 0.01,
                                                        (-0.05, 0.07))[1]
    # the numbers: +0.066 vs +0.049 with overlapping intervals -> does not exceed
    ok, line = seed_noise_verdict("auc", 0.066, (-0.02, 0.15), 0.049, (-0.03, 0.13))
    assert not ok and "does not exceed" in line and "intervals overlap" in line
    # larger but overlapping, or smaller: does not exceed
    assert not seed_noise_verdict("auc", 0.10, (0.02, 0.18), 0.05, (0.01, 0.09))[0]
    assert not seed_noise_verdict("auc", 0.01, (0.0, 0.02), -0.3, (-0.4, -0.2))[0]
