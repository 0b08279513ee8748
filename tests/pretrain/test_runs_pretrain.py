"""`neurofeat.runs.pretrain`: options -> PretrainConfig, and the run's argument checks
(the training itself is covered end to end by test_cli_pretrain.py)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from neurofeat.runs.pretrain import SAMPLING, pretrain_config, pretrain_run  # noqa: E402

pytestmark = pytest.mark.torch


@pytest.mark.parametrize(("sampling", "balanced", "dro"), [("auto", True, True), ("auto", False, False),
                                                           ("balanced", True, False), ("natural", False, True)])
def test_sampling_maps_onto_group_balanced(sampling, balanced, dro):
    config = pretrain_config("DINO", dro=dro, sampling=sampling, arch="resnet10", input_size=32, spacing=4.0)
    assert config.group_balanced is SAMPLING[sampling]
    assert config.balanced_sampling is balanced
    assert config.method == "dino" and config.name == ("dino_dro" if dro else "dino")
    assert config.encoder.spacing == (4.0, 4.0, 4.0) and config.preprocess.input_size == (32, 32, 32)


def test_unknown_sampling_is_refused():
    with pytest.raises(ValueError, match="--sampling must be auto, balanced or natural, got 'even'"):
        pretrain_config("mae", sampling="even")


def test_a_run_needs_a_store_or_a_manifest():
    with pytest.raises(ValueError, match="needs a store or a manifest"):
        pretrain_run(pretrain_config("mae", arch="resnet10", input_size=32))
