"""The forward pass of extraction: a batch of volumes -> float32 embeddings.

On CUDA the encoder runs in bf16 autocast on ``channels_last_3d`` inputs; on CPU in
plain float32, so that embeddings are deterministic. A batch that fails is embedded
patient by patient, so that one bad volume fails only its own patient.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["embed_batch", "embed_with_fallback", "prepare_encoder"]


def prepare_encoder(encoder: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """*encoder* in eval mode on *device* (``channels_last_3d`` on CUDA, matching :func:`embed_batch`)."""
    encoder = encoder.eval().to(device)
    if device.type == "cuda":
        encoder = encoder.to(memory_format=torch.channels_last_3d)
    return encoder


def embed_batch(
    encoder: torch.nn.Module,
    images: torch.Tensor,
    device: torch.device,
    *,
    mixed_precision: bool | None = None,
    channels_last: bool | None = None,
) -> np.ndarray:
    """Embeddings of a batch ``(B, C, D, H, W)`` -> float32 ``(B, E)`` numpy array.

    Runs under ``torch.inference_mode``. ``mixed_precision`` (bf16 autocast) and
    ``channels_last`` (``channels_last_3d`` inputs; the encoder should be converted
    too, see :func:`prepare_encoder`) default to on for CUDA and off on CPU, where
    plain float32 keeps embeddings deterministic.
    """
    on_gpu = device.type == "cuda"
    mixed_precision = on_gpu if mixed_precision is None else mixed_precision
    channels_last = on_gpu if channels_last is None else channels_last
    with torch.inference_mode():
        x = images.to(device, non_blocking=on_gpu)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=mixed_precision):
            out = encoder(x)
        return out.float().cpu().numpy()


def embed_with_fallback(
    encoder: torch.nn.Module, images: torch.Tensor, device: torch.device
) -> tuple[np.ndarray | None, list[tuple[int, str]]]:
    """Embed a batch; if the batch fails, embed patient by patient to isolate failures."""
    try:
        return embed_batch(encoder, images, device), []
    except (RuntimeError, ValueError) as exc:
        if images.shape[0] == 1:
            return None, [(0, f"{type(exc).__name__}: {exc}")]
        if device.type == "cuda":
            torch.cuda.empty_cache()
    rows: list[np.ndarray | None] = []
    failures: list[tuple[int, str]] = []
    for i in range(images.shape[0]):
        try:
            rows.append(embed_batch(encoder, images[i : i + 1], device)[0])
        except (RuntimeError, ValueError) as exc:
            rows.append(None)
            failures.append((i, f"{type(exc).__name__}: {exc}"))
    dim = next((r.shape[0] for r in rows if r is not None), 0)
    out = np.stack([r if r is not None else np.full(dim, np.nan, np.float32) for r in rows]) if dim else None
    return out, failures
