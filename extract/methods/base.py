"""Common interface and registry of the self-supervised pretraining methods.

Every method is a ``torch.nn.Module`` that owns the online encoder (``.encoder``, the
network that is saved as the backbone) plus whatever heads, momentum/EMA copies and
buffers its paper uses. ``forward(views)`` takes the list of augmented views the
method asked for (``view_specs``) and returns a **per-sample loss vector** of shape
``(B,)``, so that the trainer can average it (ERM) or weight it by group (Group-DRO).
``after_step(progress)`` runs once after each optimiser step (EMA/momentum updates).

Example (a sketch: not run as a doctest)
---------------------------------------
>>> method = build_method("byol", build_encoder(EncoderConfig(arch="resnet10", widen_factor=0.25)))  # doctest: +SKIP
>>> specs = method.view_specs(input_size=32)  # doctest: +SKIP
>>> loss = method([view1, view2])  # doctest: +SKIP
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Sequence

import torch
from torch import nn

from neurofeat.extract.augment import ViewSpec

__all__ = [
    "METHODS",
    "SSLMethod",
    "build_method",
    "cosine_momentum",
    "ema_update",
    "frozen_copy",
    "mlp",
    "register_method",
]

METHODS: dict[str, type["SSLMethod"]] = {}


def register_method(cls: type["SSLMethod"]) -> type["SSLMethod"]:
    """Class decorator adding *cls* to :data:`METHODS` under ``cls.name``."""
    METHODS[cls.name] = cls
    return cls


class SSLMethod(nn.Module):
    """Base class: an online encoder plus a per-sample self-supervised loss.

    Subclasses set ``name`` and implement ``view_specs``, ``forward`` and (when they
    have momentum/EMA networks) ``after_step``; ``hparams()`` reports the
    hyper-parameters that go into the checkpoint card.
    """

    name: ClassVar[str] = ""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        if not hasattr(encoder, "embedding_dim"):
            raise TypeError(
                f"{type(self).__name__}: the encoder must expose .embedding_dim "
                "(build it with neurofeat.extract.encoders.build_encoder)."
            )
        self.encoder = encoder
        self.embedding_dim = int(encoder.embedding_dim)

    def view_specs(self, input_size: int) -> list[ViewSpec]:  # pragma: no cover - abstract
        """The views ``forward`` expects, in order, for inputs of edge *input_size*."""
        raise NotImplementedError

    def forward(self, views: Sequence[torch.Tensor]) -> torch.Tensor:  # pragma: no cover - abstract
        """Per-sample loss ``(B,)`` for a list of view batches ``(B, C, d, h, w)``."""
        raise NotImplementedError

    @torch.no_grad()
    def after_step(self, progress: float) -> None:
        """Called after every optimiser step; *progress* is in [0, 1] over the run."""

    def hparams(self) -> dict[str, Any]:
        """Hyper-parameters for the checkpoint card."""
        return {}

    def _check_views(self, views: Sequence[torch.Tensor], expected: int) -> None:
        if len(views) != expected:
            raise ValueError(
                f"{self.name}: expected {expected} views (see view_specs), got {len(views)}."
            )
        batch = views[0].shape[0]
        for i, view in enumerate(views):
            if view.ndim != 5 or view.shape[0] != batch:
                raise ValueError(
                    f"{self.name}: view {i} has shape {tuple(view.shape)}; every view must be "
                    f"(B={batch}, C, d, h, w)."
                )


def mlp(in_dim: int, hidden_dim: int, out_dim: int, *, n_layers: int = 2, batch_norm: bool = True,
        activation: type[nn.Module] = nn.ReLU, last_bn: bool = False) -> nn.Sequential:
    """Projection/prediction MLP: ``n_layers`` linear layers with BN + activation between.

    Parameters
    ----------
    in_dim, hidden_dim, out_dim : int
        Input, hidden and output widths.
    n_layers : int
        Number of linear layers (>= 1).
    batch_norm : bool
        BatchNorm1d after each hidden linear layer.
    last_bn : bool
        Affine-free BatchNorm1d after the output (MoCo v3 / SimCLR v2 style).
    """
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(n_layers - 1):
        layers.append(nn.Linear(dim, hidden_dim, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm1d(hidden_dim))
        layers.append(activation())
        dim = hidden_dim
    layers.append(nn.Linear(dim, out_dim, bias=not last_bn))
    if last_bn:
        layers.append(nn.BatchNorm1d(out_dim, affine=False))
    return nn.Sequential(*layers)


def cosine_momentum(base: float, progress: float) -> float:
    """EMA momentum rising from *base* to 1 on a half cosine (BYOL, DINO).

    ``m = 1 - (1 - base) * (cos(pi * progress) + 1) / 2``.
    """
    progress = min(max(float(progress), 0.0), 1.0)
    return 1.0 - (1.0 - base) * (math.cos(math.pi * progress) + 1.0) / 2.0


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """``target <- momentum * target + (1 - momentum) * online`` (parameters);
    buffers (BN running statistics) are copied."""
    for t_param, o_param in zip(target.parameters(), online.parameters()):
        t_param.mul_(momentum).add_(o_param.detach(), alpha=1.0 - momentum)
    for t_buf, o_buf in zip(target.buffers(), online.buffers()):
        t_buf.copy_(o_buf)


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy with ``requires_grad=False`` (momentum/EMA networks)."""
    import copy

    clone = copy.deepcopy(module)
    for param in clone.parameters():
        param.requires_grad_(False)
    return clone


def build_method(name: str, encoder: nn.Module, **params: Any) -> SSLMethod:
    """Instantiate method *name* around *encoder*.

    Raises
    ------
    ValueError
        Unknown method (lists the known ones) or unknown hyper-parameter (lists the
        accepted ones).
    """
    import inspect

    # make sure every method module has registered itself
    from neurofeat.extract.methods import byol, dino, mae, moco, simclr  # noqa: F401

    key = str(name).lower()
    if key not in METHODS:
        raise ValueError(f"unknown pretraining method {name!r}; use one of {sorted(METHODS)}.")
    cls = METHODS[key]
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "encoder")]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(f"{key}: unknown hyper-parameter(s) {unknown}; accepted: {accepted}.")
    return cls(encoder, **params)
