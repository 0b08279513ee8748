"""MoCo (He et al. 2020; Chen et al. 2020 v2) for 3D volumes.

A query encoder (online, trained) and a key encoder (momentum copy,
``theta_k <- m theta_k + (1 - m) theta_q``). With a queue (MoCo v2, the default) the
logits of query ``q_i`` are ``[q_i . k_i, q_i . queue] / tau`` and the loss is the
cross-entropy with the positive at index 0 (InfoNCE); keys of every step are
all-gathered over ranks and enqueued (FIFO ring buffer, initialised with random unit
vectors as in the paper). With ``queue_size=0`` the negatives are the other keys of the batch
(MoCo v3 style). The loss is symmetrised over the two views; per sample it is
``(l(q1_i, k2_i) + l(q2_i, k1_i)) / 2``.

Notes
-----
MoCo's shuffling BN (to stop the query and key BN statistics from leaking the
positive) needs several GPUs and is not implemented. Keep ``queue_size`` below the
number of training patients minus the batch, so that a sample's own stale key is not
a negative; the trainer clamps it.

References
----------
He K, Fan H, Wu Y, Xie S, Girshick R. Momentum contrast for unsupervised visual
representation learning. CVPR 2020. Chen X, Fan H, Girshick R, He K. Improved
baselines with momentum contrastive learning. arXiv:2003.04297.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

from neurofeat.extract.augment import ViewSpec
from neurofeat.extract.distributed import all_gather_cat
from neurofeat.extract.methods.base import SSLMethod, ema_update, frozen_copy, mlp, register_method

__all__ = ["MoCo"]


@register_method
class MoCo(SSLMethod):
    """MoCo v2 (queue) or v3-style (in-batch keys) contrastive learning.

    Parameters
    ----------
    encoder : ResNetEncoder
    proj_hidden_dim, proj_dim : int
        MLP head widths (v2: 2048 -> 128).
    temperature : float
        InfoNCE temperature (v2: 0.2).
    momentum : float
        Key-encoder momentum (v2: 0.999; constant).
    queue_size : int
        Number of negative keys kept; 0 = in-batch negatives (v3 style).
    crop_scale : (float, float)
        Per-axis edge fraction of the random resized crop.
    """

    name = "moco"

    def __init__(self, encoder: torch.nn.Module, proj_hidden_dim: int = 2048, proj_dim: int = 128,
                 temperature: float = 0.2, momentum: float = 0.999, queue_size: int = 4096,
                 crop_scale: tuple[float, float] = (0.5, 1.0)) -> None:
        super().__init__(encoder)
        self.proj_hidden_dim = int(proj_hidden_dim)
        self.proj_dim = int(proj_dim)
        self.temperature = float(temperature)
        self.momentum = float(momentum)
        self.queue_size = int(queue_size)
        self.crop_scale = tuple(crop_scale)
        if self.queue_size < 0:
            raise ValueError(f"moco: queue_size must be >= 0, got {queue_size}.")
        self.projector = mlp(self.embedding_dim, self.proj_hidden_dim, self.proj_dim, batch_norm=False)
        self.key_encoder = frozen_copy(self.encoder)
        self.key_projector = frozen_copy(self.projector)
        # as in the paper, the queue starts with random unit vectors (uninformative negatives)
        self.register_buffer("queue", F.normalize(torch.randn(self.queue_size, self.proj_dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    def view_specs(self, input_size: int) -> list[ViewSpec]:
        return [ViewSpec("global", input_size, self.crop_scale, count=2)]

    def _query(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.projector(self.encoder(x)).float(), dim=1)

    @torch.no_grad()
    def _key(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.key_projector(self.key_encoder(x)).float(), dim=1)

    def _info_nce(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        if self.queue_size == 0:
            logits = q @ k.t() / self.temperature  # positives on the diagonal
            labels = torch.arange(q.shape[0], device=q.device)
            return F.cross_entropy(logits, labels, reduction="none")
        positive = (q * k).sum(dim=1, keepdim=True)
        negatives = q @ self.queue.detach().clone().t()  # the queue is updated in place later
        logits = torch.cat([positive, negatives], dim=1) / self.temperature
        labels = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
        return F.cross_entropy(logits, labels, reduction="none")

    def forward(self, views: Sequence[torch.Tensor]) -> torch.Tensor:
        self._check_views(views, 2)
        batch = views[0].shape[0]
        q = self._query(torch.cat([views[0], views[1]], dim=0))
        k = self._key(torch.cat([views[0], views[1]], dim=0))
        q1, q2, k1, k2 = q[:batch], q[batch:], k[:batch], k[batch:]
        loss = 0.5 * (self._info_nce(q1, k2) + self._info_nce(q2, k1))
        if self.training and self.queue_size > 0:
            self._enqueue(torch.cat([k1, k2], dim=0))
        return loss

    @torch.no_grad()
    def _enqueue(self, keys: torch.Tensor) -> None:
        """Write *keys* (gathered over ranks) into the ring buffer after the pointer."""
        keys = all_gather_cat(keys.to(self.queue.dtype))
        if keys.shape[0] >= self.queue_size:
            keys = keys[-self.queue_size:]
        n = keys.shape[0]
        ptr = int(self.queue_ptr)
        idx = (torch.arange(n, device=keys.device) + ptr) % self.queue_size
        self.queue[idx] = keys
        self.queue_ptr.fill_((ptr + n) % self.queue_size)

    @torch.no_grad()
    def after_step(self, progress: float) -> None:
        ema_update(self.key_encoder, self.encoder, self.momentum)
        ema_update(self.key_projector, self.projector, self.momentum)

    def hparams(self) -> dict[str, Any]:
        return {"proj_hidden_dim": self.proj_hidden_dim, "proj_dim": self.proj_dim,
                "temperature": self.temperature, "momentum": self.momentum,
                "queue_size": self.queue_size, "crop_scale": list(self.crop_scale)}
