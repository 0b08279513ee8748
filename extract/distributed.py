"""Thin helpers over ``torch.distributed`` that are no-ops in a single process.

Used by Group-DRO (all-reduce of per-group loss sums and counts), MoCo (all-gather of
keys for the queue), DINO (all-reduce of the teacher centre) and the trainer (rank,
world size, who writes).
"""

from __future__ import annotations

import torch

__all__ = ["all_gather_cat", "all_reduce_sum", "is_distributed", "rank", "world_size"]


def is_distributed() -> bool:
    """True when a default process group is initialised (torchrun / spawn)."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return torch.distributed.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of processes (1 without a process group)."""
    return torch.distributed.get_world_size() if is_distributed() else 1


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum of *tensor* over all ranks (a new tensor; the input is not modified)."""
    out = tensor.detach().clone()
    if is_distributed():
        torch.distributed.all_reduce(out, op=torch.distributed.ReduceOp.SUM)
    return out


def all_gather_cat(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate *tensor* (same shape on every rank) over ranks along dim 0, rank order."""
    if not is_distributed():
        return tensor.detach()
    parts = [torch.empty_like(tensor) for _ in range(world_size())]
    torch.distributed.all_gather(parts, tensor.detach().contiguous())
    return torch.cat(parts, dim=0)
