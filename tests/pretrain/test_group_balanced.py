"""Group-balanced sampling for Group-DRO (Sagawa et al. 2020 train DRO on balanced groups)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

pytest.importorskip("torch")

from neurofeat.extract.pretrain import PretrainConfig  # noqa: E402
from neurofeat.extract.pretrain_data import GroupBalancedSampler  # noqa: E402

GROUPS = np.repeat([0, 1, 2], [500, 300, 200])  # 50/30/20 % sites


def draws(sampler: GroupBalancedSampler, epochs: int) -> np.ndarray:
    out = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        out.extend(list(sampler))
    return np.asarray(out)


def test_groups_are_drawn_equally_often():
    sampled = GROUPS[draws(GroupBalancedSampler(GROUPS, seed=0), epochs=20)]
    counts = np.bincount(sampled, minlength=3)
    # scipy's chi-square test of uniformity over the three groups
    assert stats.chisquare(counts).pvalue > 0.001
    # natural sampling would be 50/30/20: far from uniform
    assert stats.chisquare(np.bincount(GROUPS)).pvalue < 1e-10


def test_reproducible_per_epoch_and_different_across_epochs():
    a, b = GroupBalancedSampler(GROUPS, seed=3), GroupBalancedSampler(GROUPS, seed=3)
    a.set_epoch(1)
    b.set_epoch(1)
    assert list(a) == list(b)
    b.set_epoch(2)
    assert list(a) != list(b)


def test_ranks_split_one_draw_into_equal_shards():
    shards = []
    for rank in range(2):
        sampler = GroupBalancedSampler(GROUPS[:999], num_replicas=2, rank=rank, seed=1)
        sampler.set_epoch(4)
        shards.append(list(sampler))
    assert len(shards[0]) == len(shards[1]) == 500
    whole = GroupBalancedSampler(GROUPS[:999], num_replicas=1, seed=1)
    whole.num_samples = 1000
    whole.set_epoch(4)
    merged = list(whole)
    assert shards[0] == merged[0::2] and shards[1] == merged[1::2]


def test_balanced_sampling_is_the_default_with_dro_only():
    assert PretrainConfig(method="dino", dro=True).balanced_sampling
    assert not PretrainConfig(method="dino", dro=False).balanced_sampling
    assert not PretrainConfig(method="dino", dro=True, group_balanced=False).balanced_sampling
    assert PretrainConfig(method="dino", dro=True).to_dict()["group_balanced"] is None
