"""SimCLR (Chen et al. 2020) for 3D volumes: NT-Xent over two augmented views.

For a batch of B samples, two views give 2B projections ``z`` (L2-normalised). For
anchor ``i`` with positive ``j`` (the other view of the same sample) the loss is

    l(i, j) = -log( exp(sim(z_i, z_j)/tau) / sum_{k != i} exp(sim(z_i, z_k)/tau) ),

and the per-sample loss is ``(l(i, j) + l(j, i)) / 2``. Negatives are the other
2B - 2 views of the local batch (not gathered across ranks).

References
----------
Chen T, Kornblith S, Norouzi M, Hinton G. A simple framework for contrastive learning
of visual representations. ICML 2020.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

from neurofeat.extract.augment import ViewSpec
from neurofeat.extract.methods.base import SSLMethod, mlp, register_method

__all__ = ["SimCLR", "nt_xent_per_sample"]


def nt_xent_per_sample(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-sample NT-Xent loss ``(B,)`` of two view batches of projections ``(B, d)``."""
    batch = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2], dim=0).float(), dim=1)
    logits = z @ z.t() / temperature
    logits.fill_diagonal_(float("-inf"))  # k != i
    positives = torch.cat([torch.arange(batch, 2 * batch), torch.arange(0, batch)]).to(z.device)
    per_anchor = F.cross_entropy(logits, positives, reduction="none")  # (2B,)
    return 0.5 * (per_anchor[:batch] + per_anchor[batch:])


@register_method
class SimCLR(SSLMethod):
    """SimCLR: encoder + 2-layer MLP projector, NT-Xent loss.

    Parameters
    ----------
    encoder : ResNetEncoder
    proj_hidden_dim, proj_dim : int
        Projector widths (paper: 2048 -> 128).
    temperature : float
        NT-Xent temperature (paper: 0.1-0.5; 0.1 here).
    crop_scale : (float, float)
        Per-axis edge fraction of the random resized crop.
    """

    name = "simclr"

    def __init__(self, encoder: torch.nn.Module, proj_hidden_dim: int = 2048, proj_dim: int = 128,
                 temperature: float = 0.1, crop_scale: tuple[float, float] = (0.5, 1.0)) -> None:
        super().__init__(encoder)
        self.proj_hidden_dim = int(proj_hidden_dim)
        self.proj_dim = int(proj_dim)
        self.temperature = float(temperature)
        self.crop_scale = tuple(crop_scale)
        self.projector = mlp(self.embedding_dim, self.proj_hidden_dim, self.proj_dim)

    def view_specs(self, input_size: int) -> list[ViewSpec]:
        return [ViewSpec("global", input_size, self.crop_scale, count=2)]

    def forward(self, views: Sequence[torch.Tensor]) -> torch.Tensor:
        self._check_views(views, 2)
        batch = views[0].shape[0]
        z = self.projector(self.encoder(torch.cat([views[0], views[1]], dim=0)))
        return nt_xent_per_sample(z[:batch], z[batch:], self.temperature)

    def hparams(self) -> dict[str, Any]:
        return {"proj_hidden_dim": self.proj_hidden_dim, "proj_dim": self.proj_dim,
                "temperature": self.temperature, "crop_scale": list(self.crop_scale)}
