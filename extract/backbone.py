"""The encoder an extraction runs: a `neurofeat pretrain` backbone or an external checkpoint.

:func:`resolve_extraction_backbone` loads the weights (safetensors, never a pickle),
checks the card's preprocessing against the encoder, and returns an
:class:`ExtractionBackbone` carrying everything its embedding rows must record
(checkpoint and preprocessing hashes, architecture).

Example
-------
>>> backbone = resolve_extraction_backbone("dino_dro", models_dir="models")   # doctest: +SKIP
>>> backbone.embedding_dim                                                     # doctest: +SKIP
2048
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from neurofeat.extract.preprocess import PreprocessConfig

__all__ = ["ExtractionBackbone", "ExtractionError", "random_backbone", "resolve_extraction_backbone",
           "state_dict_sha256"]


class ExtractionError(RuntimeError):
    """Extraction cannot start or finish (the message names what and the fix)."""


@dataclass(frozen=True)
class ExtractionBackbone:
    """An encoder ready to extract, with everything its rows must carry.

    Attributes
    ----------
    name : str
        Backbone name in the store (partition ``backbone=<name>``).
    encoder : torch.nn.Module
        Eval mode; ``(B, C, *input_size) -> (B, embedding_dim)``.
    checkpoint_sha256 : str
    preprocess : PreprocessConfig
    embedding_dim : int
    source : str
        ``"neurofeat"`` (a `neurofeat pretrain` checkpoint) or the adapter name.
    path : Path
    card : dict
    architecture : dict
        How the weights were built into a network (a neurofeat encoder config, or an
        adapter's inferred shape and options): stored with the rows, since the same
        checkpoint built another way is another encoder.
    """

    name: str
    encoder: torch.nn.Module
    checkpoint_sha256: str
    preprocess: PreprocessConfig
    embedding_dim: int
    source: str = "neurofeat"
    path: Path = Path(".")
    card: dict[str, Any] = field(default_factory=dict)
    architecture: dict[str, Any] = field(default_factory=dict)

    @property
    def preprocess_sha256(self) -> str:
        """Hash of :attr:`preprocess` (stored with every row)."""
        return self.preprocess.sha256()


def _preprocess_from_card(card: Mapping[str, Any], config: Any, where: str) -> PreprocessConfig:
    stored = card.get("preprocessing")
    if isinstance(stored, Mapping) and stored:
        try:
            pre = PreprocessConfig.from_dict(stored)
        except (TypeError, ValueError) as exc:
            raise ExtractionError(f"{where}: the card's preprocessing cannot be read ({exc})") from None
        recorded = card.get("preprocess_sha256")
        if recorded and recorded != pre.sha256():
            raise ExtractionError(
                f"{where}: the card's preprocess_sha256 {str(recorded)[:12]}… does not match its preprocessing "
                f"settings ({pre.sha256()[:12]}…); the card was edited or written by another neurofeat version. "
                "Re-save the checkpoint with `neurofeat pretrain`."
            )
    else:
        pre = PreprocessConfig(spacing=tuple(config.spacing), input_size=int(config.input_size))
    if pre.in_channels != int(config.in_channels):
        raise ExtractionError(
            f"{where}: the encoder takes {config.in_channels} channel(s) but its preprocessing stacks "
            f"{pre.in_channels} sequence(s) {list(pre.sequences)}; the card is inconsistent"
        )
    if pre.input_size != (int(config.input_size),) * 3:
        raise ExtractionError(
            f"{where}: the encoder was trained at {config.input_size}^3 but its preprocessing outputs "
            f"{pre.input_size}; the card is inconsistent"
        )
    return pre


def resolve_extraction_backbone(
    name: str | None,
    *,
    models_dir: str | os.PathLike[str] | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    adapter: str | None = None,
    adapter_options: Mapping[str, Any] | None = None,
    preprocess: PreprocessConfig | None = None,
    device: torch.device | str = "cpu",
) -> ExtractionBackbone:
    """Load a backbone by name (``neurofeat pretrain`` output) or an external checkpoint.

    Parameters
    ----------
    name : str or None
        Backbone name: looked up in *models_dir* when *checkpoint* is None; otherwise
        the name to store the external checkpoint's rows under (default: the adapter).
    models_dir : path, optional
        Default ``$NEUROFEAT_MODELS`` or ``./models``.
    checkpoint, adapter : optional
        An external checkpoint file and its adapter
        (:data:`neurofeat.extract.adapters.ADAPTERS`).
    adapter_options : mapping, optional
        Options the adapter cannot read from the weights.
    preprocess : PreprocessConfig, optional
        For external checkpoints only (default: T1/T1ce/T2/FLAIR, 1 mm, 128^3).
    device : torch.device or str

    Raises
    ------
    ExtractionError
        Inconsistent arguments or card; wrapped checkpoint/adapter errors keep their
        messages.
    """
    if checkpoint is not None:
        return _external_backbone(name, checkpoint, adapter, adapter_options, preprocess, device)
    if adapter:
        raise ExtractionError("--adapter needs --checkpoint PATH (the external weights file)")
    if preprocess is not None:
        raise ExtractionError("a neurofeat backbone's preprocessing comes from its card; it cannot be overridden")
    if not name:
        raise ExtractionError("give --backbone NAME (see `neurofeat backbones`) or --checkpoint PATH --adapter NAME")
    return _pretrained_backbone(name, models_dir, device)


def _external_backbone(
    name: str | None,
    checkpoint: str | os.PathLike[str],
    adapter: str | None,
    adapter_options: Mapping[str, Any] | None,
    preprocess: PreprocessConfig | None,
    device: torch.device | str,
) -> ExtractionBackbone:
    """An external checkpoint through its adapter (rows stored under *name* or the adapter)."""
    from neurofeat.extract.adapters import load_adapter

    if not adapter:
        raise ExtractionError("--checkpoint needs --adapter (brainiac, medicalnet, monai-resnet or swinunetr)")
    pre = preprocess or PreprocessConfig()
    loaded = load_adapter(checkpoint, adapter, n_sequences=pre.in_channels, device=device, options=adapter_options)
    multiple = int(loaded.info.get("input_multiple", 1))
    if any(s % multiple for s in pre.input_size):
        raise ExtractionError(
            f"the {adapter} encoder needs input sides divisible by {multiple}; the preprocessing "
            f"outputs {pre.input_size}"
        )
    card = {"adapter": adapter, "checkpoint": str(checkpoint), "architecture": loaded.info,
            "preprocessing": pre.to_dict(), "preprocess_sha256": pre.sha256(),
            "checkpoint_sha256": loaded.sha256}
    return ExtractionBackbone(
        name=name or adapter, encoder=loaded.encoder, checkpoint_sha256=loaded.sha256, preprocess=pre,
        embedding_dim=loaded.embedding_dim, source=adapter, path=Path(checkpoint), card=card,
        architecture=dict(loaded.info),
    )


def _pretrained_backbone(
    name: str, models_dir: str | os.PathLike[str] | None, device: torch.device | str
) -> ExtractionBackbone:
    """A `neurofeat pretrain` backbone by name (or directory), preprocessing from its card."""
    from neurofeat.extract.checkpoint import load_checkpoint, resolve_backbone
    from neurofeat.extract.encoders import embedding_dim

    path = resolve_backbone(name, models_dir)
    loaded = load_checkpoint(path, device=device)
    pre = _preprocess_from_card(loaded.card, loaded.config, str(path))
    return ExtractionBackbone(
        name=Path(name).name if Path(name).is_dir() else name, encoder=loaded.encoder,
        checkpoint_sha256=loaded.sha256, preprocess=pre, embedding_dim=embedding_dim(loaded.config),
        source="neurofeat", path=Path(path), card=dict(loaded.card), architecture=loaded.config.to_dict(),
    )


def state_dict_sha256(module: torch.nn.Module) -> str:
    """sha256 of a module's state: every tensor's name, dtype, shape and bytes, by name.

    Two encoders with equal hashes hold bit-identical weights and buffers.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        array = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{array.dtype}|{tuple(array.shape)}|".encode("utf-8"))
        digest.update(array.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def random_backbone(
    name: str = "random",
    *,
    arch: str = "resnet50",
    widen_factor: float = 1.0,
    preprocess: PreprocessConfig | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> ExtractionBackbone:
    """A randomly initialised encoder: the floor that tells whether pretraining helped.

    The encoder is a neurofeat 3D ResNet (:func:`neurofeat.extract.encoders.build_encoder`,
    MONAI's default initialisation) built under ``torch.manual_seed(seed)`` inside a forked
    RNG (the caller's random state is left as it was): the same seed gives bit-identical
    weights, and on CPU identical embeddings; another seed gives another encoder.

    Parameters
    ----------
    name : str
        Backbone name to store under.
    arch : str
        ``resnet10``, ``resnet18``, ``resnet34`` or ``resnet50``.
    widen_factor : float
    preprocess : PreprocessConfig, optional
        Default: T1/T1ce/T2/FLAIR at 1 mm, 128^3; its ``input_size`` must be a cube.
    seed : int
    device : torch.device or str

    Returns
    -------
    ExtractionBackbone
        ``checkpoint_sha256`` is :func:`state_dict_sha256` of the initial weights (so that
        it changes whenever the weights do, e.g. with another torch that draws otherwise);
        ``source`` is ``"random:<arch>:<seed>"``; ``architecture`` is the encoder config
        plus ``init='random'`` and the seed.

    Raises
    ------
    ExtractionError
        An unknown architecture, a non-positive width, or a non-cubic input size.
    """
    from neurofeat.extract.encoders import EncoderConfig, build_encoder, embedding_dim

    pre = preprocess or PreprocessConfig()
    if len(set(pre.input_size)) != 1:
        raise ExtractionError(f"--backbone random needs a cubic input size, got {pre.input_size}")
    try:
        config = EncoderConfig(arch=arch, in_channels=pre.in_channels, widen_factor=widen_factor,
                               input_size=pre.input_size[0], spacing=pre.spacing)
    except ValueError as exc:
        raise ExtractionError(f"--backbone random: {exc}") from None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        encoder = build_encoder(config)
    encoder = encoder.eval().to(device)
    digest = state_dict_sha256(encoder)
    source = f"random:{arch}:{int(seed)}"
    architecture = {**config.to_dict(), "init": "random", "seed": int(seed)}
    card = {"source": source, "architecture": architecture, "preprocessing": pre.to_dict(),
            "preprocess_sha256": pre.sha256(), "checkpoint_sha256": digest}
    return ExtractionBackbone(
        name=name, encoder=encoder, checkpoint_sha256=digest, preprocess=pre, embedding_dim=embedding_dim(config),
        source=source, path=Path("."), card=card, architecture=architecture,
    )
