"""Group distributionally robust optimisation (Sagawa et al. 2020), online algorithm.

With per-sample losses ``l_i`` and group labels ``g(i)``, each step computes the
per-group mean losses ``L_g`` over the (global) batch, updates the adversarial group
weights by exponentiated gradient ascent

    q_g <- q_g * exp(eta * (L_g + C / sqrt(n_g))),    q <- q / sum(q),

and returns the objective ``sum_g q_g L_g`` with the *updated* q (Algorithm 1 of the
paper, which updates q before the model step). ``n_g`` is the number of training
samples of group g (the generalisation adjustment ``C / sqrt(n_g)``; ``C = 0``
disables it).

Groups absent from a batch: their ``L_g`` is undefined, so they get no exponent (a
factor ``exp(0) = 1``, as for the groups not sampled in the paper's Algorithm 1) and
no term in the objective; their weight changes only through the renormalisation.
Nothing divides by a zero count. When every group is present this is exactly the
formula above.

Under ``torch.distributed`` the per-group loss sums and sample counts are all-reduced
before ``L_g`` is formed, so every rank computes the same q. The local objective is
``world_size * sum_g q_g * (local sum_g) / (global count_g)``: DDP's gradient
averaging then yields exactly the gradient of the global objective, even when ranks
hold different numbers of samples of a group.

References
----------
Sagawa S, Koh PW, Hashimoto TB, Liang P. Distributionally robust neural networks for
group shifts: on the importance of regularization for worst-case generalization.
ICLR 2020 (Algorithm 1; Section 3.2 for the adjustment C/sqrt(n_g)).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from neurofeat.extract.distributed import all_reduce_sum, world_size

__all__ = ["DROStep", "GroupDRO", "group_sums", "erm_objective"]


@dataclass(frozen=True)
class DROStep:
    """One step's outcome.

    Attributes
    ----------
    objective : torch.Tensor
        Scalar to back-propagate (local share of the global objective).
    objective_value : float
        The global objective ``sum_g q_g L_g`` (or the global mean loss for ERM).
    group_loss : torch.Tensor
        ``(G,)`` global mean loss per group (NaN where the group was absent).
    group_count : torch.Tensor
        ``(G,)`` global number of samples per group in this batch.
    q : torch.Tensor
        ``(G,)`` group weights after the update (uniform ``1/G`` for ERM, for logging).
    """

    objective: torch.Tensor
    objective_value: float
    group_loss: torch.Tensor
    group_count: torch.Tensor
    q: torch.Tensor


def _check_inputs(per_sample_loss: torch.Tensor, group_index: torch.Tensor, n_groups: int) -> torch.Tensor:
    if per_sample_loss.ndim != 1:
        raise ValueError(
            f"Group-DRO needs a per-sample loss vector (B,), got shape {tuple(per_sample_loss.shape)}."
        )
    group_index = torch.as_tensor(group_index, device=per_sample_loss.device).long().view(-1)
    if group_index.shape[0] != per_sample_loss.shape[0]:
        raise ValueError(
            f"Group-DRO: {per_sample_loss.shape[0]} losses but {group_index.shape[0]} group labels."
        )
    if group_index.numel() and (int(group_index.min()) < 0 or int(group_index.max()) >= n_groups):
        raise ValueError(
            f"Group-DRO: group index out of range [0, {n_groups}) "
            f"(min {int(group_index.min())}, max {int(group_index.max())})."
        )
    return group_index


def group_sums(per_sample_loss: torch.Tensor, group_index: torch.Tensor,
               n_groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Local per-group loss sums (differentiable) and counts, each ``(G,)``."""
    group_index = _check_inputs(per_sample_loss, group_index, n_groups)
    loss = per_sample_loss.float()
    sums = torch.zeros(n_groups, dtype=loss.dtype, device=loss.device).index_add(0, group_index, loss)
    counts = torch.zeros(n_groups, dtype=loss.dtype, device=loss.device).index_add(
        0, group_index, torch.ones_like(loss)
    )
    return sums, counts


def _global_group_stats(per_sample_loss: torch.Tensor, group_index: torch.Tensor,
                        n_groups: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    local_sums, local_counts = group_sums(per_sample_loss, group_index, n_groups)
    global_sums = all_reduce_sum(local_sums.detach())
    global_counts = all_reduce_sum(local_counts)
    present = global_counts > 0
    group_loss = torch.where(present, global_sums / global_counts.clamp_min(1.0),
                             torch.full_like(global_sums, float("nan")))
    return local_sums, global_counts, group_loss, present


def erm_objective(per_sample_loss: torch.Tensor, group_index: torch.Tensor, n_groups: int) -> DROStep:
    """Plain mean loss over the global batch, with the same per-group bookkeeping.

    The local objective ``world_size * (local sum) / (global count)`` makes DDP's
    averaged gradient equal to the gradient of the global mean.
    """
    local_sums, global_counts, group_loss, present = _global_group_stats(per_sample_loss, group_index, n_groups)
    total = global_counts.sum().clamp_min(1.0)
    objective = world_size() * local_sums.sum() / total
    value = float(torch.nansum(group_loss * global_counts) / total)
    q = torch.full((n_groups,), 1.0 / n_groups, device=per_sample_loss.device)
    return DROStep(objective, value, group_loss, global_counts, q)


class GroupDRO(nn.Module):
    """Online Group-DRO group weights (a module so q is saved and resumed with the state).

    Parameters
    ----------
    n_groups : int
        Number of groups G.
    eta : float
        Step size of the exponentiated-gradient update of q (paper: 0.01).
    adjustment : float
        Generalisation adjustment C (paper: tuned in 0..5; 0 = none).
    group_counts : sequence of int, optional
        Training-set size n_g of every group; required when ``adjustment > 0``.
    group_names : sequence of str, optional
        Labels of the groups (for logs and the checkpoint card).

    Attributes
    ----------
    q : torch.Tensor
        ``(G,)`` current group weights (start uniform).
    """

    def __init__(self, n_groups: int, *, eta: float = 0.01, adjustment: float = 0.0,
                 group_counts: Sequence[int] | None = None, group_names: Sequence[str] | None = None) -> None:
        super().__init__()
        if int(n_groups) < 1:
            raise ValueError(f"GroupDRO: n_groups must be >= 1, got {n_groups}.")
        if float(eta) < 0:
            raise ValueError(f"GroupDRO: eta must be >= 0, got {eta}.")
        if float(adjustment) < 0:
            raise ValueError(f"GroupDRO: the adjustment C must be >= 0, got {adjustment}.")
        self.n_groups = int(n_groups)
        self.eta = float(eta)
        self.adjustment = float(adjustment)
        self.group_names = list(group_names) if group_names is not None else [str(g) for g in range(self.n_groups)]
        if len(self.group_names) != self.n_groups:
            raise ValueError(f"GroupDRO: {len(self.group_names)} group names for {self.n_groups} groups.")
        if group_counts is None:
            if self.adjustment > 0:
                raise ValueError("GroupDRO: adjustment C > 0 needs group_counts (training samples per group).")
            counts = torch.ones(self.n_groups)
        else:
            counts = torch.as_tensor(list(group_counts), dtype=torch.float32)
            if counts.shape != (self.n_groups,) or bool((counts <= 0).any()):
                raise ValueError(
                    f"GroupDRO: group_counts must be {self.n_groups} positive numbers, got {list(group_counts)}."
                )
        self.register_buffer("group_counts", counts)
        self.register_buffer("q", torch.full((self.n_groups,), 1.0 / self.n_groups))

    def forward(self, per_sample_loss: torch.Tensor, group_index: torch.Tensor) -> DROStep:
        """Update q from this batch and return the robust objective (see module doc).

        Parameters
        ----------
        per_sample_loss : torch.Tensor
            ``(B,)`` losses of this rank's samples.
        group_index : torch.Tensor
            ``(B,)`` integer group of each sample, in ``[0, G)``.
        """
        local_sums, global_counts, group_loss, present = _global_group_stats(
            per_sample_loss, group_index, self.n_groups
        )
        q = self.q.to(per_sample_loss.device)
        adjusted = torch.nan_to_num(group_loss, nan=0.0)
        if self.adjustment > 0:
            adjusted = adjusted + self.adjustment / self.group_counts.to(q.device).sqrt()
        exponent = torch.where(present, self.eta * adjusted, torch.zeros_like(adjusted))
        with torch.no_grad():
            new_q = torch.softmax(torch.log(q) + exponent, dim=0)  # = q*exp(.)/sum(q*exp(.))
            self.q.copy_(new_q)
        denom = global_counts.clamp_min(1.0)
        objective = world_size() * (new_q * local_sums / denom).sum()
        value = float(torch.nansum(new_q * group_loss))
        return DROStep(objective, value, group_loss, global_counts, new_q.detach().clone())
