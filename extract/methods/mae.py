"""Masked autoencoding (He et al. 2022) adapted to a 3D CNN encoder.

The input volume ``(B, C, S, S, S)`` is cut into cubic patches of edge ``p`` (grid
``g = S / p``); a random ``mask_ratio`` of the patches of every sample is zeroed
(a CNN cannot drop tokens, so masked patches are blanked, as in SimMIM/SparK-style
CNN masking). The encoder's last feature map goes through a lightweight decoder
(1x1x1 projection, trilinear upsampling to the patch grid, two 3x3x3 conv blocks and
a 1x1x1 layer predicting the ``C * p^3`` voxels of each patch). The loss is the mean
squared error on **masked patches only**; per sample it is averaged over that
sample's masked patches (and their voxels and channels). With ``norm_pix_loss``
targets are normalised per patch (mean 0, variance 1) as in the paper.

References
----------
He K, Chen X, Xie S, Li Y, Dollár P, Girshick R. Masked autoencoders are scalable
vision learners. CVPR 2022.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from neurofeat.extract.augment import ViewSpec
from neurofeat.extract.methods.base import SSLMethod, register_method

__all__ = ["MAE", "patchify", "random_patch_mask"]


def patchify(x: torch.Tensor, patch: int) -> torch.Tensor:
    """``(B, C, S, S, S)`` -> ``(B, g^3, C * p^3)`` with patches in (z, y, x) raster order."""
    batch, channels, d, h, w = x.shape
    gd, gh, gw = d // patch, h // patch, w // patch
    x = x.reshape(batch, channels, gd, patch, gh, patch, gw, patch)
    x = x.permute(0, 2, 4, 6, 1, 3, 5, 7)
    return x.reshape(batch, gd * gh * gw, channels * patch**3)


def random_patch_mask(batch: int, n_patches: int, mask_ratio: float, *, device: torch.device | str = "cpu",
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Boolean ``(B, n_patches)``, True = masked; exactly ``round(ratio * n)`` per sample
    (at least 1, at most n - 1)."""
    n_mask = min(n_patches - 1, max(1, int(round(mask_ratio * n_patches))))
    noise = torch.rand(batch, n_patches, generator=generator, device="cpu").to(device)
    ranks = noise.argsort(dim=1).argsort(dim=1)
    return ranks < n_mask


@register_method
class MAE(SSLMethod):
    """Masked-patch reconstruction with a lightweight 3D conv decoder.

    Parameters
    ----------
    encoder : ResNetEncoder
    mask_ratio : float
        Fraction of patches masked (paper: 0.75 for ViT; 0.6 here, CNNs need context).
    patch_size : int or None
        Patch edge in voxels; ``None`` = ``input_size // 8``.
    decoder_dim : int
        Width of the decoder convolutions.
    norm_pix_loss : bool
        Normalise each target patch (paper's option).
    crop_scale : (float, float)
        Per-axis edge fraction of the (mild) random resized crop.
    """

    name = "mae"

    def __init__(self, encoder: torch.nn.Module, mask_ratio: float = 0.6, patch_size: int | None = None,
                 decoder_dim: int = 128, norm_pix_loss: bool = False,
                 crop_scale: tuple[float, float] = (0.8, 1.0)) -> None:
        super().__init__(encoder)
        if not 0.0 < float(mask_ratio) < 1.0:
            raise ValueError(f"mae: mask_ratio must be in (0, 1), got {mask_ratio}.")
        self.mask_ratio = float(mask_ratio)
        self.patch_size = None if patch_size is None else int(patch_size)
        self.decoder_dim = int(decoder_dim)
        self.norm_pix_loss = bool(norm_pix_loss)
        self.crop_scale = tuple(crop_scale)
        self.in_channels = int(encoder.config.in_channels)
        input_size = int(encoder.config.input_size)
        patch = self.patch_size or max(1, input_size // 8)
        self._patch = patch
        groups = min(8, self.decoder_dim)
        self.decoder_in = nn.Conv3d(self.embedding_dim, self.decoder_dim, kernel_size=1)
        self.decoder = nn.Sequential(
            nn.Conv3d(self.decoder_dim, self.decoder_dim, kernel_size=3, padding=1),
            nn.GroupNorm(groups, self.decoder_dim), nn.GELU(),
            nn.Conv3d(self.decoder_dim, self.decoder_dim, kernel_size=3, padding=1),
            nn.GroupNorm(groups, self.decoder_dim), nn.GELU(),
        )
        self.decoder_out = nn.Conv3d(self.decoder_dim, self.in_channels * patch**3, kernel_size=1)

    def view_specs(self, input_size: int) -> list[ViewSpec]:
        return [ViewSpec("global", input_size, self.crop_scale, count=1)]

    def forward(self, views: Sequence[torch.Tensor]) -> torch.Tensor:
        self._check_views(views, 1)
        x = views[0]
        batch, channels, d, h, w = x.shape
        p = self._patch
        if d % p or h % p or w % p:
            raise ValueError(
                f"mae: input {tuple(x.shape[2:])} is not divisible by patch_size {p}; "
                "choose --input-size a multiple of the patch size."
            )
        grid = (d // p, h // p, w // p)
        n_patches = grid[0] * grid[1] * grid[2]
        mask = random_patch_mask(batch, n_patches, self.mask_ratio, device=x.device)  # (B, n)
        voxel_mask = mask.view(batch, 1, *grid).to(x.dtype)
        voxel_mask = voxel_mask.repeat_interleave(p, 2).repeat_interleave(p, 3).repeat_interleave(p, 4)
        features = self.encoder.forward_features(x * (1.0 - voxel_mask))
        hidden = self.decoder_in(features)
        hidden = F.interpolate(hidden, size=grid, mode="trilinear", align_corners=False)
        pred = self.decoder_out(self.decoder(hidden))  # (B, C p^3, gd, gh, gw)
        pred = pred.flatten(2).transpose(1, 2).float()  # (B, n, C p^3)
        target = patchify(x.float(), p)
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1e-6).sqrt()
        per_patch = ((pred - target) ** 2).mean(dim=-1)  # (B, n)
        maskf = mask.to(per_patch.dtype)
        return (per_patch * maskf).sum(dim=1) / maskf.sum(dim=1)

    def hparams(self) -> dict[str, Any]:
        return {"mask_ratio": self.mask_ratio, "patch_size": self._patch, "decoder_dim": self.decoder_dim,
                "norm_pix_loss": self.norm_pix_loss, "crop_scale": list(self.crop_scale)}
