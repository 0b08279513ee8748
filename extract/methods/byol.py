"""BYOL (Grill et al. 2020) for 3D volumes.

Online network: encoder -> projector -> predictor. Target network: EMA copy of the
encoder and projector, ``xi <- tau xi + (1 - tau) theta`` with ``tau`` rising from
``tau_base`` (0.996) to 1 on a cosine over training. Per sample the loss is the
symmetric normalised-MSE

    l_i = (2 - 2 cos(p(v1_i), z'(v2_i))) + (2 - 2 cos(p(v2_i), z'(v1_i))).

References
----------
Grill J-B, Strub F, Altché F, et al. Bootstrap your own latent: a new approach to
self-supervised learning. NeurIPS 2020.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

from neurofeat.extract.augment import ViewSpec
from neurofeat.extract.methods.base import (
    SSLMethod,
    cosine_momentum,
    ema_update,
    frozen_copy,
    mlp,
    register_method,
)

__all__ = ["BYOL"]


@register_method
class BYOL(SSLMethod):
    """BYOL with an EMA target and a predictor; symmetric loss.

    Parameters
    ----------
    encoder : ResNetEncoder
    proj_hidden_dim, proj_dim : int
        Projector and predictor widths (paper: 4096 -> 256).
    tau_base : float
        Initial EMA momentum of the target (paper: 0.996), cosine-increased to 1.
    crop_scale : (float, float)
        Per-axis edge fraction of the random resized crop.
    """

    name = "byol"

    def __init__(self, encoder: torch.nn.Module, proj_hidden_dim: int = 4096, proj_dim: int = 256,
                 tau_base: float = 0.996, crop_scale: tuple[float, float] = (0.5, 1.0)) -> None:
        super().__init__(encoder)
        self.proj_hidden_dim = int(proj_hidden_dim)
        self.proj_dim = int(proj_dim)
        self.tau_base = float(tau_base)
        self.crop_scale = tuple(crop_scale)
        self.projector = mlp(self.embedding_dim, self.proj_hidden_dim, self.proj_dim)
        self.predictor = mlp(self.proj_dim, self.proj_hidden_dim, self.proj_dim)
        self.target_encoder = frozen_copy(self.encoder)
        self.target_projector = frozen_copy(self.projector)

    def view_specs(self, input_size: int) -> list[ViewSpec]:
        return [ViewSpec("global", input_size, self.crop_scale, count=2)]

    def forward(self, views: Sequence[torch.Tensor]) -> torch.Tensor:
        self._check_views(views, 2)
        batch = views[0].shape[0]
        both = torch.cat([views[0], views[1]], dim=0)
        p = F.normalize(self.predictor(self.projector(self.encoder(both))).float(), dim=1)
        with torch.no_grad():
            z = F.normalize(self.target_projector(self.target_encoder(both)).float(), dim=1)
        p1, p2, z1, z2 = p[:batch], p[batch:], z[:batch], z[batch:]
        return (2 - 2 * (p1 * z2).sum(dim=1)) + (2 - 2 * (p2 * z1).sum(dim=1))

    @torch.no_grad()
    def after_step(self, progress: float) -> None:
        tau = cosine_momentum(self.tau_base, progress)
        ema_update(self.target_encoder, self.encoder, tau)
        ema_update(self.target_projector, self.projector, tau)

    def hparams(self) -> dict[str, Any]:
        return {"proj_hidden_dim": self.proj_hidden_dim, "proj_dim": self.proj_dim,
                "tau_base": self.tau_base, "crop_scale": list(self.crop_scale)}
