"""Encoders (MONAI ResNet without head) and safetensors checkpoints."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from neurofeat.extract.checkpoint import (  # noqa: E402
    BackboneNotFoundError,
    CheckpointError,
    list_backbones,
    load_checkpoint,
    resolve_backbone,
    save_checkpoint,
)
from neurofeat.extract.encoders import EncoderConfig, build_encoder, embedding_dim  # noqa: E402
from neurofeat.hashing import sha256_file as file_sha256  # noqa: E402

pytestmark = pytest.mark.torch

TINY = EncoderConfig(arch="resnet10", widen_factor=0.25, input_size=32)


@pytest.mark.parametrize(
    ("arch", "widen", "expected"),
    # 512 * widen * expansion (MONAI: basic block expansion 1, bottleneck 4)
    [("resnet10", 0.25, 128), ("resnet18", 0.5, 256), ("resnet34", 1.0, 512), ("resnet50", 1.0, 2048),
     ("resnet50", 0.25, 512)],
)
def test_embedding_dim_matches_formula(arch, widen, expected):
    assert embedding_dim(EncoderConfig(arch=arch, widen_factor=widen)) == expected


def test_encoder_maps_volume_to_embedding_and_matches_monai_keys():
    from monai.networks.nets import resnet10

    encoder = build_encoder(TINY).eval()
    out = encoder(torch.randn(3, 4, 32, 32, 32))
    assert out.shape == (3, 128)
    reference = resnet10(spatial_dims=3, n_input_channels=4, widen_factor=0.25,
                         conv1_t_stride=2, feed_forward=False)
    # same parameter names and shapes as MONAI's resnet10 without its fc head
    ref_shapes = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    ours = {k: tuple(v.shape) for k, v in encoder.state_dict().items()}
    assert ours == ref_shapes
    reference.load_state_dict(encoder.state_dict())
    reference.eval()
    x = torch.randn(2, 4, 32, 32, 32)
    torch.testing.assert_close(reference(x), encoder(x))


def test_encoder_rejects_wrong_channels():
    with pytest.raises(ValueError, match="built for 4 channels but the batch has 3"):
        build_encoder(TINY)(torch.randn(1, 3, 32, 32, 32))


def test_config_rejects_unknown_arch():
    with pytest.raises(ValueError, match="arch 'resnet101' is not supported"):
        EncoderConfig(arch="resnet101")


def _trained_like(tmp_path):
    torch.manual_seed(0)
    encoder = build_encoder(TINY)
    # move BN running stats off their defaults so the round trip checks buffers too
    encoder.train()
    encoder(torch.randn(4, 4, 32, 32, 32))
    card = {"method": "dino", "dro": True, "eta": 0.01, "C": 0.0,
            "groups": {"UCSF": {"n": 3, "q": 0.4}, "UPenn": {"n": 5, "q": 0.6}}}
    path = save_checkpoint(tmp_path / "dino_dro", encoder, card)
    return encoder, path


def test_checkpoint_round_trip(tmp_path):
    encoder, path = _trained_like(tmp_path)
    loaded = load_checkpoint(path)
    original = encoder.state_dict()
    restored = loaded.encoder.state_dict()
    assert original.keys() == restored.keys()
    for name, tensor in original.items():
        assert torch.equal(tensor, restored[name]), name
    assert loaded.config == TINY
    assert loaded.sha256 == file_sha256(path / "model.safetensors")
    card = json.loads((path / "card.json").read_text())
    assert card["checkpoint_sha256"] == loaded.sha256
    assert card["arch"] == "resnet10" and card["embedding_dim"] == 128
    assert card["groups"]["UPenn"]["q"] == 0.6 and card["name"] == "dino_dro"
    assert not loaded.encoder.training
    x = torch.randn(1, 4, 32, 32, 32)
    torch.testing.assert_close(loaded.encoder(x), encoder.eval()(x))


def test_load_refuses_renamed_pickle(tmp_path):
    encoder, path = _trained_like(tmp_path)
    weights = path / "model.safetensors"
    torch.save(encoder.state_dict(), weights)  # a pickled zip archive under the safetensors name
    with pytest.raises(CheckpointError, match="not a safetensors file.*never unpickles"):
        load_checkpoint(path)
    pt_file = tmp_path / "weights.pt"
    torch.save(encoder.state_dict(), pt_file)
    with pytest.raises(CheckpointError, match="never unpickles"):
        load_checkpoint(pt_file)


def test_load_refuses_pickle_only_directory(tmp_path):
    encoder = build_encoder(TINY)
    folder = tmp_path / "legacy"
    folder.mkdir()
    torch.save(encoder.state_dict(), folder / "model.pth")
    with pytest.raises(CheckpointError, match=r"no model.safetensors.*model.pth.*pickled weights are refused"):
        load_checkpoint(folder)


def test_load_detects_changed_weights(tmp_path):
    _, path = _trained_like(tmp_path)
    card = json.loads((path / "card.json").read_text())
    card["checkpoint_sha256"] = "0" * 64
    (path / "card.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="does not match the card's checkpoint_sha256"):
        load_checkpoint(path)


def test_resolve_and_list_backbones(tmp_path):
    _, path = _trained_like(tmp_path)
    (tmp_path / "not_a_model").mkdir()
    assert resolve_backbone("dino_dro", tmp_path) == path
    assert resolve_backbone(str(path), tmp_path / "elsewhere") == path
    infos = list_backbones(tmp_path)
    assert [info.name for info in infos] == ["dino_dro"]
    assert infos[0].to_dict()["method"] == "dino"
    with pytest.raises(BackboneNotFoundError, match=r"no backbone 'dino_drp'.*Did you mean 'dino_dro'"):
        resolve_backbone("dino_drp", tmp_path)
    assert list_backbones(tmp_path / "missing") == []


def test_same_weights_give_the_same_checkpoint_sha256(tmp_path):
    encoder = build_encoder(TINY)
    first = save_checkpoint(tmp_path / "a", encoder, {"method": "mae"})
    second = save_checkpoint(tmp_path / "b", encoder, {"method": "mae", "note": "other card"})
    assert file_sha256(first / "model.safetensors") == file_sha256(second / "model.safetensors")
