"""DINO (Caron et al. 2021) for 3D volumes, with 3D multi-crop.

A student (encoder + head) and a teacher (EMA copy, momentum cosine-increased from
``teacher_momentum`` to 1) produce K-way outputs. The teacher sees the global crops
only; its outputs are centred (``c <- m c + (1 - m) mean(teacher outputs)``, averaged
over ranks) and sharpened (temperature ``teacher_temp``); the student sees global and
local crops (temperature ``student_temp``). Per sample the loss is the mean over all
(teacher view i, student view j, i != j) pairs of the cross-entropy

    H(t_i, s_j) = - sum_k softmax((g_t(x_i) - c) / tau_t)_k log softmax(g_s(x_j) / tau_s)_k.

The head is a 3-layer MLP to an L2-normalised bottleneck followed by a weight-normalised
linear layer with unit norm (a cosine layer over K prototypes), as in the paper.

References
----------
Caron M, Touvron H, Misra I, et al. Emerging properties in self-supervised vision
transformers. ICCV 2021.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from neurofeat.extract.augment import ViewSpec
from neurofeat.extract.distributed import all_reduce_sum, world_size
from neurofeat.extract.methods.base import (
    SSLMethod,
    cosine_momentum,
    ema_update,
    frozen_copy,
    register_method,
)

__all__ = ["DINO", "DINOHead"]


class DINOHead(nn.Module):
    """MLP -> L2-normalised bottleneck -> cosine layer over ``out_dim`` prototypes."""

    def __init__(self, in_dim: int, hidden_dim: int, bottleneck_dim: int, out_dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden_dim), nn.GELU(),
            nn.Linear(hidden_dim, hidden_dim), nn.GELU(),
            nn.Linear(hidden_dim, bottleneck_dim),
        )
        self.prototypes = nn.Parameter(torch.randn(out_dim, bottleneck_dim) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(self.mlp(x), dim=-1)
        return x @ F.normalize(self.prototypes, dim=-1).t()


@register_method
class DINO(SSLMethod):
    """DINO self-distillation with centring, sharpening and 3D multi-crop.

    Parameters
    ----------
    encoder : ResNetEncoder
    out_dim : int
        Number of prototypes K (paper: 65536; 4096 here for 3D memory).
    hidden_dim, bottleneck_dim : int
        Head widths (paper: 2048, 256).
    student_temp, teacher_temp : float
        Temperatures (paper: 0.1 and 0.04).
    center_momentum : float
        Centre EMA (paper: 0.9).
    teacher_momentum : float
        Initial teacher EMA momentum (paper: 0.996), cosine-increased to 1.
    n_local : int
        Number of local crops (paper: 8-10 in 2D; 4 here, 3D is costly).
    global_scale, local_scale : (float, float)
        Per-axis edge fraction of global and local crops (the paper's area ranges
        (0.4, 1) and (0.05, 0.4) correspond roughly to these volume fractions).
    local_size_ratio : float
        Edge of a local crop relative to the input (paper: 96/224 ~ 0.43; 0.5 here).
    """

    name = "dino"

    def __init__(self, encoder: torch.nn.Module, out_dim: int = 4096, hidden_dim: int = 2048,
                 bottleneck_dim: int = 256, student_temp: float = 0.1, teacher_temp: float = 0.04,
                 center_momentum: float = 0.9, teacher_momentum: float = 0.996, n_local: int = 4,
                 global_scale: tuple[float, float] = (0.6, 1.0),
                 local_scale: tuple[float, float] = (0.3, 0.6), local_size_ratio: float = 0.5) -> None:
        super().__init__(encoder)
        self.out_dim = int(out_dim)
        self.hidden_dim = int(hidden_dim)
        self.bottleneck_dim = int(bottleneck_dim)
        self.student_temp = float(student_temp)
        self.teacher_temp = float(teacher_temp)
        self.center_momentum = float(center_momentum)
        self.teacher_momentum = float(teacher_momentum)
        self.n_local = int(n_local)
        self.global_scale = tuple(global_scale)
        self.local_scale = tuple(local_scale)
        self.local_size_ratio = float(local_size_ratio)
        self.head = DINOHead(self.embedding_dim, self.hidden_dim, self.bottleneck_dim, self.out_dim)
        self.teacher_encoder = frozen_copy(self.encoder)
        self.teacher_head = frozen_copy(self.head)
        self.register_buffer("center", torch.zeros(1, self.out_dim))

    def view_specs(self, input_size: int) -> list[ViewSpec]:
        specs = [ViewSpec("global", input_size, self.global_scale, count=2)]
        if self.n_local > 0:
            local_size = max(8, int(round(input_size * self.local_size_ratio)))
            specs.append(ViewSpec("local", local_size, self.local_scale, count=self.n_local))
        return specs

    def forward(self, views: Sequence[torch.Tensor]) -> torch.Tensor:
        self._check_views(views, 2 + self.n_local)
        batch = views[0].shape[0]
        globals_ = torch.cat(list(views[:2]), dim=0)
        student = [self.head(self.encoder(globals_)).float()]
        if self.n_local:
            student.append(self.head(self.encoder(torch.cat(list(views[2:]), dim=0))).float())
        student_logp = F.log_softmax(torch.cat(student, dim=0) / self.student_temp, dim=-1)
        student_logp = student_logp.view(2 + self.n_local, batch, self.out_dim)
        with torch.no_grad():
            teacher_out = self.teacher_head(self.teacher_encoder(globals_)).float()
            teacher_p = F.softmax((teacher_out - self.center) / self.teacher_temp, dim=-1)
            teacher_p = teacher_p.view(2, batch, self.out_dim)
        per_sample = student_logp.new_zeros(batch)
        n_pairs = 0
        for t_index in range(2):
            for s_index in range(2 + self.n_local):
                if s_index == t_index:
                    continue
                per_sample = per_sample - (teacher_p[t_index] * student_logp[s_index]).sum(dim=-1)
                n_pairs += 1
        if self.training:
            self._update_center(teacher_out)
        return per_sample / n_pairs

    @torch.no_grad()
    def _update_center(self, teacher_out: torch.Tensor) -> None:
        batch_center = all_reduce_sum(teacher_out.sum(dim=0, keepdim=True))
        batch_center = batch_center / (teacher_out.shape[0] * world_size())
        self.center.mul_(self.center_momentum).add_(batch_center, alpha=1.0 - self.center_momentum)

    @torch.no_grad()
    def after_step(self, progress: float) -> None:
        momentum = cosine_momentum(self.teacher_momentum, progress)
        ema_update(self.teacher_encoder, self.encoder, momentum)
        ema_update(self.teacher_head, self.head, momentum)

    def hparams(self) -> dict[str, Any]:
        return {"out_dim": self.out_dim, "hidden_dim": self.hidden_dim,
                "bottleneck_dim": self.bottleneck_dim, "student_temp": self.student_temp,
                "teacher_temp": self.teacher_temp, "center_momentum": self.center_momentum,
                "teacher_momentum": self.teacher_momentum, "n_local": self.n_local,
                "global_scale": list(self.global_scale), "local_scale": list(self.local_scale),
                "local_size_ratio": self.local_size_ratio}
