"""3D ResNet encoders (MONAI) that map a multi-sequence MRI volume to one embedding.

An encoder is a MONAI 3D ResNet with its classification head removed: it maps a batch
of volumes ``(B, C, D, H, W)`` to pooled embeddings ``(B, embedding_dim)``. Its
parameter names are exactly MONAI's (``conv1.weight``, ``layer1.0.bn1.running_mean``,
...), so weights saved from MONAI ResNets (BrainIAC-/MedicalNet-style) load by name.

Example
-------
>>> cfg = EncoderConfig(arch="resnet10", widen_factor=0.25, input_size=32)
>>> encoder = build_encoder(cfg)
>>> embedding_dim(cfg)
128
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

import torch
from monai.networks.nets.resnet import ResNet, ResNetBlock, ResNetBottleneck, get_inplanes

__all__ = [
    "ARCHITECTURES",
    "EncoderConfig",
    "ResNetEncoder",
    "build_encoder",
    "embedding_dim",
]

# arch -> (block, layers); the same depths as monai.networks.nets.resnet{10,18,34,50}.
ARCHITECTURES: dict[str, tuple[type, list[int]]] = {
    "resnet10": (ResNetBlock, [1, 1, 1, 1]),
    "resnet18": (ResNetBlock, [2, 2, 2, 2]),
    "resnet34": (ResNetBlock, [3, 4, 6, 3]),
    "resnet50": (ResNetBottleneck, [3, 4, 6, 3]),
}


@dataclass(frozen=True)
class EncoderConfig:
    """Architecture of a 3D ResNet encoder.

    Parameters
    ----------
    arch : {'resnet10', 'resnet18', 'resnet34', 'resnet50'}
        MONAI 3D ResNet depth. ResNet50 (bottleneck blocks) gives a 2048-d embedding
        at ``widen_factor=1``.
    in_channels : int
        Number of input channels (4 = T1, T1ce, T2, FLAIR).
    widen_factor : float
        Multiplies every stage's width (0.25 makes CPU-sized models).
    input_size : int
        Edge length of the cubic input volume the encoder was trained at (voxels).
    spacing : tuple of 3 floats
        Voxel spacing (mm) of the input volumes.
    conv1_stride : int
        Stride of the first 7^3 convolution. 2 (the MedicalNet convention) keeps a
        ResNet50 at 128^3 within GPU memory; MONAI's own default is 1.
    """

    arch: str = "resnet50"
    in_channels: int = 4
    widen_factor: float = 1.0
    input_size: int = 128
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    conv1_stride: int = 2

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ValueError(
                f"EncoderConfig: arch {self.arch!r} is not supported; "
                f"use one of {sorted(ARCHITECTURES)}."
            )
        if int(self.in_channels) < 1:
            raise ValueError(f"EncoderConfig: in_channels must be >= 1, got {self.in_channels}.")
        if not float(self.widen_factor) > 0:
            raise ValueError(f"EncoderConfig: widen_factor must be > 0, got {self.widen_factor}.")
        if int(self.input_size) < 8:
            raise ValueError(f"EncoderConfig: input_size must be >= 8 voxels, got {self.input_size}.")
        if int(self.conv1_stride) not in (1, 2):
            raise ValueError(f"EncoderConfig: conv1_stride must be 1 or 2, got {self.conv1_stride}.")
        spacing = tuple(float(s) for s in self.spacing)
        if len(spacing) != 3 or any(s <= 0 for s in spacing):
            raise ValueError(
                f"EncoderConfig: spacing must be three positive numbers (mm), got {self.spacing!r}."
            )
        # normalise types so that a config read back from JSON compares equal
        object.__setattr__(self, "spacing", spacing)
        object.__setattr__(self, "in_channels", int(self.in_channels))
        object.__setattr__(self, "widen_factor", float(self.widen_factor))
        object.__setattr__(self, "input_size", int(self.input_size))
        object.__setattr__(self, "conv1_stride", int(self.conv1_stride))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (spacing as a list)."""
        out = asdict(self)
        out["spacing"] = list(self.spacing)
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "EncoderConfig":
        """Build from a dict (e.g. a checkpoint card); unknown keys are ignored."""
        names = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in values.items() if k in names}
        if "spacing" in kwargs:
            kwargs["spacing"] = tuple(kwargs["spacing"])
        return cls(**kwargs)


class ResNetEncoder(ResNet):
    """MONAI 3D ResNet without a classification head.

    ``forward(x)`` maps ``(B, C, D, H, W)`` to ``(B, embedding_dim)`` (global average
    pooled last stage); ``forward_features(x)`` returns the last stage's feature map
    ``(B, embedding_dim, d, h, w)`` (used by MAE's decoder and Grad-CAM).
    """

    def __init__(self, config: EncoderConfig) -> None:
        block, layers = ARCHITECTURES[config.arch]
        super().__init__(
            block=block,
            layers=layers,
            block_inplanes=get_inplanes(),
            spatial_dims=3,
            n_input_channels=config.in_channels,
            conv1_t_size=7,
            conv1_t_stride=config.conv1_stride,
            widen_factor=config.widen_factor,
            feed_forward=False,
        )
        self.config = config
        self.embedding_dim = embedding_dim(config)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Last-stage feature map, shape ``(B, embedding_dim, d, h, w)``."""
        x = self.act(self.bn1(self.conv1(x)))
        if not self.no_max_pool:
            x = self.maxpool(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D401
        """Pooled embedding, shape ``(B, embedding_dim)``."""
        if x.ndim != 5:
            raise ValueError(
                f"ResNetEncoder expects a 5-D batch (B, C, D, H, W), got shape {tuple(x.shape)}."
            )
        if x.shape[1] != self.config.in_channels:
            raise ValueError(
                f"ResNetEncoder was built for {self.config.in_channels} channels "
                f"but the batch has {x.shape[1]} (shape {tuple(x.shape)})."
            )
        return torch.flatten(self.avgpool(self.forward_features(x)), 1)


def embedding_dim(cfg: EncoderConfig) -> int:
    """Length of the pooled embedding of an encoder built from *cfg*.

    ``int(512 * widen_factor) * expansion`` with expansion 4 for ResNet50's bottleneck
    blocks and 1 otherwise (ResNet50 at widen 1 -> 2048; ResNet10 at 0.25 -> 128).
    """
    block, _ = ARCHITECTURES[cfg.arch]
    return int(get_inplanes()[-1] * cfg.widen_factor) * block.expansion


def build_encoder(cfg: EncoderConfig) -> ResNetEncoder:
    """Build a freshly initialised encoder (MONAI's default initialisation).

    Parameters
    ----------
    cfg : EncoderConfig

    Returns
    -------
    ResNetEncoder
        ``torch.nn.Module`` mapping ``(B, cfg.in_channels, D, H, W)`` to
        ``(B, embedding_dim(cfg))``.
    """
    return ResNetEncoder(cfg)
