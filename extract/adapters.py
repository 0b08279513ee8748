"""Adapters: external encoder checkpoints mapped onto MONAI networks, strictly.

An adapter reads a checkpoint in a public layout, infers the architecture from the
tensor names and shapes, builds the matching MONAI network and loads every tensor by
name. The mapping is strict: a key of the checkpoint that the network does not have
(other than the adapter's documented head keys, e.g. a SimCLR projection head) or a
network key the checkpoint lacks is an :class:`AdapterKeyError` that lists them.

Adapters (``--adapter``):

``brainiac``
    BrainIAC (Tak et al.): a MONAI ``resnet50`` whose ``conv1`` is replaced by a
    single-channel ``Conv3d(1, 64, 7, stride 2, padding 3, bias=False)`` and whose ``fc``
    is ``Identity``, wrapped as ``backbone`` in a Lightning module, pretrained with
    SimCLR. Keys ``backbone.*`` (or ``model.backbone.*``); a ``projection_head.*`` /
    ``head.*`` / ``projector.*`` is ignored. Single channel: each sequence is embedded
    on its own and the per-sequence features are averaged, as its authors do.
``medicalnet``
    Tencent MedicalNet ResNets 10/18/34/50/101/152/200 (``resnet_50.pth``): a
    ``{"state_dict": ...}`` saved from ``DataParallel`` (``module.`` prefixes), one input
    channel, ``conv1`` stride 2, shortcut B (1x1x1 conv without bias + BN; shortcut A has
    no weights), ``layer3``/``layer4`` with stride 1 and dilation 2/4 (reproduced on the
    MONAI network), segmentation head ``conv_seg.*`` ignored. Single channel: features
    per sequence averaged.
``monai-resnet``
    A state dict of ``monai.networks.nets.ResNet`` (any depth/width, ``fc.*`` ignored).
    Input channels from ``conv1.weight``: 1 (features per sequence averaged) or one per
    sequence. Options ``conv1_stride`` (default 1, MONAI's default; neurofeat's own
    encoders use 2) and ``no_max_pool`` (default false) cannot be read from weights.
``swinunetr``
    A MONAI ``SwinUNETR`` state dict (``swinViT.*``; the UNETR decoder ``encoder*``,
    ``decoder*``, ``out.*`` is ignored), or a bare Swin transformer state dict such as
    MONAI's self-supervised ``model_swinvit.pt`` (its ``rotation_head``,
    ``contrastive_head``, ``convTrans3d`` heads are ignored). Embedding: the last stage
    (layer-normalised as SwinUNETR does), global-average pooled; ``16 * feature_size``
    dimensions. Option ``downsample`` ("merging", MONAI's default, or "mergingv2").

Files are read without unpickling code: ``.safetensors`` directly, ``.pt``/``.pth``/
``.ckpt``/``.bin`` only through ``torch.load(weights_only=True)``.

Example
-------
>>> backbone = load_adapter("BrainIAC.ckpt", "brainiac")          # doctest: +SKIP
>>> backbone.encoder(torch.zeros(2, 4, 128, 128, 128)).shape      # doctest: +SKIP
torch.Size([2, 2048])
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from neurofeat.extract.checkpoint import looks_like_safetensors
from neurofeat.hashing import sha256_file

__all__ = [
    "ADAPTERS",
    "AdapterError",
    "AdapterKeyError",
    "AdaptedBackbone",
    "PerSequenceMean",
    "SwinEncoder",
    "read_state_dict",
    "map_state_dict",
    "load_adapter",
    "build_medicalnet",
    "build_brainiac",
    "build_monai_resnet",
    "build_swinunetr",
]

_SAFE_SUFFIXES = (".safetensors",)
_TORCH_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".tar")
# Buffers a checkpoint may omit: they are derived, not learned.
_DERIVED = re.compile(r"(num_batches_tracked|relative_position_index)$")


class AdapterError(ValueError):
    """A checkpoint cannot be read or does not fit the adapter (names file and fix)."""


class AdapterKeyError(AdapterError):
    """Missing / unexpected / mis-shaped tensors between checkpoint and network.

    Attributes
    ----------
    missing, unexpected : list of str
        Network keys absent from the checkpoint; checkpoint keys the network lacks.
    mismatched : list of (key, checkpoint shape, network shape)
    """

    def __init__(
        self,
        source: str,
        adapter: str,
        missing: Sequence[str],
        unexpected: Sequence[str],
        mismatched: Sequence[tuple[str, tuple, tuple]] = (),
    ) -> None:
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.mismatched = list(mismatched)

        def listing(keys: Sequence[Any], limit: int = 25) -> str:
            shown = ", ".join(str(k) for k in keys[:limit])
            return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")

        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing key(s): {listing(self.missing)}")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected key(s): {listing(self.unexpected)}")
        if self.mismatched:
            parts.append(
                f"{len(self.mismatched)} shape mismatch(es): "
                + listing([f"{k} {tuple(a)} vs {tuple(b)}" for k, a, b in self.mismatched])
            )
        super().__init__(
            f"{source} does not fit the '{adapter}' adapter: " + "; ".join(parts)
            + f". Check that the file is a {adapter} checkpoint (or pick another --adapter)."
        )


@dataclass(frozen=True)
class AdaptedBackbone:
    """An external checkpoint ready for extraction.

    Attributes
    ----------
    encoder : torch.nn.Module
        In eval mode; maps ``(B, n_sequences, D, H, W)`` to ``(B, embedding_dim)``.
    adapter : str
        Adapter name.
    sha256 : str
        sha256 of the checkpoint file's bytes (``checkpoint_sha256`` of the rows).
    embedding_dim : int
    in_channels : int
        Channels the encoder takes (the number of sequences).
    info : dict
        The inferred architecture (JSON-ready), recorded as the backbone's card.
    path : Path
    """

    encoder: nn.Module
    adapter: str
    sha256: str
    embedding_dim: int
    in_channels: int
    info: dict[str, Any] = field(default_factory=dict)
    path: Path = Path(".")


# --------------------------------------------------------------------- reading
def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file, never executing pickled code.

    Safetensors files are read directly. ``.pt``/``.pth``/``.ckpt``/``.bin`` files go
    through ``torch.load(..., weights_only=True)``, which only rebuilds tensors and
    plain containers; a Lightning/MedicalNet ``{"state_dict": ...}`` (or
    ``{"model": ...}``) wrapper is unwrapped. Non-tensor entries are dropped.

    Raises
    ------
    AdapterError
        The file does not exist, is not a checkpoint, or holds objects that a safe
        load refuses (the message says how to convert it).
    """
    p = Path(path)
    if not p.is_file():
        raise AdapterError(f"checkpoint file {p} does not exist; pass --checkpoint PATH to a weights file")
    if p.stat().st_size == 0:
        raise AdapterError(f"checkpoint file {p} is empty (0 bytes): an interrupted download or copy? "
                           "Fetch it again, then rerun.")
    if p.suffix.lower() in _SAFE_SUFFIXES or looks_like_safetensors(p):
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(p)))
        except Exception as exc:  # noqa: BLE001 - re-raised with the path
            raise AdapterError(f"{p}: unreadable safetensors file ({exc})") from None
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle with code, or not a torch file
        raise AdapterError(
            f"{p} cannot be loaded safely (torch.load weights_only=True refused it: "
            f"{(str(exc).splitlines() or [type(exc).__name__])[0][:200]}). neurofeat never unpickles arbitrary objects; if you "
            "trust the file, convert its weights once to safetensors: "
            "safetensors.torch.save_file(state_dict, 'model.safetensors')"
        ) from None
    for wrapper in ("state_dict", "model", "model_state_dict", "network"):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
            break
    if not isinstance(obj, Mapping):
        raise AdapterError(f"{p}: expected a state dict (name -> tensor), found {type(obj).__name__}")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise AdapterError(f"{p}: no tensors found in the checkpoint")
    return tensors


# --------------------------------------------------------------------- mapping
def _strip_module(keys: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in keys.items():
        while key.startswith("module."):
            key = key[len("module.") :]
        out[key] = value
    return out


def map_state_dict(
    tensors: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.Tensor],
    *,
    prefix: str = "",
    ignore: Sequence[str] = (),
    source: str = "checkpoint",
    adapter: str = "adapter",
) -> dict[str, torch.Tensor]:
    """Rename a checkpoint's tensors onto a network's keys, strictly.

    Parameters
    ----------
    tensors : mapping
        The checkpoint's tensors (``module.`` prefixes already removed).
    expected : mapping
        The network's ``state_dict()``.
    prefix : str
        Prefix of the encoder's keys in the checkpoint (``"backbone."``); removed.
    ignore : sequence of regex
        Patterns (matched with ``re.match`` on the full checkpoint key) of keys that
        belong to heads the encoder does not use.
    source, adapter : str
        For the error message.

    Returns
    -------
    dict
        Network key -> tensor; derived buffers the checkpoint lacks
        (``num_batches_tracked``, ``relative_position_index``) come from *expected*.

    Raises
    ------
    AdapterKeyError
        Listing missing keys, unexpected keys and shape mismatches.
    """
    patterns = [re.compile(p) for p in ignore]
    mapped: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    for key, value in tensors.items():
        if any(p.match(key) for p in patterns):
            continue
        if prefix and not key.startswith(prefix):
            unexpected.append(key)
            continue
        name = key[len(prefix) :]
        if name not in expected:
            unexpected.append(key)
            continue
        mapped[name] = value
    missing = [k for k in expected if k not in mapped and not _DERIVED.search(k)]
    mismatched = [
        (k, tuple(v.shape), tuple(expected[k].shape))
        for k, v in mapped.items()
        if tuple(v.shape) != tuple(expected[k].shape) and not _DERIVED.search(k)
    ]
    if missing or unexpected or mismatched:
        raise AdapterKeyError(source, adapter, sorted(missing), sorted(unexpected), mismatched)
    for k in expected:
        if k not in mapped or (_DERIVED.search(k) and tuple(mapped[k].shape) != tuple(expected[k].shape)):
            mapped[k] = expected[k]
    return mapped


def _find_prefix(tensors: Mapping[str, torch.Tensor], anchor: str, candidates: Sequence[str], source: str, adapter: str) -> str:
    for prefix in candidates:
        if prefix + anchor in tensors:
            return prefix
    shown = ", ".join(sorted(tensors)[:8])
    raise AdapterError(
        f"{source}: no '{anchor}' tensor under any of the prefixes {[c or '<none>' for c in candidates]} "
        f"(first keys: {shown}); this is not a {adapter} checkpoint, or pick another --adapter"
    )


# ---------------------------------------------------------------- wrappers
class PerSequenceMean(nn.Module):
    """Run a single-channel encoder on each sequence and average the features.

    ``(B, C, D, H, W)`` -> encoder on ``(B*C, 1, D, H, W)`` -> ``(B, C, E)`` -> mean over
    C -> ``(B, E)``.
    """

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        features = self.encoder(x.reshape(b * c, 1, *x.shape[2:]))
        return features.reshape(b, c, -1).mean(dim=1)


def _rearrange_permute(tensor: torch.Tensor, pattern: str) -> torch.Tensor:
    """``einops.rearrange`` for pure permutations ("n c d h w -> n d h w c")."""
    left, right = (side.split() for side in pattern.split("->"))
    return tensor.permute(*[left.index(axis) for axis in right])


def _ensure_swin_rearrange() -> None:
    """MONAI's Swin code needs ``einops.rearrange``; without einops, supply permutes.

    MONAI only uses ungrouped permutation patterns there, which
    :func:`_rearrange_permute` implements exactly.
    """
    from monai.networks.nets import swin_unetr
    from monai.utils import optional_import

    _, has_einops = optional_import("einops")
    if not has_einops:
        swin_unetr.rearrange = _rearrange_permute


class SwinEncoder(nn.Module):
    """MONAI Swin transformer (SwinUNETR's ``swinViT``) -> pooled last-stage features.

    ``forward`` maps ``(B, C, D, H, W)`` (sides divisible by ``32 * patch_size / 2``)
    to ``(B, 16 * feature_size)``: the last hidden state, layer-normalised over
    channels as SwinUNETR does (``normalize=True``), averaged over space.
    """

    def __init__(self, swin: nn.Module) -> None:
        super().__init__()
        self.swinViT = swin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _ensure_swin_rearrange()
        last = self.swinViT(x, True)[-1]
        return last.mean(dim=tuple(range(2, last.ndim)))


# ---------------------------------------------------------------- builders
def _resnet_shape(tensors: Mapping[str, torch.Tensor], source: str, adapter: str) -> dict[str, Any]:
    """Infer a MONAI ResNet's hyper-parameters from its (prefix-free) tensors."""
    conv1 = tensors["conv1.weight"]
    if conv1.ndim != 5:
        raise AdapterError(f"{source}: conv1.weight has shape {tuple(conv1.shape)}; a 3-D ResNet has 5 dims")
    layers = []
    for i in range(1, 5):
        blocks = {int(m.group(1)) for k in tensors if (m := re.match(rf"layer{i}\.(\d+)\.", k))}
        if not blocks:
            raise AdapterError(f"{source}: no layer{i}.* tensors; not a 4-stage ResNet ({adapter})")
        layers.append(max(blocks) + 1)
    bottleneck = "layer1.0.conv3.weight" in tensors
    widen = tensors["layer4.0.conv1.weight"].shape[0] / 512.0  # layer4 planes = int(512 * widen)
    has_downsample = any(".downsample." in k for k in tensors)
    return {
        "block": "bottleneck" if bottleneck else "basic",
        "layers": layers,
        "in_channels": int(conv1.shape[1]),
        "conv1_size": int(conv1.shape[2]),
        "widen_factor": widen,
        "shortcut_type": "B" if has_downsample else "A",
        "bias_downsample": any(re.search(r"\.downsample\.0\.bias$", k) for k in tensors),
    }


def _build_resnet(shape: Mapping[str, Any], *, conv1_stride: int, no_max_pool: bool) -> nn.Module:
    from monai.networks.nets.resnet import ResNet, get_inplanes

    return ResNet(
        block=shape["block"],
        layers=list(shape["layers"]),
        block_inplanes=get_inplanes(),
        spatial_dims=3,
        n_input_channels=shape["in_channels"],
        conv1_t_size=shape["conv1_size"],
        conv1_t_stride=conv1_stride,
        no_max_pool=no_max_pool,
        shortcut_type=shape["shortcut_type"],
        widen_factor=shape["widen_factor"],
        feed_forward=False,
        bias_downsample=shape["bias_downsample"],
    )


def _dilate_stage(stage: nn.Module, dilation: int) -> None:
    """Turn a strided ResNet stage into MedicalNet's stride-1 dilated stage."""
    for module in stage.modules():
        if isinstance(module, nn.Conv3d):
            module.stride = (1, 1, 1)
            if module.kernel_size == (3, 3, 3):
                module.dilation = (dilation,) * 3
                module.padding = (dilation,) * 3
    for block in stage:
        if isinstance(getattr(block, "downsample", None), functools.partial):
            block.downsample = functools.partial(
                block.downsample.func, *block.downsample.args, **{**block.downsample.keywords, "stride": 1}
            )


def _embedding_dim(encoder: nn.Module, in_channels: int, probe_size: int = 32) -> int:
    with torch.inference_mode():
        return int(encoder(torch.zeros(1, in_channels, probe_size, probe_size, probe_size)).shape[-1])


def _finish(
    core: nn.Module, core_in_channels: int, n_sequences: int, source: str, adapter: str
) -> tuple[nn.Module, int]:
    if core_in_channels == 1 and n_sequences != 1:
        return PerSequenceMean(core), n_sequences
    if core_in_channels != n_sequences:
        raise AdapterError(
            f"{source}: the network takes {core_in_channels} input channel(s) but extraction feeds "
            f"{n_sequences} sequence(s); use a single-channel or a {n_sequences}-channel checkpoint"
        )
    return core, n_sequences


def _load(core: nn.Module, tensors: Mapping[str, torch.Tensor], **kwargs: Any) -> None:
    mapped = map_state_dict(tensors, core.state_dict(), **kwargs)
    core.load_state_dict(mapped, strict=True)


def build_brainiac(
    tensors: Mapping[str, torch.Tensor], *, n_sequences: int = 4, source: str = "checkpoint", **options: Any
) -> tuple[nn.Module, dict[str, Any]]:
    """BrainIAC SimCLR ResNet50 (see module docstring); returns (encoder, info)."""
    _no_options(options, "brainiac")
    tensors = _strip_module(tensors)
    prefix = _find_prefix(tensors, "conv1.weight", ("backbone.", "model.backbone.", "encoder.", ""), source, "brainiac")
    inner = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    shape = _resnet_shape(inner, source, "brainiac")
    core = _build_resnet(shape, conv1_stride=2, no_max_pool=False)
    _load(core, tensors, prefix=prefix, ignore=(r"(model\.)?(projection_head|head|projector|fc)\.",),
          source=source, adapter="brainiac")
    encoder, in_ch = _finish(core, shape["in_channels"], n_sequences, source, "brainiac")
    return encoder, {**shape, "conv1_stride": 2, "prefix": prefix, "per_sequence_mean": shape["in_channels"] == 1}


def build_medicalnet(
    tensors: Mapping[str, torch.Tensor], *, n_sequences: int = 4, source: str = "checkpoint", **options: Any
) -> tuple[nn.Module, dict[str, Any]]:
    """MedicalNet ResNet (see module docstring); returns (encoder, info)."""
    _no_options(options, "medicalnet")
    tensors = _strip_module(tensors)
    prefix = _find_prefix(tensors, "conv1.weight", ("", "backbone."), source, "medicalnet")
    inner = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    shape = _resnet_shape(inner, source, "medicalnet")
    core = _build_resnet(shape, conv1_stride=2, no_max_pool=False)
    _dilate_stage(core.layer3, 2)
    _dilate_stage(core.layer4, 4)
    _load(core, tensors, prefix=prefix, ignore=(r"(backbone\.)?(conv_seg|fc)\.",), source=source, adapter="medicalnet")
    encoder, _ = _finish(core, shape["in_channels"], n_sequences, source, "medicalnet")
    return encoder, {**shape, "conv1_stride": 2, "dilation": [1, 1, 2, 4], "prefix": prefix,
                     "per_sequence_mean": shape["in_channels"] == 1}


def build_monai_resnet(
    tensors: Mapping[str, torch.Tensor],
    *,
    n_sequences: int = 4,
    source: str = "checkpoint",
    conv1_stride: int = 1,
    no_max_pool: bool = False,
    **options: Any,
) -> tuple[nn.Module, dict[str, Any]]:
    """A MONAI ``ResNet`` state dict (see module docstring); returns (encoder, info)."""
    _no_options(options, "monai-resnet")
    tensors = _strip_module(tensors)
    prefix = _find_prefix(tensors, "conv1.weight", ("", "encoder.", "backbone."), source, "monai-resnet")
    inner = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    shape = _resnet_shape(inner, source, "monai-resnet")
    core = _build_resnet(shape, conv1_stride=int(conv1_stride), no_max_pool=_as_bool(no_max_pool))
    _load(core, tensors, prefix=prefix, ignore=(r"(encoder\.|backbone\.)?fc\.",), source=source, adapter="monai-resnet")
    encoder, _ = _finish(core, shape["in_channels"], n_sequences, source, "monai-resnet")
    return encoder, {**shape, "conv1_stride": int(conv1_stride), "no_max_pool": _as_bool(no_max_pool),
                     "prefix": prefix, "per_sequence_mean": shape["in_channels"] == 1}


def build_swinunetr(
    tensors: Mapping[str, torch.Tensor],
    *,
    n_sequences: int = 4,
    source: str = "checkpoint",
    downsample: str = "merging",
    **options: Any,
) -> tuple[nn.Module, dict[str, Any]]:
    """A MONAI SwinUNETR / Swin-ViT state dict (see module docstring)."""
    from monai.networks.nets.swin_unetr import SwinTransformer

    _no_options(options, "swinunetr")
    tensors = _strip_module(tensors)
    prefix = _find_prefix(tensors, "patch_embed.proj.weight", ("swinViT.", "", "encoder.", "backbone."), source, "swinunetr")
    inner = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    proj = inner["patch_embed.proj.weight"]
    if proj.ndim != 5:
        raise AdapterError(f"{source}: patch_embed.proj.weight has shape {tuple(proj.shape)}; expected a 3-D patch embedding")
    feature_size, in_ch, patch = int(proj.shape[0]), int(proj.shape[1]), int(proj.shape[2])
    depths, heads, windows = [], [], []
    for i in range(1, 5):
        blocks = {int(m.group(1)) for k in inner if (m := re.match(rf"layers{i}\.0\.blocks\.(\d+)\.", k))}
        if not blocks:
            raise AdapterError(f"{source}: no layers{i}.0.blocks.* tensors; not a 4-stage Swin transformer")
        depths.append(max(blocks) + 1)
        table = inner[f"layers{i}.0.blocks.0.attn.relative_position_bias_table"]
        heads.append(int(table.shape[1]))
        windows.append(int(round((round(table.shape[0] ** (1 / 3)) + 1) / 2)))
    if len(set(windows)) != 1 or (2 * windows[0] - 1) ** 3 != inner["layers1.0.blocks.0.attn.relative_position_bias_table"].shape[0]:
        raise AdapterError(f"{source}: cannot infer a cubic attention window from relative_position_bias_table shapes")
    hidden = inner["layers1.0.blocks.0.mlp.linear1.weight"].shape[0]
    info = {
        "feature_size": feature_size,
        "in_channels": in_ch,
        "patch_size": patch,
        "depths": depths,
        "num_heads": heads,
        "window_size": windows[0],
        "mlp_ratio": hidden / feature_size,
        "qkv_bias": "layers1.0.blocks.0.attn.qkv.bias" in inner,
        "patch_norm": "patch_embed.norm.weight" in inner,
        "use_v2": any(k.startswith("layers1c.") for k in inner),
        "downsample": downsample,
        "prefix": prefix,
    }
    if downsample not in ("merging", "mergingv2"):
        raise AdapterError(f"swinunetr option downsample must be 'merging' or 'mergingv2', got {downsample!r}")
    swin = SwinTransformer(
        in_chans=in_ch,
        embed_dim=feature_size,
        window_size=(windows[0],) * 3,
        patch_size=(patch,) * 3,
        depths=depths,
        num_heads=heads,
        mlp_ratio=info["mlp_ratio"],
        qkv_bias=info["qkv_bias"],
        patch_norm=info["patch_norm"],
        spatial_dims=3,
        downsample=downsample,
        use_v2=info["use_v2"],
    )
    heads_ignored = (
        r"(encoder\d+|decoder\d+|out)\.",
        r"(rotation_head|rotation_pre|contrastive_head|contrastive_pre|convTrans3d|conv)\.",
    )
    _load(swin, tensors, prefix=prefix, ignore=heads_ignored, source=source, adapter="swinunetr")
    encoder, _ = _finish(SwinEncoder(swin), in_ch, n_sequences, source, "swinunetr")
    info["per_sequence_mean"] = in_ch == 1
    info["input_multiple"] = patch * 16
    return encoder, info


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise AdapterError(f"expected true/false, got {value!r}")
    return bool(value)


def _no_options(options: Mapping[str, Any], adapter: str) -> None:
    if options:
        raise AdapterError(
            f"adapter '{adapter}' has no option(s) {sorted(options)}; see `neurofeat extract --help`"
        )


#: adapter name -> builder(tensors, n_sequences=..., source=..., **options) -> (encoder, info)
ADAPTERS: dict[str, Callable[..., tuple[nn.Module, dict[str, Any]]]] = {
    "brainiac": build_brainiac,
    "medicalnet": build_medicalnet,
    "monai-resnet": build_monai_resnet,
    "swinunetr": build_swinunetr,
}


def load_adapter(
    path: str | os.PathLike[str],
    adapter: str,
    *,
    n_sequences: int = 4,
    device: str | torch.device = "cpu",
    options: Mapping[str, Any] | None = None,
) -> AdaptedBackbone:
    """Load an external checkpoint through a named adapter.

    Parameters
    ----------
    path : path
        The checkpoint file (safetensors, or a torch file loaded with
        ``weights_only=True``).
    adapter : str
        One of :data:`ADAPTERS`.
    n_sequences : int
        Number of input sequences (channels) the encoder will receive.
    device : str or torch.device
    options : mapping, optional
        Adapter options that weights cannot tell (``conv1_stride`` for
        ``monai-resnet``, ``downsample`` for ``swinunetr``).

    Returns
    -------
    AdaptedBackbone

    Raises
    ------
    AdapterError
        Unknown adapter (lists them), unreadable file, wrong layout.
    AdapterKeyError
        Missing / unexpected keys or shape mismatches, listed.
    """
    if adapter not in ADAPTERS:
        raise AdapterError(f"unknown adapter {adapter!r}; use one of {', '.join(ADAPTERS)}")
    p = Path(path)
    tensors = read_state_dict(p)
    encoder, info = ADAPTERS[adapter](tensors, n_sequences=n_sequences, source=str(p), **dict(options or {}))
    encoder.eval()
    probe = int(info.get("input_multiple", 32))
    dim = _embedding_dim(encoder, n_sequences, probe_size=max(32, probe))
    encoder.to(device)
    info = {"adapter": adapter, **info, "embedding_dim": dim}
    return AdaptedBackbone(
        encoder=encoder, adapter=adapter, sha256=sha256_file(p), embedding_dim=dim,
        in_channels=n_sequences, info=info, path=p,
    )

