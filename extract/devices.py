"""Which device and how many loader workers: the one resolver that extraction and pretraining share."""

from __future__ import annotations

import os

import torch

__all__ = ["DeviceError", "default_workers", "resolve_device"]


class DeviceError(ValueError):
    """A ``--device`` that is unknown or not available here (the message says what to use)."""


def resolve_device(device: str = "auto", local_rank: int | None = None) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; under torchrun ``cuda:<LOCAL_RANK>``.

    Parameters
    ----------
    device : {'auto', 'cpu', 'cuda', 'cuda:N'}
    local_rank : int, optional
        GPU of this process for ``auto``/``cuda`` (default: ``$LOCAL_RANK`` or 0, modulo
        the number of visible GPUs).

    Raises
    ------
    DeviceError
        ``cuda`` was asked for but no CUDA device is visible; or an unknown name.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    name = (device or "auto").lower()
    if name not in ("auto", "cpu", "cuda") and not name.startswith("cuda:"):
        raise DeviceError(f"--device must be auto, cpu or cuda, got {device!r}")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise DeviceError(f"--device {device} was asked for but no CUDA device is visible; use --device cpu or auto")
    if name.startswith("cuda:"):
        return torch.device(name)
    if local_rank is None:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def default_workers(device: torch.device, cpu_count: int | None = None) -> int:
    """Loader worker processes when the user does not say: 0 on CPU, else one per spare core.

    On CPU the encoder already runs on every core: worker processes would take cores
    from it and add a shared-memory copy of every batch, so decoding runs in one
    background thread instead (measured on 2 cores: efficiency 0.49 with the thread,
    0.29 with 2 worker processes; ``benchmarks/bench_extract.py``). On a GPU the CPU
    only decodes, so every core but the one driving the GPU decodes (at most 8).
    """
    if device.type == "cpu":
        return 0
    if cpu_count is None:
        cpu_count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(8, cpu_count - 1))
