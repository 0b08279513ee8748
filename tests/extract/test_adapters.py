"""Adapters: checkpoints in each public layout (random weights, built here) load
strictly and give the same features as the network they were saved from."""

from __future__ import annotations

import pickle

import pytest

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")
pytest.importorskip("monai")
from monai.networks.nets import SwinUNETR, resnet10, resnet50  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from torch import nn  # noqa: E402

from neurofeat.extract.adapters import AdapterError, AdapterKeyError, load_adapter, read_state_dict  # noqa: E402


def _randomise_bn(module: nn.Module, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm3d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=gen) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return module.eval()


X = torch.randn(2, 4, 32, 32, 32, generator=torch.Generator().manual_seed(0))


# ----------------------------------------------------------------- BrainIAC
class _BrainIACLightning(nn.Module):
    """BrainIAC's published layout: MONAI resnet50 with a 1-channel stride-2 conv1 and
    fc=Identity as ``backbone``, plus a SimCLR projection head (here at widen 0.25)."""

    def __init__(self) -> None:
        super().__init__()
        net = resnet50(spatial_dims=3, widen_factor=0.25)
        net.conv1 = nn.Conv3d(1, 16, kernel_size=7, stride=2, padding=3, bias=False)
        net.fc = nn.Identity()
        self.backbone = net
        self.projection_head = nn.Sequential(nn.Linear(512, 64), nn.ReLU(), nn.Linear(64, 32))


def test_brainiac_layout_averages_features_per_sequence(tmp_path):
    model = _BrainIACLightning()
    _randomise_bn(model)
    path = tmp_path / "BrainIAC.ckpt"
    torch.save({"state_dict": model.state_dict(), "epoch": 7, "hyper_parameters": {"lr": 1e-4}}, path)
    adapted = load_adapter(path, "brainiac")
    assert adapted.embedding_dim == 512 and adapted.info["per_sequence_mean"]
    x = X[:, :, :16, :16, :16]
    with torch.inference_mode():
        expected = torch.stack([model.backbone(x[:, c : c + 1]) for c in range(4)], 1).mean(1)
        got = adapted.encoder(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------- MedicalNet
class _MNBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, dilation=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv3d(inplanes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, 3, stride=1, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


class _MedicalNetResNet10(nn.Module):
    """Written from MedicalNet's published architecture: 1-channel stride-2 stem, maxpool,
    layer1 stride 1, layer2 stride 2, layer3/layer4 stride 1 with dilation 2/4, shortcut B
    (1x1x1 conv without bias + BN), segmentation head conv_seg."""

    def __init__(self):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv3d(1, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(3, stride=2, padding=1)
        self.layer1 = self._layer(64, 1)
        self.layer2 = self._layer(128, 2)
        self.layer3 = self._layer(256, 1, dilation=2)
        self.layer4 = self._layer(512, 1, dilation=4)
        self.conv_seg = nn.Sequential(nn.ConvTranspose3d(512, 32, 2, stride=2), nn.Conv3d(32, 2, 1))

    def _layer(self, planes, stride, dilation=1):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(nn.Conv3d(self.inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm3d(planes))
        block = _MNBasicBlock(self.inplanes, planes, stride, dilation, downsample)
        self.inplanes = planes
        return nn.Sequential(block)

    def features(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x.mean(dim=(2, 3, 4))


def test_medicalnet_layout_reproduces_dilated_network(tmp_path):
    model = _randomise_bn(_MedicalNetResNet10(), seed=1)
    state = {f"module.{k}": v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "resnet_10.pth"
    torch.save({"state_dict": state}, path)
    adapted = load_adapter(path, "medicalnet")
    assert adapted.info["layers"] == [1, 1, 1, 1] and adapted.info["shortcut_type"] == "B"
    with torch.inference_mode():
        expected = torch.stack([model.features(X[:, c : c + 1]) for c in range(4)], 1).mean(1)
        got = adapted.encoder(X)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_strict_mapping_lists_missing_and_unexpected_keys(tmp_path):
    state = {f"module.{k}": v for k, v in _MedicalNetResNet10().state_dict().items()}
    del state["module.layer2.0.conv1.weight"]
    del state["module.layer3.0.bn2.running_var"]
    state["module.layer5.0.conv1.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save({"state_dict": state}, path)
    with pytest.raises(AdapterKeyError, match=r"2 missing key\(s\): layer2.0.conv1.weight, layer3.0.bn2.running_var; "
                                              r"1 unexpected key\(s\): layer5.0.conv1.weight") as info:
        load_adapter(path, "medicalnet")
    assert info.value.missing == ["layer2.0.conv1.weight", "layer3.0.bn2.running_var"]
    assert info.value.unexpected == ["layer5.0.conv1.weight"]


def test_shape_mismatch_is_listed(tmp_path):
    net = resnet10(spatial_dims=3, n_input_channels=4, widen_factor=0.25)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    state["layer1.0.bn1.weight"] = torch.zeros(3)
    save_file(state, str(tmp_path / "m.safetensors"))
    with pytest.raises(AdapterKeyError, match=r"1 shape mismatch\(es\): layer1.0.bn1.weight \(3,\) vs \(16,\)"):
        load_adapter(tmp_path / "m.safetensors", "monai-resnet")


# ------------------------------------------------------------- MONAI ResNet
def test_monai_resnet_four_channel_safetensors(tmp_path):
    net = _randomise_bn(resnet10(spatial_dims=3, n_input_channels=4, widen_factor=0.25, conv1_t_stride=2), seed=2)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "r10.safetensors"))
    adapted = load_adapter(tmp_path / "r10.safetensors", "monai-resnet", options={"conv1_stride": 2})
    net.fc = nn.Identity()
    with torch.inference_mode():
        torch.testing.assert_close(adapted.encoder(X), net(X), rtol=1e-5, atol=1e-5)
    with pytest.raises(AdapterError, match=r"adapter 'monai-resnet' has no option\(s\) \['stride'\]"):
        load_adapter(tmp_path / "r10.safetensors", "monai-resnet", options={"stride": 2})


def test_channel_count_must_match_sequences(tmp_path):
    net = resnet10(spatial_dims=3, n_input_channels=3, widen_factor=0.25)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "r3.safetensors"))
    with pytest.raises(AdapterError, match=r"the network takes 3 input channel\(s\) but extraction feeds 4 sequence\(s\)"):
        load_adapter(tmp_path / "r3.safetensors", "monai-resnet")


# ---------------------------------------------------------------- SwinUNETR
def test_swinunetr_encoder_pools_last_stage(tmp_path):
    torch.manual_seed(3)
    net = SwinUNETR(in_channels=4, out_channels=3, feature_size=12, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2),
                    window_size=4).eval()
    state = {f"module.{k}": v.contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(tmp_path / "swin.safetensors"))
    adapted = load_adapter(tmp_path / "swin.safetensors", "swinunetr")
    assert adapted.embedding_dim == 16 * 12 and adapted.info["window_size"] == 4
    from neurofeat.extract.adapters import _ensure_swin_rearrange

    _ensure_swin_rearrange()
    with torch.inference_mode():
        expected = net.swinViT(X, True)[-1].mean(dim=(2, 3, 4))
        torch.testing.assert_close(adapted.encoder(X), expected, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------- safety
class _Exploit:
    def __reduce__(self):
        return (open, ("/tmp/neurofeat-adapter-exploit-marker", "w"))


def test_pickled_code_is_never_run(tmp_path):
    import os

    marker = "/tmp/neurofeat-adapter-exploit-marker"
    if os.path.exists(marker):
        os.unlink(marker)
    path = tmp_path / "evil.pt"
    with open(path, "wb") as handle:
        pickle.dump({"state_dict": {"conv1.weight": _Exploit()}}, handle, protocol=2)
    with pytest.raises(AdapterError, match="cannot be loaded safely .*weights_only=True"):
        read_state_dict(path)
    assert not os.path.exists(marker)


def test_unknown_adapter_and_missing_file(tmp_path):
    with pytest.raises(AdapterError, match="unknown adapter 'dinov2'; use one of brainiac, medicalnet, monai-resnet, swinunetr"):
        load_adapter(tmp_path / "x.pt", "dinov2")
    with pytest.raises(AdapterError, match="checkpoint file .*x.pt does not exist"):
        load_adapter(tmp_path / "x.pt", "brainiac")


def test_wrong_adapter_for_layout(tmp_path):
    net = SwinUNETR(in_channels=4, out_channels=3, feature_size=12, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2))
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "swin.safetensors"))
    with pytest.raises(AdapterError, match="no 'conv1.weight' tensor under any of the prefixes"):
        load_adapter(tmp_path / "swin.safetensors", "brainiac")
