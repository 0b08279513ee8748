"""Thin helpers over ``torch.distributed`` that are no-ops in a single process.

Used by Group-DRO (all-reduce of per-group loss sums and counts), MoCo (all-gather of
keys for the queue), DINO (all-reduce of the teacher centre), the trainer (rank,
world size, who writes) and extraction (sharding, gathering failures on rank 0,
agreeing on rank 0's view). :func:`process_group` is the one place that starts (and
ends) the process group under torchrun.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import torch

__all__ = [
    "all_gather_cat",
    "all_reduce_sum",
    "barrier",
    "broadcast_from_rank0",
    "dist_env",
    "gather_to_rank0",
    "init_process_group",
    "is_distributed",
    "process_group",
    "process_rank",
    "rank",
    "world_size",
]


def is_distributed() -> bool:
    """True when a default process group is initialised (torchrun / spawn)."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return torch.distributed.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of processes (1 without a process group)."""
    return torch.distributed.get_world_size() if is_distributed() else 1


def dist_env() -> tuple[int, int]:
    """(rank, world_size): from an initialised process group, else torchrun's environment."""
    if is_distributed():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def process_rank() -> int:
    """This process's rank under torchrun, before or after the group starts (0 otherwise)."""
    return dist_env()[0]


def init_process_group(device: torch.device) -> bool:
    """Start the process group from torchrun's environment (if not yet); True when this call did.

    Backend ``nccl`` on CUDA (after ``torch.cuda.set_device(device)``), else ``gloo``.
    """
    if is_distributed() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.distributed.init_process_group(backend=backend)
    return True


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[bool]:
    """Run the body inside torchrun's process group; destroy it afterwards if this call started it.

    Yields True when this call started the group.
    """
    started = init_process_group(device)
    try:
        yield started
    finally:
        if started:
            torch.distributed.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    if is_distributed():
        torch.distributed.barrier()


def gather_to_rank0(items: list[Any]) -> list[Any]:
    """Concatenation of every rank's *items* on rank 0 (rank order); ``[]`` on the others."""
    if not is_distributed():
        return items
    here, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    gathered: list[Any] = [None] * world if here == 0 else None  # type: ignore[assignment]
    torch.distributed.gather_object(items, gathered, dst=0)
    return [x for part in gathered for x in part] if here == 0 else []


def broadcast_from_rank0(value: Any) -> Any:
    """Rank 0's *value* on every rank (a picklable object)."""
    if not is_distributed():
        return value
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


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
